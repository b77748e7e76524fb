"""Child of tests/test_ddp.py: one process of a torchrun launch (or the reference run)."""

from __future__ import annotations

import sys

import torch

from lsi_ml.training.config import TrainConfig
from lsi_ml.training.distributed import init_distributed
from lsi_ml.training.trainer import Trainer


def main() -> None:
    out = sys.argv[1]
    rank, world = init_distributed("gloo")
    torch.set_num_threads(1)
    cfg = TrainConfig.from_dict({
        "data": {"size": 32, "n_val": 8}, "masks": {"n_masks": 16, "lr": 0.05},
        "decoder": {"hidden": 32, "block_hidden": 16},
        "schedule": {"steps": 4, "batch": 8, "eval_every": 0, "eval_batch": 8},
        "bank": {"steps": 3, "size": 32, "batch": 8},
        "bench": {"noise": "full"}, "progress": False, "seed": 3})
    trainer = Trainer(cfg)
    # the trainable parameters before any step, so the test can check that training moved them
    initial = {part: {name: p.detach().clone() for name, p in module.named_parameters()}
               for part, module in (("optical", trainer.optical), ("decoder", trainer.decoder))}
    trainer.train()
    if rank == 0:
        torch.save({"optical": trainer.optical.state_dict(),
                    "decoder": trainer.decoder.state_dict(),
                    "initial": initial,
                    "loss": trainer.last_loss, "world": world}, out)


if __name__ == "__main__":
    main()
