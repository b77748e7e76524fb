"""The crash-safe recording store: round trip, validation, resume, lock, and kill -9.

The kill tests run ``tests/_record_child.py`` (a resumable acquisition) in a subprocess and
SIGKILL it at chosen commit points and at random moments, then check that the recording
opens, holds only whole batches with exactly the right content, and can be resumed.
Set ``LSI_KILL_TRIALS`` to run more random kill trials (default 8).
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lsi_hw.errors import ConfigError
from lsi_hw.recording import Recording, read_measurements
from lsi_hw.types import Measurement

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHILD_SCRIPT = HERE / "_record_child.py"
_spec = importlib.util.spec_from_file_location("_record_child", CHILD_SCRIPT)
child = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(child)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL / flock are POSIX")

SETTINGS = {"bench": "test", "calibration_id": "cal-001", "detector": {"gain_v_per_a": 1e4}}
M = 8


def batch(b: int, n: int, m: int = M) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(b)
    return rng.normal(size=(n, m)), np.arange(n * m, dtype=float).reshape(n, m) * 1e-3, [
        f"img{b}-{i}" for i in range(n)
    ]


def new(path: Path, **kw) -> Recording:
    args = {"m": M, "settings": SETTINGS, "pattern_name": "hadamard-8", **kw}
    return Recording.create(path, **args)


# --------------------------------------------------------------------------- basics


def test_round_trip_several_batches(tmp_path):
    path = tmp_path / "run.lsirec"
    v0, t0, ids0 = batch(0, 5)
    v1, t1, ids1 = batch(1, 3)
    v2, t2, ids2 = batch(2, 9)
    s0 = {**SETTINGS, "acquisition": {"compute_time_s": 0.5, "arr": np.arange(2)}}
    s2 = {**SETTINGS, "detector": {"gain_v_per_a": 1e5}}
    with new(path, chunk_scenes=4, patterns_meta={"kind": "hadamard", "sha256": "ab"}) as rec:
        assert rec.writable and rec.n_batches == 0 and rec.values.shape == (0, M)
        meas = Measurement(v0, s0, t0, pattern_name="hadamard-8", scene_ids=tuple(ids0))
        assert rec.append(meas) == 0
        assert rec.append(v1, t1, ids1) == 1  # settings default: run-level snapshot
        assert rec.append(v2.tolist(), t2, np.array(ids2), settings=s2) == 2
        assert len(rec) == 17 and rec.n_batches == 3
    assert not rec.writable

    rec = Recording.open(path)
    assert not rec.writable and "reader" in repr(rec)
    np.testing.assert_array_equal(rec.values, np.concatenate([v0, v1, v2]))
    np.testing.assert_array_equal(rec.timestamps, np.concatenate([t0, t1, t2]))
    assert rec.values.dtype == np.float64 and not rec.values.flags.writeable
    assert rec.scene_ids == tuple(ids0 + ids1 + ids2)
    assert rec.completed_scene_ids() == set(ids0 + ids1 + ids2)
    assert rec.settings == SETTINGS and rec.m == M and rec.pattern_name == "hadamard-8"
    assert rec.patterns_meta == {"kind": "hadamard", "sha256": "ab"}
    assert rec.n_scenes == len(rec) == 17 and rec.chunk_scenes == 4
    snaps = rec.batches
    assert [b["index"] for b in snaps] == [0, 1, 2]
    assert [b["first_scene"] for b in snaps] == [0, 5, 8]
    assert snaps[0]["settings"]["acquisition"] == {"compute_time_s": 0.5, "arr": [0, 1]}
    assert snaps[1]["settings"] == SETTINGS and snaps[2]["settings"] == s2
    assert snaps[2]["scene_ids"] == ids2 and snaps[0]["wall_time_unix"] > 0

    part = rec.to_measurement(slice(5, 8))  # exactly batch 1
    np.testing.assert_array_equal(part.values, v1)
    assert part.settings == SETTINGS and part.scene_ids == tuple(ids1)
    assert part.pattern_name == "hadamard-8"
    mixed = rec.to_measurement(slice(3, 10))  # batches 0, 1, 2: settings differ
    np.testing.assert_array_equal(mixed.timestamps, np.concatenate([t0, t1, t2])[3:10])
    assert [b["index"] for b in mixed.settings["recording_batches"]] == [0, 1, 2]
    back = rec.to_measurement(slice(None, None, -3))
    np.testing.assert_array_equal(back.values, rec.values[::-3])
    assert back.scene_ids == rec.scene_ids[::-3]
    assert rec.to_measurement(slice(4, 4)).values.shape == (0, M)
    whole = read_measurements(path)
    np.testing.assert_array_equal(whole.values, rec.values)

    # the documented layout, read with numpy + json only
    names = sorted(os.listdir(path / "batches"))
    assert names == ["000000-000.npz", "000000-001.npz", "000000.json", "000001-000.npz",
                     "000001.json", "000002-000.npz", "000002-001.npz", "000002-002.npz",
                     "000002.json"]
    manifest = json.loads((path / "manifest.json").read_text())
    run = json.loads((path / "run.json").read_text())
    assert run["m"] == M and run["settings"] == SETTINGS and manifest["n_scenes"] == 17
    files = [c["file"] for b in manifest["batches"] for c in b["chunks"]]
    plain = np.concatenate([np.load(path / name)["values"] for name in files])
    np.testing.assert_array_equal(plain, rec.values)
    ids = np.concatenate([np.load(path / name)["scene_ids"] for name in files])
    assert tuple(ids) == rec.scene_ids


def test_append_validation(tmp_path):
    rec = new(tmp_path / "r")
    v, t, ids = batch(0, 4)
    rec.append(v, t, ids)
    bad_cases = [
        ((np.zeros((4, M + 1)), np.zeros((4, M + 1)), ids), "m=8"),
        ((np.zeros((0, M)), np.zeros((0, M)), []), "empty batch"),
        ((np.zeros(M), np.zeros(M), ids[:1]), "(B, m=8)"),
        ((v, t[:3], ids), "timestamps shape"),
        ((v, t, ids[:3]), "3 scene ids given for 4 scenes"),
        ((v, t, "abcd"), "sequence of 4 strings"),
        ((v, t, [*ids[:3], ""]), "non-empty strings"),
        ((v.astype(complex), t, ids), "real numbers"),
        ((np.full((4, M), "x"), t, ids), "real numbers"),
    ]
    for args, words in bad_cases:
        with pytest.raises(ConfigError, match="batch 1") as info:
            rec.append(*args)
        assert words in str(info.value), (words, str(info.value))
    nan = v.copy()
    nan[2, 5] = np.nan
    with pytest.raises(ConfigError, match=r"batch 1: values .*'img0-2' \(row 2\), pattern 5"):
        rec.append(nan, t, ids)
    inf = t.copy()
    inf[0, 0] = np.inf
    with pytest.raises(ConfigError, match=r"batch 1: timestamps .*non-finite.*'img0-0'"):
        rec.append(v, inf, ids)
    with pytest.raises(ConfigError, match="not JSON-serialisable"):
        rec.append(v, t, ids, settings={"device": object()})
    with pytest.raises(ConfigError, match="must be a dict"):
        rec.append(v, t, ids, settings=["not", "a", "dict"])
    with pytest.raises(ConfigError, match="pattern_name 'random-8' differs"):
        rec.append(Measurement(v, {}, t, pattern_name="random-8", scene_ids=tuple(ids)))
    with pytest.raises(TypeError):
        rec.append(v)
    with pytest.raises(TypeError):
        rec.append(Measurement(v, {}, t), t)
    # nothing of the refused batches was committed; the next batch is index 1
    assert rec.n_batches == 1
    assert rec.append(*batch(1, 2)) == 1
    rec.close()
    with pytest.raises(ConfigError, match="not open for writing"):
        rec.append(*batch(2, 2))
    reader = Recording.open(tmp_path / "r")
    assert reader.n_batches == 2 and reader.n_scenes == 6
    with pytest.raises(ConfigError, match=r"Recording\.resume"):
        reader.append(*batch(2, 2))
    for kw, words in (({"m": 0}, "m=0"), ({"chunk_scenes": 0}, "chunk_scenes=0"),
                      ({"settings": {"x": object()}}, "JSON"), ({"pattern_name": 3}, "str")):
        with pytest.raises(ConfigError, match=words):
            new(tmp_path / "other", **kw)
    assert not (tmp_path / "other").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_create_refuses_to_overwrite(tmp_path):
    path = tmp_path / "sub" / "r"
    with new(path) as rec:
        rec.append(*batch(0, 3))
        old_id = rec.run_id
    with pytest.raises(ConfigError) as info:
        new(path)
    assert str(path) in str(info.value) and "overwrite=True" in str(info.value)
    assert Recording.open(path).n_batches == 1  # untouched
    with new(path, overwrite=True) as rec:
        assert rec.n_batches == 0 and rec.run_id != old_id
    assert Recording.open(path).n_scenes == 0
    assert sorted(p.name for p in path.parent.iterdir()) == ["r"]  # old data deleted

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an LSI recording"):
        new(foreign, overwrite=True)
    assert (foreign / "keep.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="not an LSI recording"):
        Recording.open(foreign)
    with pytest.raises(ConfigError, match="no recording at"):
        Recording.open(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    new(empty, overwrite=True).close()
    assert Recording.open(empty).n_batches == 0


def test_resume_skips_completed_scenes(tmp_path):
    path = tmp_path / "r"
    all_ids = [f"face{i:02d}" for i in range(10)]
    data = {s: np.full(M, float(i)) for i, s in enumerate(all_ids)}

    def acquire(stop_after: int | None) -> list[list[str]]:
        """A resumable acquisition command: batches of 4, skipping recorded scenes."""
        appended = []
        with Recording.create_or_resume(path, m=M, settings=SETTINGS,
                                        pattern_name="hadamard-8") as rec:
            todo = [s for s in all_ids if s not in rec.completed_scene_ids()]
            for k in range(0, len(todo), 4):
                if stop_after is not None and len(appended) == stop_after:
                    break
                ids = todo[k:k + 4]
                vals = np.stack([data[s] for s in ids])
                rec.append(vals, np.zeros_like(vals), ids)
                appended.append(ids)
        return appended

    assert acquire(stop_after=1) == [all_ids[:4]]
    assert acquire(stop_after=None) == [all_ids[4:8], all_ids[8:]]
    assert acquire(stop_after=None) == []  # nothing left
    rec = Recording.open(path)
    assert rec.scene_ids == tuple(all_ids) and rec.n_batches == 3
    np.testing.assert_array_equal(rec.values[:, 0], np.arange(10.0))


def test_incompatible_resume_is_rejected(tmp_path):
    path = tmp_path / "r"
    with new(path, patterns_meta={"seed": 1}) as rec:
        rec.append(*batch(0, 2))
    with pytest.raises(ConfigError, match=r"m differs \(recorded 8, requested 16\)") as info:
        Recording.resume(path, m=16, pattern_name="random-16")
    assert "pattern_name differs (recorded 'hadamard-8', requested 'random-16')" in str(
        info.value)
    with pytest.raises(ConfigError, match="patterns_meta differs: seed"):
        Recording.resume(path, patterns_meta={"seed": 2})
    changed = {**SETTINGS, "detector": {"gain_v_per_a": 1e6}}
    with pytest.raises(ConfigError, match=r"detector\.gain_v_per_a \(recorded 10000\.0, now"):
        Recording.create_or_resume(path, m=M, settings=changed, pattern_name="hadamard-8")
    with pytest.raises(ConfigError, match="calibration_id"):
        Recording.resume(path, settings={"bench": "test", "detector": {"gain_v_per_a": 1e4}})
    # refused resumes leave the lock free; compatible ones work
    with Recording.resume(path, m=M, pattern_name="hadamard-8", settings=changed,
                          allow_settings_change=True) as rec:
        rec.append(*batch(1, 2), settings=changed)
        assert rec.settings == SETTINGS  # run-level snapshot stays the recorded one
    assert Recording.open(path).batches[1]["settings"] == changed


@posix_only
def test_second_writer_is_refused(tmp_path):
    path = tmp_path / "r"
    writer = new(path)
    writer.append(*batch(0, 2))
    with pytest.raises(ConfigError, match=r"is being written by another process \(pid \d+"):
        Recording.resume(path)
    with pytest.raises(ConfigError, match="being written"):
        new(path, overwrite=True)
    code = (
        "import sys\n"
        "from lsi_hw.recording import Recording\n"
        "try:\n"
        "    Recording.resume(sys.argv[1])\n"
        "except Exception as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=60, env=_child_env())
    assert out.returncode == 3, out.stderr
    assert f"{path} is being written by another process (pid {os.getpid()}" in out.stdout
    reader = Recording.open(path)  # readers need no lock
    assert reader.n_batches == 1
    writer.append(*batch(1, 2))
    assert reader.n_batches == 1 and reader.refresh() == 1 and reader.n_scenes == 4
    writer.close()
    with Recording.resume(path) as again:
        again.append(*batch(2, 1))
    assert Recording.open(path).n_batches == 3


def test_leftovers_ignored_and_removed_and_damage_detected(tmp_path):
    path = tmp_path / "r"
    with new(path) as rec:
        rec.append(*batch(0, 3))
    folder = path / "batches"
    junk = ["000001-000.npz", "000001.json", "000001-000.npz.tmp", "000001.json.tmp"]
    for name in junk:
        (folder / name).write_bytes(b"half-written")
    (path / "manifest.json.tmp").write_text("{")
    (folder / "notes.txt").write_text("user file")
    reader = Recording.open(path)
    assert reader.n_batches == 1 and reader.values.shape == (3, M)
    with Recording.resume(path) as rec:
        assert not (path / "manifest.json.tmp").exists()
        assert all(not (folder / name).exists() for name in junk)
        assert (folder / "notes.txt").exists()  # not ours: kept
        rec.append(*batch(1, 2))
    assert Recording.open(path).n_batches == 2

    chunk = folder / "000000-000.npz"
    raw = bytearray(chunk.read_bytes())
    raw[-100] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    damaged = Recording.open(path)
    assert damaged.n_batches == 2  # the manifest still opens
    with pytest.raises(ConfigError, match="fails its sha256 check"):
        _ = damaged.values
    np.testing.assert_array_equal(damaged.to_measurement(slice(3, 5)).values, batch(1, 2)[0])

    new(path, overwrite=True).close()
    with pytest.raises(ConfigError, match="replaced by a new run"):
        reader.refresh()


# --------------------------------------------------------------------------- kill -9


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


class Child:
    """A running ``_record_child.py`` whose stdout lines arrive on a queue."""

    def __init__(self, path: Path, n: int, large: dict[int, int], hook: str | None = None):
        cmd = [sys.executable, str(CHILD_SCRIPT), str(path), str(n)]
        cmd += [f"--large={g}={b}" for g, b in large.items()]
        if hook:
            cmd.append(f"--hook={hook}")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=_child_env())
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, prefix: str, timeout: float = 60.0) -> bool:
        """Collect lines until one starts with ``prefix`` (True) or the child ends (False)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                self._queue.put(None)
                return False
            self.lines.append(line)
            if line.startswith(prefix):
                return True

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.finish(expect_ok=False)

    def finish(self, expect_ok: bool = True) -> None:
        self.proc.wait(timeout=60)
        self._thread.join(timeout=60)
        while (line := self._queue.get()) is not None:
            self.lines.append(line)
        if expect_ok:
            assert self.proc.returncode == 0, self.lines
            assert self.lines[-1] == "done", self.lines

    def batches_with(self, word: str) -> set[int]:
        return {int(x.split()[-1]) for x in self.lines if x.startswith(f"{word} batch")}


