"""Users' files are never lost: atomic writes, the umask, --force, locks, refused inputs."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lsi_hw.atomic import atomic_write, atomic_write_bytes, current_umask
from lsi_hw.cli import main
from lsi_hw.cli_util import MARKER_FILE, OutputFolder
from lsi_hw.errors import ConfigError, DeviceError, PatternError
from lsi_hw.limits import check_allocation, load_npz, npz_headers
from lsi_hw.locking import DeviceLock, PathLock, lock_dir
from lsi_hw.patterns import PatternSet
from lsi_hw.types import Measurement

SMALL = ["--m", "16", "--size", "32", "--no-plot"]


def run(args: list[str]):
    return CliRunner().invoke(main, args)


def one_line_error(result, *needles: str) -> str:
    """The command failed with exit 2 and one ``Error:`` line (no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------- atomic writes, umask
def test_atomic_write_honours_the_umask(tmp_path, umask_027):
    path = atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert mode(path) == 0o640
    os.umask(0o002)
    assert mode(atomic_write_bytes(tmp_path / "b.bin", b"x")) == 0o664
    assert current_umask() == 0o002


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "keep.npz"
    path.write_bytes(b"precious")

    def half_then_disk_full(fh):
        fh.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, half_then_disk_full)
    assert path.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.npz"]


def test_overwrite_false_refuses_an_existing_file(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"one", overwrite=False)
    with pytest.raises(ConfigError, match="exists"):
        atomic_write_bytes(path, b"two", overwrite=False)
    assert path.read_bytes() == b"one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_patternset_save_is_atomic_and_can_refuse_to_overwrite(tmp_path, monkeypatch):
    path = tmp_path / "masks.npz"
    PatternSet.hadamard(8, m=4).save(path)
    before = path.read_bytes()

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", disk_full)
    with pytest.raises(OSError):
        PatternSet.hadamard(8, m=8).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert PatternSet.load(path).m == 4
    with pytest.raises(ConfigError, match="exists"):
        PatternSet.hadamard(8, m=8).save(path, overwrite=False)
    assert PatternSet.save(PatternSet.hadamard(8, m=8), path).exists()
    assert PatternSet.load(path).m == 8


# ------------------------------------------------------------------- the output folder
def test_output_folder_appears_complete_with_umask_modes(tmp_path, umask_027):
    out = OutputFolder(tmp_path / "run", False, made_by="test")
    out.path("a.txt").write_text("a")
    assert not (tmp_path / "run").exists()
    out.commit()
    assert mode(tmp_path / "run") == 0o750
    assert json.loads((tmp_path / "run" / MARKER_FILE).read_text()) == {"made_by": "test"}
    assert mode(tmp_path / "run" / MARKER_FILE) == 0o640


