"""Smoke test of the benchmark scripts (the ML ones and bench_patterns): ``--quick`` runs end
to end and prints its results.

Only the exit code and the presence of the result lines are checked; timings are never
asserted (they are machine- and load-dependent). Slow (~1 minute on 2 cores).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_quick(script: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
def test_bench_decode_quick() -> None:
    out = run_quick("bench_decode.py")
    assert "torch " in out and "CPUs" in out
    for key in ("a", "b", "c-cpu", "c-fast"):  # variants of the table, padded: "(a     )"
        rows = [line for line in out.splitlines()
                if re.match(rf"\s*64 \({re.escape(key)}\s*\)", line)]
        assert len(rows) == 2, out  # threads 1 and 2
        for row in rows:
            assert re.search(r"\s\d+\s+1000\s+(PASS|MISS)", row), row
    assert "headline: decoder + ALL probes" in out and "best: ProbeConfig." in out


@pytest.mark.slow
def test_bench_train_step_quick() -> None:
    out = run_quick("bench_train_step.py")
    assert "torch " in out and "CPUs" in out
    ratios = re.findall(r"ratio \(Trainer / plain time per step\) = (\d+\.\d+)", out)
    assert len(ratios) == 2, out
    assert all(float(r) > 0 for r in ratios)
    assert re.search(r"Trainer\s+[\d.]+\s+[\d.]+\s+[\d.]+", out), out
    assert "one plain step in pieces" in out and "ablation" in out
    assert re.search(r"a bank step passes [\d.]+x more scenes per second", out), out


@pytest.mark.slow
def test_bench_patterns_quick() -> None:
    out = run_quick("bench_patterns.py")
    assert "PatternSet.hadamard(256, m=4096)" in out
    assert re.search(r"hadamard m=4096\s+[\d.]+\s+[\d.]+\s+3\.0\s+(PASS|MISS)\s+[\d.]+", out), out