def verify(path: Path, large: dict[int, int]) -> list[int]:
    """Open after a crash; check every committed batch byte for byte; return their g."""
    rec = Recording.open(path)
    gens = []
    for b in rec.batches:
        g = int(b["scene_ids"][0][1:4])
        n = child.batch_size(g, large)
        assert b["scene_ids"] == child.scene_ids(g, n), "partial or mixed batch visible"
        values, stamps, settings = child.expected_batch(g, n)
        assert b["settings"] == settings and b["n_scenes"] == n
        part = rec.to_measurement(slice(b["first_scene"], b["first_scene"] + n))
        np.testing.assert_array_equal(part.values, values)
        np.testing.assert_array_equal(part.timestamps, stamps)
        assert part.settings == settings
        gens.append(g)
    assert gens == list(range(len(gens))), gens  # whole batches, in order, no duplicates
    total = sum(child.batch_size(g, large) for g in gens)
    assert len(rec) == total and rec.values.shape == (total, child.M)
    assert len(rec.completed_scene_ids()) == total
    return gens


def referenced_files(path: Path) -> set[str]:
    manifest = json.loads((path / "manifest.json").read_text())
    names = {Path(b["record"]).name for b in manifest["batches"]}
    names |= {Path(c["file"]).name for b in manifest["batches"] for c in b["chunks"]}
    return names