def test_force_replaces_only_a_folder_this_tool_made(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match="not written by lsi-hw"):
        OutputFolder(mine, True)
    assert (mine / "data" / "thesis.tex").read_text() == "years of work"
    made = tmp_path / "made"
    first = OutputFolder(made, False)
    first.path("old.txt").write_text("old")
    first.commit()
    second = OutputFolder(made, True)
    second.path("new.txt").write_text("new")
    second.commit()
    assert sorted(p.name for p in made.iterdir()) == [MARKER_FILE, "new.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_force_never_replaces_the_cwd_an_ancestor_or_an_input(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / MARKER_FILE).write_text("{}")  # even a folder that looks like ours
    (work / "model.pt").write_bytes(b"weights")
    monkeypatch.chdir(work)
    for out in (Path("."), tmp_path, work):
        with pytest.raises(ConfigError, match="current folder"):
            OutputFolder(out, True)
    inner = work / "inputs"
    inner.mkdir()
    (inner / MARKER_FILE).write_text("{}")
    (inner / "meas.npz").write_bytes(b"data")
    with pytest.raises(ConfigError, match="input"):
        OutputFolder(inner, True, inputs=[inner / "meas.npz"])
    with pytest.raises(ConfigError, match="input"):
        OutputFolder(inner / "meas.npz", True, inputs=[inner / "meas.npz"])
    assert (work / "model.pt").read_bytes() == b"weights"
    assert (inner / "meas.npz").read_bytes() == b"data"


def test_cli_force_on_cwd_deletes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    one_line_error(run(["simulate", *SMALL, "--out", ".", "--force"]), "current folder")
    one_line_error(run(["simulate", *SMALL, "--out", str(tmp_path.parent), "--force"]))
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_cli_force_replaces_its_own_output_but_not_its_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(["simulate", *SMALL, "--out", "a"]).exit_code == 0
    assert run(["simulate", *SMALL, "--out", "a", "--force"]).exit_code == 0
    # the patterns file of run a as input, run a as output: refused, nothing lost
    masks = tmp_path / "a" / "patterns.npz"
    one_line_error(run(["simulate", "--patterns", str(masks), "--m", "16", "--no-plot",
                        "--out", "a", "--force"]), "input")
    assert masks.is_file()


# ------------------------------------------------------------------- locks
def test_lock_refuses_a_planted_symlink_and_never_truncates_its_target(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("do not truncate me")
    link = tmp_path / "x.lock"
    link.symlink_to(victim)
    with pytest.raises(ConfigError, match="symlink"):
        PathLock(link).acquire()
    assert victim.read_text() == "do not truncate me"


def test_device_lock_folder_is_private_and_not_a_symlink(tmp_path, monkeypatch):
    monkeypatch.setenv("LSI_LOCK_DIR", str(tmp_path / "locks"))
    assert mode(lock_dir()) == 0o700
    with DeviceLock("dev-a"), pytest.raises(DeviceError, match="in use"):
        DeviceLock("dev-a").acquire()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "trap").symlink_to(elsewhere)
    monkeypatch.setenv("LSI_LOCK_DIR", str(tmp_path / "trap"))
    with pytest.raises(ConfigError, match="not a plain folder"):
        DeviceLock("dev-b").acquire()
    assert list(elsewhere.iterdir()) == []


def test_default_lock_folder_is_per_user(tmp_path, monkeypatch):
    monkeypatch.delenv("LSI_LOCK_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert lock_dir() == tmp_path / "lsi-hw-locks"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "t"))
    (tmp_path / "t").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    assert lock_dir().name == f"lsi-hw-locks-{os.getuid()}"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root to give a folder to another user")
def test_lock_folder_of_another_user_is_refused(tmp_path, monkeypatch):
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o777)
    os.chown(foreign, 12345, 12345)
    monkeypatch.setenv("LSI_LOCK_DIR", str(foreign))
    with pytest.raises(ConfigError, match="another user"):
        lock_dir()


# ------------------------------------------------------------------- sizes before memory
def test_allocation_check_states_estimate_and_limit(monkeypatch):
    monkeypatch.setenv("LSI_MAX_MEMORY_GB", "1")
    check_allocation(2**29, "half a GiB")
    with pytest.raises(ConfigError, match=r"about 2\.0 GiB.*limit is 1\.0 GiB"):
        check_allocation(2**31, "two GiB")


@pytest.mark.parametrize("args", [["--size", "32768"], ["--size", "8192"],
                                  ["--size", "1024", "--m", "1000000", "--patterns", "random"]])
def test_simulate_refuses_huge_jobs_at_once(tmp_path, args):
    result = run(["simulate", *args, "--out", str(tmp_path / "o")])
    one_line_error(result)
    assert not (tmp_path / "o").exists()


def _zip_bomb(path: Path, n_bytes: int) -> None:
    """A compressed .npz whose one array inflates to ``n_bytes`` of zeros."""
    np.savez_compressed(path, masks=np.zeros(n_bytes, dtype=np.uint8))


def test_zip_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.npz"
    _zip_bomb(bomb, 64 * 2**20)
    assert bomb.stat().st_size < 2**20
    monkeypatch.setenv("LSI_MAX_MEMORY_GB", "0.03")
    with pytest.raises(PatternError, match="limit"):
        PatternSet.load(bomb)
    with pytest.raises(ConfigError, match=r"unpack to 64\.0 MiB"):
        load_npz(bomb)


def test_header_that_lies_about_its_size_is_refused(tmp_path):
    path = tmp_path / "liar.npz"
    header = {"descr": "|u1", "fortran_order": False, "shape": (4096, 4096, 4096)}
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, header)  # magic + header, no data
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("masks.npy", stream.getvalue() + b"\0" * 16)
    with pytest.raises(ConfigError, match="truncated"):
        npz_headers(path)
    with pytest.raises(PatternError, match="truncated"):
        PatternSet.load(path)


