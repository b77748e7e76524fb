"""Torch device strings, checked the same way by every config and command."""

from __future__ import annotations

import torch

from lsi_hw.errors import ConfigError

__all__ = ["check_device"]


def check_device(device: str | torch.device, *, label: str = "device=",
                 available: bool = False) -> torch.device:
    """The ``torch.device`` of ``device``.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    label : str
        How the setting is named in the error (``"device="`` in configs, ``"--device "``
        on command lines).
    available : bool
        Also require that a CUDA device is visible to this torch (a command about to run;
        a config may be written on a machine without the GPU it is meant for).

    Raises
    ------
    ConfigError
        Torch does not know the device, or (``available``) it is CUDA and torch sees none.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"{label}{device!r} is not a torch device") from exc
    if available and dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{label}{device!r}: this torch ({torch.__version__}) sees no CUDA "
                          "device; use cpu")
    return dev