@posix_only
def test_kill_at_each_commit_step(tmp_path):
    """SIGKILL at exact points of an append (the child pauses there) and resume each time."""
    path = tmp_path / "run.lsirec"
    large = {2: 150}  # 3 chunk files of <= 64 scenes
    n = 6
    # (hook, batches visible afterwards, files of the interrupted append left behind)
    steps = [
        ("before:-000.npz:0", [], True),  # first chunk of the first batch not yet in place
        ("after:manifest.json:1", [0, 1], False),  # commit point passed: batch 1 visible
        ("before:-002.npz:2", [0, 1], True),  # 2 of 3 chunks of a large batch written
        ("after:000003.json:3", [0, 1, 2], True),  # all data written, manifest not yet
        ("before:manifest.json:4", [0, 1, 2, 3], True),  # manifest written, not renamed
    ]
    for hook, expected, left in steps:
        proc = Child(path, n, large, hook=hook)
        assert proc.wait_for("HOOK"), proc.lines
        proc.kill()
        assert verify(path, large) == expected, (hook, proc.lines)
        assert proc.batches_with("committed") <= set(expected)
        leftovers = set(os.listdir(path / "batches")) - referenced_files(path)
        assert bool(leftovers) == left, (hook, leftovers)
    proc = Child(path, n, large)
    proc.finish()
    assert proc.batches_with("skip") == {0, 1, 2, 3}
    assert verify(path, large) == list(range(n))
    assert set(os.listdir(path / "batches")) == referenced_files(path)  # cleaned on resume


