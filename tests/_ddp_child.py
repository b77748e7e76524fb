"""Child of tests/test_ddp.py: one process of a torchrun launch (or the reference run)."""

from __future__ import annotations

import sys

import torch

from lsi_ml.train import TrainConfig, Trainer, init_distributed


def main() -> None:
    out = sys.argv[1]
    rank, world = init_distributed("gloo")
    torch.set_num_threads(1)
    cfg = TrainConfig(size=32, n_masks=16, steps=4, batch=8, eval_every=0, n_val=8,
                      eval_batch=8, encoder_hidden=32, encoder_block_hidden=16,
                      progress=False, noise="full", lr_masks=0.05, seed=3,
                      bank_steps=3, bank_size=32, bank_batch=8)
    trainer = Trainer(cfg)
    trainer.train()
    if rank == 0:
        torch.save({"optical": trainer.optical.state_dict(),
                    "decoder": trainer.decoder.state_dict(),
                    "loss": trainer.last_loss, "world": world}, out)


if __name__ == "__main__":
    main()
