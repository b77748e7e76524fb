"""Joining the process group of a multi-process (``torchrun``) training run."""

from __future__ import annotations

import torch

__all__ = ["dist_info", "init_distributed"]


def dist_info() -> tuple[int, int]:
    """(rank, world size) of the initialised default process group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(backend: str | None = None) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in the environment.

    Does nothing in a plain single-process run (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``).
    The default backend is ``gloo`` (CPU; ``nccl`` when CUDA is available).

    Returns
    -------
    (rank, world_size)
    """
    import os

    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(chosen)
    return dist_info()