@posix_only
def test_kill_at_random_moments_then_resume(tmp_path):
    """SIGKILL at random moments (often inside a large append), then resume to the end."""
    trials = int(os.environ.get("LSI_KILL_TRIALS", "8"))
    seed = int(os.environ.get("LSI_KILL_SEED", "20250101"))
    rng = random.Random(seed)
    path = tmp_path / "run.lsirec"
    n = 4 * trials + 4
    large = {g: 1024 for g in range(n) if g % 3 == 1}  # 16 chunks, ~4 MiB of values
    stats = {"append_started": 0, "partial_files_left": 0}
    recorded: list[int] = []
    for trial in range(trials):
        proc = Child(path, n, large)
        where = f"trial {trial} (LSI_KILL_SEED={seed})"
        if trial % 3 == 2:  # a random time after start-up, wherever the child is
            assert proc.wait_for("ready"), proc.lines
            time.sleep(rng.uniform(0.0, 0.03))
        else:  # a random time after the start of a chosen append
            target = len(recorded) + rng.randrange(2)
            if trial % 3 == 0:  # the next large batch
                target = min(g for g in large if g >= len(recorded))
            assert proc.wait_for(f"appending batch {target}"), (where, proc.lines)
            expected_s = 0.02 if target in large else 0.003
            time.sleep(rng.uniform(0.0, 1.5 * expected_s))
        proc.kill()
        gens = verify(path, large)
        assert gens[: len(recorded)] == recorded, where  # nothing committed disappears
        committed = proc.batches_with("committed")
        started = proc.batches_with("appending")
        assert committed <= set(gens), (where, "append returned before durable", proc.lines)
        assert set(gens) - set(recorded) <= started, where
        stats["append_started"] += bool(started - committed)  # killed in or right after
        stats["partial_files_left"] += bool(  # killed inside append, before its commit
            set(os.listdir(path / "batches")) - referenced_files(path))
        recorded = gens
    proc = Child(path, n, large)
    proc.finish()
    assert verify(path, large) == list(range(n))
    assert set(os.listdir(path / "batches")) == referenced_files(path)
    print(f"kill trials: {trials}, seed {seed}, {stats}")


