"""Child process of the kill test in ``test_recording.py``: a resumable acquisition.

Usage: ``python _record_child.py PATH N_BATCHES [--large G=B ...] [--hook PHASE:SUFFIX:G]``

Generated batch ``g`` has :func:`batch_size` scenes with ids ``g{g:03d}-s{s:04d}`` and
deterministic content (:func:`expected_batch`), so the parent can check every byte.  Like a
rerun acquisition command, the child creates or resumes the recording and skips batches
whose scenes are already recorded.  It prints, flushed, ``ready``, ``skip batch g``,
``appending batch g``, ``committed batch g`` and ``done``.

``--hook before:manifest.json:3`` stops the child just before ``os.replace`` moves a file
whose name ends with ``manifest.json`` into place while appending batch 3 (``after:``: just
after), printing ``HOOK ...`` and sleeping, so the parent can SIGKILL it at that exact point.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

M = 256
SCENES = 16
CHUNK_SCENES = 64
RUN_SETTINGS = {"bench": "kill-test", "calibration_id": "cal-kill-test", "gain_v_per_a": 1e4}


def scene_ids(g: int, n: int) -> list[str]:
    """Ids of generated batch ``g`` with ``n`` scenes."""
    return [f"g{g:03d}-s{s:04d}" for s in range(n)]


def expected_batch(g: int, n: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Values (V), timestamps (s) and settings of generated batch ``g`` with ``n`` scenes."""
    s = np.arange(n, dtype=np.float64)[:, None]
    p = np.arange(M, dtype=np.float64)[None, :]
    values = g * 10000.0 + s + p / 1000.0
    stamps = g + s * 1e-3 + p * 1e-6
    return values, stamps, {**RUN_SETTINGS, "gen_batch": g}


def batch_size(g: int, large: dict[int, int]) -> int:
    """Scenes in generated batch ``g``."""
    return large.get(g, SCENES)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("n_batches", type=int)
    parser.add_argument("--large", action="append", default=[], help="G=B")
    parser.add_argument("--hook", default=None, help="before|after:SUFFIX:G")
    args = parser.parse_args()
    large = {int(a): int(b) for a, b in (item.split("=") for item in args.large)}

    from lsi_hw.recording import Recording

    current = {"g": -1}
    if args.hook:
        phase, suffix, target = args.hook.split(":")
        real_replace = os.replace

        def replace(src: str, dst: str) -> None:
            hit = current["g"] == int(target) and os.fspath(dst).endswith(suffix)
            if hit and phase == "before":
                print(f"HOOK before {os.path.basename(dst)} batch {target}", flush=True)
                time.sleep(60)
            real_replace(src, dst)
            if hit and phase == "after":
                print(f"HOOK after {os.path.basename(dst)} batch {target}", flush=True)
                time.sleep(60)

        os.replace = replace

    rec = Recording.create_or_resume(
        args.path, m=M, settings=RUN_SETTINGS, pattern_name="kill-test",
        chunk_scenes=CHUNK_SCENES,
    )
    print("ready", flush=True)
    done = rec.completed_scene_ids()
    for g in range(args.n_batches):
        n = batch_size(g, large)
        ids = scene_ids(g, n)
        if set(ids) <= done:
            print(f"skip batch {g}", flush=True)
            continue
        values, stamps, settings = expected_batch(g, n)
        current["g"] = g
        print(f"appending batch {g}", flush=True)
        rec.append(values, stamps, ids, settings=settings)
        print(f"committed batch {g}", flush=True)
    rec.close()
    print("done", flush=True)


if __name__ == "__main__":
    sys.exit(main())
