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


# the file-safety helpers (atomic writes, memory limits and safe array reading) sit beside
# errors at the bottom: every layer writes and reads files through them
FOUNDATION = {"lsi_hw.errors", "lsi_hw.atomic", "lsi_hw.limits"}


@pytest.mark.parametrize("name", ["errors.py", "atomic.py", "limits.py"])
def test_foundation_modules_import_only_errors(name):
    ours = {m for m in imported_modules(ROOT / "lsi_hw" / name) if m.split(".")[0] == "lsi_hw"}
    assert ours <= {"lsi_hw.errors"}, ours


@pytest.mark.parametrize("name", ["errors.py", "interfaces.py", "patterns.py"])
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
    assert ours - typing_only <= FOUNDATION, ours


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