# --------------------------------------------------------------------------- safety


def _recorded(tmp_path: Path, n_batches: int = 2) -> Path:
    path = tmp_path / "r"
    with new(path) as rec:
        for b in range(n_batches):
            rec.append(*batch(b, 3))
    return path


def _edit_manifest(path: Path, edit) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", [
    "../outside.npz", "/etc/passwd", "batches/../run.json", "batches/sub/x.npz",
    "batches/.hidden.npz", "batches/..", "batches\\x.npz", "run.json", "batches/", 7,
    None, "batches/a\x00b.npz",
])
@pytest.mark.parametrize("field", ["chunk", "record"])
def test_manifest_naming_a_file_outside_batches_is_refused(tmp_path, name, field):
    path = _recorded(tmp_path)

    def edit(manifest):
        entry = manifest["batches"][1]
        if field == "chunk":
            entry["chunks"][0]["file"] = name
        else:
            entry["record"] = name

    _edit_manifest(path, edit)
    with pytest.raises(ConfigError, match="only plain file names inside batches/") as info:
        Recording.open(path)
    assert f"recording {path}" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="only plain file names"):
        read_measurements(path)
    with pytest.raises(ConfigError, match="only plain file names"):
        Recording.resume(path)
    assert not (path / "lock").exists()


@posix_only
def test_symlinks_never_lead_reads_outside_the_recording(tmp_path):
    path = _recorded(tmp_path)
    chunk = path / "batches" / "000001-000.npz"
    outside = tmp_path / "outside.npz"
    outside.write_bytes(chunk.read_bytes())  # same bytes: the sha256 check alone would pass
    chunk.unlink()
    chunk.symlink_to(outside)
    rec = Recording.open(path)
    np.testing.assert_array_equal(rec.to_measurement(slice(0, 3)).values, batch(0, 3)[0])
    with pytest.raises(ConfigError, match="a symlink is refused") as info:
        _ = rec.values
    assert str(path) in str(info.value)

    # a batches/ folder that is a symlink to a copy elsewhere: refused for reading and writing
    other = tmp_path / "copy"
    path2 = _recorded(tmp_path / "b")
    (path2 / "batches").rename(other)
    (path2 / "batches").symlink_to(other)
    with pytest.raises(ConfigError, match=r"batches is not a plain folder"):
        _ = Recording.open(path2).values
    with pytest.raises(ConfigError, match="not a plain folder"):
        Recording.resume(path2)
    assert sorted(os.listdir(other)) == ["000000-000.npz", "000000.json", "000001-000.npz",
                                        "000001.json"]  # nothing deleted through the link