# ------------------------------------------------------------------- malformed inputs
def _measurement(tmp_path: Path, values: np.ndarray, settings: str = "{}") -> Path:
    path = tmp_path / "m.npz"
    np.savez(path, values=values, timestamps=np.zeros(values.shape),
             settings=np.array(settings), pattern_name=np.array("p"),
             scene_ids=np.array([str(i) for i in range(len(values))]))
    return path


@pytest.mark.parametrize("values, match", [
    (np.array([[1.0, np.nan]]), "NaN or infinite"),
    (np.array([[1.0, np.inf]]), "NaN or infinite"),
    (np.array([["a", "b"]]), "2-D floating-point array"),
    (np.array([[1 + 1j, 2]]), "2-D floating-point array"),
    (np.array([[[1.0]]]), "2-D floating-point array"),
])
def test_measurement_load_refuses_bad_values(tmp_path, values, match):
    with pytest.raises(ConfigError, match=match) as info:
        Measurement.load(str(_measurement(tmp_path, values)))
    assert str(tmp_path) in str(info.value)


def test_measurement_load_refuses_truncated_npy_and_deep_json(tmp_path):
    good = _measurement(tmp_path, np.ones((2, 3)))
    data = good.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match=r"cut\.npz"):
        Measurement.load(str(cut))
    plain = tmp_path / "plain.npy"
    np.save(plain, np.ones((2, 3)))
    with pytest.raises(ConfigError, match=r"plain \.npy"):
        Measurement.load(str(plain))
    deep = _measurement(tmp_path, np.ones((2, 3)), "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        Measurement.load(str(deep))
    nan = _measurement(tmp_path, np.ones((2, 3)), '{"a": NaN}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        Measurement.load(str(nan))


# ------------------------------------------------------------------- OSError is one line
def test_os_errors_are_one_line_naming_the_path(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    result = run(["patterns", "generate", "hadamard", "--m", "4", "--size", "8",
                  "-o", str(blocker / "masks.npz")])
    one_line_error(result, str(blocker))
    result = run(["simulate", *SMALL, "--out", str(blocker / "run")])
    one_line_error(result, str(blocker))


def test_patterns_generate_needs_force_to_overwrite(tmp_path):
    out = tmp_path / "m.npz"
    assert run(["patterns", "generate", "hadamard", "--m", "4", "--size", "8",
                "--out", str(out)]).exit_code == 0
    before = out.read_bytes()
    one_line_error(run(["patterns", "generate", "hadamard", "--m", "8", "--size", "8",
                        "-o", str(out)]), "--force")
    assert out.read_bytes() == before
    assert run(["patterns", "generate", "hadamard", "--m", "8", "--size", "8",
                "-o", str(out), "--force"]).exit_code == 0
    assert PatternSet.load(out).m == 8


def test_errors_name_the_users_path_not_a_temporary_one(tmp_path):
    result = run(["patterns", "generate", "hadamard", "--m", "4", "--size", "8",
                  "-o", str(tmp_path / "nodir" / "x.npz")])
    line = one_line_error(result, "nodir", "does not exist")
    assert ".tmp" not in line
    blocked = tmp_path / "ro"
    blocked.write_text("a file where a folder should be")
    line = one_line_error(run(["simulate", *SMALL, "--out", str(blocked / "sub" / "run")]),
                          "--out")
    assert ".run." not in line


def test_calibrate_refuses_a_size_that_is_not_a_power_of_two(tmp_path):
    for size in ("3", "48", "4", "1024"):
        one_line_error(run(["calibrate", "--size", size, "--out", str(tmp_path / "c.json")]),
                       f"--size {size}")
    assert not (tmp_path / "c.json").exists()


_REWRITER = """
import sys
from pathlib import Path
from lsi_hw.cli_util import OutputFolder
out = Path(sys.argv[1])
for generation in range(10**9):
    folder = OutputFolder(out, True)
    for name in ("a.txt", "b.txt", "c.txt"):
        folder.path(name).write_text(str(generation) * 20000)
    folder.commit()
"""


def test_kill_9_while_replacing_an_output_loses_nothing(tmp_path):
    """``kill -9`` at random moments of a loop that keeps replacing one output: afterwards
    (and after the next run's recovery) the output is always one whole generation, and no
    temporary folder or lock file is left."""
    import random
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    first = OutputFolder(out, False)
    for name in ("a.txt", "b.txt", "c.txt"):
        first.path(name).write_text("x" * 20000)
    first.commit()
    rng = random.Random(0)
    seen = set()
    for _ in range(12):
        child = subprocess.Popen([sys.executable, "-c", _REWRITER, str(out)])
        time.sleep(0.3 + rng.random() * 0.4)
        child.kill()
        child.wait()
        OutputFolder(out, True).abandon()  # the next run: recovers, then writes nothing
        contents = {(out / n).read_text() for n in ("a.txt", "b.txt", "c.txt")}
        assert len(contents) == 1, "a mix of two generations"
        assert (out / MARKER_FILE).is_file()
        seen |= contents
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert len(seen) > 1  # the loop did replace the output between kills


def test_an_output_left_aside_by_a_crash_is_put_back(tmp_path):
    out = tmp_path / "out"
    first = OutputFolder(out, False)
    first.path("data.txt").write_text("old")
    first.commit()
    aside = tmp_path / ".out.lsi-old-abcd1234"  # the state between commit's two renames
    aside.mkdir()
    os.replace(out, aside / "old")
    half = tmp_path / ".out.lsi-tmp-efgh5678"  # a killed run's half-written folder
    half.mkdir()
    (half / "data.txt").write_text("half")
    OutputFolder(out, True).abandon()
    assert (out / "data.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_corrupt_deflate_stream_is_one_line(tmp_path):
    path = tmp_path / "q.npz"
    PatternSet.random(16, (32, 32), seed=0).save(path)
    data = bytearray(path.read_bytes())
    for i in range(60, 100):  # inside the first member's compressed data
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(PatternError, match=r"q\.npz"):
        PatternSet.load(path)
    one_line_error(run(["patterns", "inspect", str(path)]), "q.npz")


@pytest.mark.parametrize("value", ["inf", "1e400", "nan", "-1", "lots"])
def test_a_bad_memory_limit_is_one_line(monkeypatch, tmp_path, value):
    monkeypatch.setenv("LSI_MAX_MEMORY_GB", value)
    one_line_error(run(["patterns", "generate", "hadamard", "--m", "4", "--size", "8",
                        "-o", str(tmp_path / "x.npz")]), "LSI_MAX_MEMORY_GB")


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs a sysfs to refuse files")
def test_an_unwritable_folder_names_the_users_path(tmp_path):
    for args in (["patterns", "generate", "hadamard", "--m", "4", "--size", "8",
                  "-o", "/sys/kernel/x.npz"],
                 ["simulate", *SMALL, "--out", "/sys/kernel/lsi-run"]):
        line = one_line_error(run(args), "/sys/kernel")
        assert ".tmp" not in line and "lsi-tmp" not in line and "lsi-lock" not in line
