"""The import rules of DESIGN.md, checked on the source (so a violation fails here)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports (at any depth, including lazy imports in functions)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_lsi_hw_never_imports_lsi_ml():
    for path in files("lsi_hw"):
        bad = {m for m in imported_modules(path) if m.split(".")[0] == "lsi_ml"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


# the file-safety helpers (atomic writes, memory limits and safe array reading) and the
# device settings registry sit beside errors at the bottom: every layer uses them
FOUNDATION = {"lsi_hw.errors", "lsi_hw.atomic", "lsi_hw.limits", "lsi_hw.device_settings",
              "lsi_hw.user_cache"}


@pytest.mark.parametrize("name", ["errors.py", "atomic.py", "limits.py", "device_settings.py",
                                  "user_cache.py"])
def test_foundation_modules_import_only_errors(name):
    ours = {m for m in imported_modules(ROOT / "lsi_hw" / name) if m.split(".")[0] == "lsi_hw"}
    assert ours <= {"lsi_hw.errors"}, ours


# patterns.py is built on its sibling pattern_*.py modules; they sit in the same base layer
# and import only downwards: checks <- families, packing, files, meta <- patterns
PATTERN_MODULES = ["patterns.py", "pattern_checks.py", "pattern_families.py",
                   "pattern_packing.py", "pattern_files.py", "pattern_meta.py"]
BASE_EXTRA = {
    "patterns.py": {"lsi_hw.pattern_checks", "lsi_hw.pattern_families",
                    "lsi_hw.pattern_packing", "lsi_hw.pattern_files", "lsi_hw.pattern_meta"},
    "pattern_families.py": {"lsi_hw.pattern_checks"},
    "pattern_packing.py": {"lsi_hw.pattern_checks"},
}


@pytest.mark.parametrize("name", ["errors.py", "interfaces.py", *PATTERN_MODULES])
def test_base_modules_import_only_errors(name):
    path = ROOT / "lsi_hw" / name
    ours = {m for m in imported_modules(path) if m.split(".")[0] == "lsi_hw"}
    # imports under `if TYPE_CHECKING:` are for annotations only and allowed
    tree = ast.parse(path.read_text())
    typing_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and sub.module:
                    typing_only.add(sub.module)
    assert ours - typing_only <= FOUNDATION | BASE_EXTRA.get(name, set()), ours


def test_every_pattern_module_is_under_the_base_layer_rule():
    assert sorted(p.name for p in (ROOT / "lsi_hw").glob("pattern*.py")) == sorted(
        PATTERN_MODULES)


def test_sim_and_drivers_never_import_each_other():
    for path in files("lsi_hw/sim"):
        assert not any(m.startswith("lsi_hw.drivers") for m in imported_modules(path)), path
    for path in files("lsi_hw/drivers"):
        assert not any(m.startswith("lsi_hw.sim") for m in imported_modules(path)), path


def test_vendor_packages_only_imported_lazily():
    """pyusb / pyvisa / nidaqmx never at module level of any lsi_hw module."""
    vendor = {"usb", "pyvisa", "nidaqmx"}
    for path in files("lsi_hw"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                        else [node.module or ""])
                assert not {m.split(".")[0] for m in mods} & vendor, path


def test_simulator_imports_without_torch_numba_or_vendor_packages():
    """`import lsi_hw.sim` and a numpy-path acquisition work with torch/numba blocked."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'torch', 'numba', 'usb', 'pyvisa', 'nidaqmx',"
        " 'lsi_ml'}:\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "import lsi_hw, lsi_hw.sim, lsi_hw.patterns, lsi_hw.cli\n"
        "from lsi_hw.sim import SimBench\n"
        "from lsi_hw.patterns import PatternSet\n"
        "m = SimBench('full', method='numpy').measure(np.zeros((1, 8, 8)),"
        " PatternSet.random(3, (8, 8), seed=0))\n"
        "assert m.values.shape == (1, 3)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ------------------------------------------------------------------ lsi_ml packages
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported when ``path`` is imported: module-level statements, outside
    ``if TYPE_CHECKING:`` blocks (imports inside functions are lazy and may not form a
    cycle at import time)."""
    names: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and getattr(node.test, "id", "") != "TYPE_CHECKING":
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(ast.parse(path.read_text()).body)
    return names


ML_RULES = {
    # package -> lsi_ml packages it must not import (at any depth, lazily included)
    "lsi_ml.generators": {"lsi_ml.latent", "lsi_ml.training", "lsi_ml.evaluation",
                          "lsi_ml.baselines", "lsi_ml.cli"},
    "lsi_ml.data": {"lsi_ml.latent", "lsi_ml.training", "lsi_ml.evaluation",
                    "lsi_ml.baselines", "lsi_ml.cli"},
    "lsi_ml.latent": {"lsi_ml.training", "lsi_ml.evaluation", "lsi_ml.baselines",
                      "lsi_ml.cli"},
    "lsi_ml.training": {"lsi_ml.evaluation", "lsi_ml.baselines", "lsi_ml.cli"},
    "lsi_ml.evaluation": {"lsi_ml.training", "lsi_ml.cli"},
}


@pytest.mark.parametrize("package", sorted(ML_RULES))
def test_lsi_ml_packages_import_downwards_only(package: str) -> None:
    folder = ROOT / Path(*package.split("."))
    assert folder.is_dir(), folder
    for path in sorted(folder.rglob("*.py")):
        bad = {m for m in imported_modules(path)
               if any(m == f or m.startswith(f + ".") for f in ML_RULES[package])}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_no_private_name_is_imported_across_modules() -> None:
    """A ``_name`` is private to its module: shared helpers get a public name."""
    offenders = []
    for package in ("lsi_hw", "lsi_ml", "sims", "examples", "benchmarks"):
        for path in files(package):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                        and node.module.split(".")[0] in {"lsi_hw", "lsi_ml", "sims"}:
                    private = [a.name for a in node.names
                               if a.name.startswith("_") and not a.name.startswith("__")]
                    if private:
                        offenders.append(f"{path.relative_to(ROOT)}: {node.module} {private}")
    assert not offenders, "\n".join(offenders)


def test_module_level_imports_form_no_cycle() -> None:
    ours = {}
    for package in ("lsi_hw", "lsi_ml"):
        for path in files(package):
            ours[_module_name(path)] = path
    # an import of one's own parent package is not an edge: Python initialises a package
    # before its submodules, and the package importing them back is the usual layout
    graph = {name: {m for m in _top_level_imports(path)
                    if m in ours and m != name and not name.startswith(m + ".")}
             for name, path in ours.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = walk(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = walk(start)
            assert cycle is None, " -> ".join(cycle)


def test_the_project_speaks_only_of_itself() -> None:
    """Docs and code never point outside the repository (a clone has nothing there)."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "sims").glob("*.md"))]
    for package in ("lsi_hw", "lsi_ml", "sims", "examples", "benchmarks"):
        texts += files(package)
    for path in texts:
        text = path.read_text()
        assert "../shared" not in text, path
        assert "DESIGN.md" not in text and "PAPER.md" not in text, path