@pytest.mark.parametrize(("which", "content", "words"), [
    ("manifest.json", b"\xff\xfe\x00{not utf-8", "not UTF-8 text"),
    ("manifest.json", b"[" * 200_000, "nested too deeply"),
    ("run.json", b'{"a":' * 5000 + b"1" + b"}" * 5000, "nested"),
    ("manifest.json", b'{"format": "lsi-recording", "format_version": NaN}', "not valid JSON"),
    ("manifest.json", b"{trailing", "not valid JSON"),
    ("run.json", b"[1, 2]", "not an LSI recording file"),
])
def test_unreadable_json_is_one_config_error_line(tmp_path, which, content, words):
    path = _recorded(tmp_path)
    (path / which).write_bytes(content)
    with pytest.raises(ConfigError, match=words) as info:
        Recording.open(path)
    message = str(info.value)
    assert str(path / which) in message and "\n" not in message


def _set(tree, dotted: str, value) -> None:
    keys = [int(k) if k.isdigit() else k for k in dotted.split(".")]
    for key in keys[:-1]:
        tree = tree[key]
    tree[keys[-1]] = value


@pytest.mark.parametrize(("which", "dotted", "value", "words"), [
    ("run.json", "m", "8", "m is '8'"),
    ("run.json", "m", True, "m is True"),
    ("run.json", "settings", [1], "settings is"),
    ("run.json", "chunk_scenes", 0, "chunk_scenes is 0"),
    ("run.json", "format_version", "1", "format_version"),
    ("manifest.json", "batches.0", "x", r"batches\[0\] is 'x'"),
    ("manifest.json", "batches.1.n_scenes", "3", r"batches\[1\]\.n_scenes"),
    ("manifest.json", "batches.1.first_scene", 2, r"batches\[1\]\.first_scene is 2"),
    ("manifest.json", "batches.1.chunks", [], r"batches\[1\]\.chunks is \[\]"),
    ("manifest.json", "batches.1.chunks.0", None, r"batches\[1\]\.chunks\[0\] is None"),
    ("manifest.json", "batches.1.chunks.0.n_scenes", 2, "sum of its chunks"),
    ("manifest.json", "batches.0.record_sha256", 5, "record_sha256"),
    ("manifest.json", "batches.0.chunks.0.sha256", "zz", "sha256"),
    ("manifest.json", "n_scenes", 7, "n_scenes is 7"),
    ("manifest.json", "n_batches", 3, "n_batches != batches"),
])
def test_wrongly_typed_run_or_manifest_is_refused(tmp_path, which, dotted, value, words):
    path = _recorded(tmp_path)
    doc = json.loads((path / which).read_text())
    _set(doc, dotted, value)
    (path / which).write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=words) as info:
        Recording.open(path)
    assert str(path / which) in str(info.value) and "\n" not in str(info.value)


