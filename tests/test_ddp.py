"""DDP: two CPU processes (torchrun, gloo) train exactly like one process on the same
global batch, because each scene's noise is keyed by its position in the global batch.
The child run ends with decoder-only steps on a measurement bank (``bank.steps``), so the
bank phase's batch split and its DDP wrapper are compared too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

CHILD = Path(__file__).with_name("_ddp_child.py")


def _run(args: list[str]) -> None:
    root = str(Path(__file__).resolve().parents[1])  # also from a source tree, not installed
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_two_process_gloo_matches_single_process(tmp_path: Path) -> None:
    single, multi = tmp_path / "single.pt", tmp_path / "ddp.pt"
    _run([sys.executable, str(CHILD), str(single)])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
          "--nproc_per_node", "2", str(CHILD), str(multi)])
    a = torch.load(single, weights_only=True)
    b = torch.load(multi, weights_only=True)
    assert a["world"] == 1 and b["world"] == 2
    # the masks and the decoder moved (the run did something): every trainable parameter
    # of both runs ends farther from its initial value than the tolerance used below ...
    for run in (a, b):
        for part in ("optical", "decoder"):
            initial = run["initial"][part]
            assert initial, (run["world"], part)
            for name, start in initial.items():
                assert not torch.allclose(start, run[part][name], rtol=1e-4, atol=1e-5), (
                    "training did not move", run["world"], part, name)
    # ... and the two runs ended in the same place
    for part in ("optical", "decoder"):
        for name, tensor in a[part].items():
            assert torch.allclose(tensor, b[part][name], rtol=1e-4, atol=1e-5), (part, name)
    assert abs(a["loss"] - b["loss"]) < 1e-4 * max(1.0, abs(a["loss"]))


def test_ddp_child_changes_parameters(tmp_path: Path) -> None:
    """The comparison above is not vacuous: training moves the parameters."""
    from lsi_ml.training.config import TrainConfig
    from lsi_ml.training.trainer import Trainer

    cfg = TrainConfig.from_dict({
        "data": {"size": 32, "n_val": 8}, "masks": {"n_masks": 16, "lr": 0.05},
        "decoder": {"hidden": 32, "block_hidden": 16},
        "schedule": {"steps": 0, "batch": 8, "eval_every": 0, "eval_batch": 8},
        "bench": {"noise": "full"}, "progress": False, "seed": 3})
    before = Trainer(cfg)
    out = tmp_path / "single.pt"
    _run([sys.executable, str(CHILD), str(out)])
    after = torch.load(out, weights_only=True)
    assert not torch.equal(before.optical.state_dict()["weights"], after["optical"]["weights"])
    assert not torch.equal(before.decoder.state_dict()["trunk.0.weight"],
                           after["decoder"]["trunk.0.weight"])