def test_malformed_batch_record_is_refused(tmp_path):
    import hashlib

    path = _recorded(tmp_path)
    record = path / "batches" / "000001.json"
    doc = json.loads(record.read_text())
    doc["scene_ids"] = {"not": "a list"}
    raw = json.dumps(doc).encode()
    record.write_bytes(raw)  # and make the manifest vouch for it
    _edit_manifest(path, lambda m: _set(m, "batches.1.record_sha256",
                                        hashlib.sha256(raw).hexdigest()))
    rec = Recording.open(path)
    with pytest.raises(ConfigError, match=r"batch record .*000001\.json is malformed"):
        _ = rec.scene_ids
    with pytest.raises(ConfigError, match="malformed"):
        read_measurements(path)


def test_manifest_claiming_huge_counts_is_refused_without_allocating(tmp_path):
    import tracemalloc

    path = _recorded(tmp_path)
    huge = 10**9

    def claim(manifest):  # consistent sums, so only the data can tell it is a lie
        manifest["batches"][1]["n_scenes"] = huge
        manifest["batches"][1]["chunks"][0]["n_scenes"] = huge
        manifest["n_scenes"] = 3 + huge

    _edit_manifest(path, claim)
    rec = Recording.open(path)
    assert rec.n_scenes == 3 + huge
    tracemalloc.start()
    try:
        for read in (lambda: rec.values, lambda: rec.to_measurement(),
                     lambda: rec.to_measurement(slice(None, None, 7)),
                     lambda: read_measurements(path)):
            with pytest.raises(ConfigError, match=r"claims 1000000000 scenes x 8 patterns") as e:
                read()
            assert "000001-000.npz" in str(e.value) and str(path) in str(e.value)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, peak  # nothing near the 16 GB the claim would need
    with pytest.raises(ConfigError, match="does not match the manifest"):
        _ = rec.scene_ids  # the batch record (3 ids) contradicts the claim as well

    def inconsistent(manifest):  # a batch claiming more scenes than its chunks hold
        manifest["batches"][1]["n_scenes"] = huge
        manifest["n_scenes"] = 3 + huge

    path2 = _recorded(tmp_path / "b")
    _edit_manifest(path2, inconsistent)
    with pytest.raises(ConfigError, match=r"batches\[1\]\.n_scenes is 1000000000; allowed: 3"):
        Recording.open(path2)


def test_chunk_headers_must_match_the_manifest(tmp_path):
    """A chunk file as large as claimed, but whose arrays are not what the manifest says."""
    import hashlib
    import io

    path = _recorded(tmp_path)
    buf = io.BytesIO()
    np.savez(buf, values=np.zeros((3, M), dtype=np.float32), timestamps=np.zeros((3, M)),
             scene_ids=np.array(["a", "b", "c"]), padding=np.zeros(1000))
    raw = buf.getvalue()
    (path / "batches" / "000001-000.npz").write_bytes(raw)
    _edit_manifest(path, lambda m: _set(m, "batches.1.chunks.0.sha256",
                                        hashlib.sha256(raw).hexdigest()))
    with pytest.raises(ConfigError, match=r"does not match the manifest \(values is \(3, 8\) "
                                          r"float32"):
        _ = Recording.open(path).values


def test_reading_more_than_the_memory_limit_is_refused(tmp_path, monkeypatch):
    path = _recorded(tmp_path)
    monkeypatch.setenv("LSI_MAX_MEMORY_GB", str(100 / 2**30))  # 100 bytes
    with pytest.raises(ConfigError, match=r"reading .* needs about .* the limit is"):
        _ = Recording.open(path).values
    monkeypatch.delenv("LSI_MAX_MEMORY_GB")
    assert Recording.open(path).values.shape == (6, M)


@posix_only
def test_lock_file_symlink_is_refused_and_finished_recordings_hold_no_lock(tmp_path):
    path = tmp_path / "r"
    with new(path) as rec:
        assert (path / "lock").is_file()  # held while writing
        rec.append(*batch(0, 2))
    assert not (path / "lock").exists()  # a finished recording holds no stale lock file
    with Recording.resume(path) as rec:
        assert (path / "lock").is_file()
        rec.append(*batch(1, 2))
    assert not (path / "lock").exists()
    rec = Recording.resume(path)
    rec.close()
    rec.close()  # idempotent
    assert not (path / "lock").exists()
    with pytest.raises(ConfigError, match="m differs"):  # a refused resume leaves none either
        Recording.resume(path, m=M + 1)
    assert not (path / "lock").exists()

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (path / "lock").symlink_to(victim)
    with pytest.raises(ConfigError, match=r"lock file .*lock is a symlink"):
        Recording.resume(path)
    with pytest.raises(ConfigError, match="symlink"):
        Recording.create_or_resume(path, m=M, settings=SETTINGS, pattern_name="hadamard-8")
    with pytest.raises(ConfigError, match="symlink"):
        new(path, overwrite=True)
    assert victim.read_text() == "precious"  # neither followed nor truncated
    assert (path / "lock").is_symlink()
    assert Recording.open(path).n_batches == 2  # the recording itself is untouched


@posix_only
def test_a_writer_that_locked_a_deleted_lock_file_tries_again(tmp_path):
    """The race of removing the lock file on close: a writer that locked the old (now
    deleted) file must not think it holds the lock."""
    from lsi_hw import recording as R

    path = _recorded(tmp_path)
    real_lock = R.PathLock._open_and_lock
    calls = {"n": 0}

    def lock_then_lose_the_race(self):
        fd = real_lock(self)
        calls["n"] += 1
        if calls["n"] == 1:  # a closing writer deletes the file we just locked
            os.unlink(self.path)
        return fd

    R.PathLock._open_and_lock = lock_then_lose_the_race
    try:
        with Recording.resume(path) as rec:
            assert calls["n"] == 2  # locked again, this time the file at the name
            assert (path / "lock").is_file()
            other = None
            with pytest.raises(ConfigError, match="being written"):
                other = Recording.resume(path)
            assert other is None
            rec.append(*batch(2, 1))
    finally:
        R.PathLock._open_and_lock = real_lock
    assert Recording.open(path).n_batches == 3


@posix_only
@pytest.mark.parametrize("umask", [0o027, 0o002])
def test_files_and_folders_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = tmp_path / "r"
        with new(path, chunk_scenes=2) as rec:
            rec.append(*batch(0, 3))
        with Recording.resume(path) as rec:
            rec.append(*batch(1, 1))
    finally:
        os.umask(old)
    for folder in (path, path / "batches"):
        assert folder.stat().st_mode & 0o777 == 0o777 & ~umask, folder
    files = [path / "run.json", path / "manifest.json", *(path / "batches").iterdir()]
    assert len(files) == 2 + 5
    for file in files:
        assert file.stat().st_mode & 0o777 == 0o666 & ~umask, file


def test_leftover_temporary_files_of_atomic_writes_are_removed(tmp_path):
    path = _recorded(tmp_path, n_batches=1)
    folder = path / "batches"
    junk = [folder / ".000001-000.npz.k2j4_a.tmp", folder / ".000001.json.x.tmp",
            path / ".manifest.json.abc123.tmp", path / ".run.json.q.tmp"]
    for file in junk:
        file.write_bytes(b"half")
    keep = path / "batches" / ".notes.tmp"  # not one of ours
    keep.write_text("user")
    with Recording.resume(path) as rec:
        rec.append(*batch(1, 1))
    assert not any(file.exists() for file in junk)
    assert keep.exists()


def test_refused_resume_names_every_differing_key(tmp_path):
    path = tmp_path / "r"
    old = {f"k{i:02d}": i for i in range(12)}
    Recording.create(path, m=M, settings=old, pattern_name="p").close()
    changed = {k: v + 100 for k, v in old.items()}
    with pytest.raises(ConfigError) as info:
        Recording.resume(path, settings=changed)
    message = str(info.value)
    assert "k00 (recorded 0, now 100)" in message and "and 4 more (k08, k09, k10, k11)" in message
    assert all(key in message for key in old) and "\n" not in message
    long = {**old, "k00": "x" * 500}
    with pytest.raises(ConfigError) as info:
        Recording.resume(path, settings=long)
    assert len(str(info.value)) < 600  # long values are shortened
