"""A bank of noiseless optical powers for fast decoder training with frozen masks.

End-to-end training renders every scene it measures; on a CPU the render costs ~10x the
decoder's update, so the decoder sees few updates per second. Once the masks are fixed
(the second phase of a :class:`~lsi_ml.training.trainer.Trainer` run with ``bank.steps > 0``, or any
frozen-mask fine-tuning) the scene enters the readings only through its optical power on
the photodiode, ``P = optical_power(irradiance(scene), masks)`` (W, one number per mask).
:class:`MeasurementBank` renders ``n`` training scenes ONCE, stores ``P`` (``n x m``
float32) and their latents; every decoder step then draws a batch of stored powers and
sends them through the detector chain (:meth:`~lsi_ml.latent.optical.OpticalEncoder.detect`:
shot/dark/read noise, gain, settling, saturation, ADC) with FRESH seeded noise, i.e. the
readings have exactly the distribution the end-to-end model gives for those scenes.

Memory: ``n * (m + L * D) * 4`` bytes (65536 scenes, m = 256, SynthFace: 126 MiB).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lsi_hw.errors import ConfigError

__all__ = ["MeasurementBank"]

#: scenes rendered and measured per chunk while building a bank
BUILD_CHUNK = 256


class MeasurementBank:
    """Stored optical powers ``(n, m)`` (W) and target latents ``(n, L, D)`` of n scenes.

    Parameters
    ----------
    power : Tensor
        (n, m) noiseless optical power on the detector, W.
    latents : Tensor
        (n, L, D) the scenes' latents (the decoder's targets).
    """

    def __init__(self, power: Tensor, latents: Tensor) -> None:
        if power.ndim != 2 or latents.ndim != 3 or len(power) != len(latents):
            raise ConfigError(f"bank needs power (n, m) and latents (n, L, D) of one n; got "
                              f"{tuple(power.shape)} and {tuple(latents.shape)}")
        if not bool(torch.isfinite(power).all()):
            raise ConfigError("bank powers must be finite")
        self.power = power
        self.latents = latents

    def __len__(self) -> int:
        return int(self.power.shape[0])

    @property
    def nbytes(self) -> int:
        """Memory held, bytes."""
        return (self.power.numel() * self.power.element_size()
                + self.latents.numel() * self.latents.element_size())

    @classmethod
    @torch.no_grad()
    def build(cls, render: Callable[[Tensor], dict[str, Tensor]],
              power: Callable[[Tensor], Tensor], n: int, *, progress: bool = False,
              desc: str = "bank") -> MeasurementBank:
        """Render scenes ``0..n-1`` and store their optical powers.

        Parameters
        ----------
        render : callable
            ``render(indices) -> {"image": (B, 3, H, W), "latent": (B, L, D)}``.
        power : callable
            ``power(images) -> (B, m)`` W, e.g. :meth:`OpticalEncoder.power` of the
            images as the monitor shows them.
        n : int
            Scenes in the bank (>= 1).
        progress : bool
            Show a progress bar.
        """
        if int(n) < 1:
            raise ConfigError(f"a measurement bank needs n >= 1 scenes, got {n}")
        powers: list[Tensor] = []
        latents: list[Tensor] = []
        with tqdm(total=int(n), disable=not progress, desc=desc, unit="scene",
                  dynamic_ncols=True) as bar:
            for start in range(0, int(n), BUILD_CHUNK):
                idx = torch.arange(start, min(start + BUILD_CHUNK, int(n)))
                data = render(idx)
                powers.append(power(data["image"]).detach())
                latents.append(data["latent"].detach().to(powers[-1].device))
                bar.update(len(idx))
        return cls(torch.cat(powers), torch.cat(latents))

    def draw(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Powers (B, m) and latents (B, L, D) of the bank rows ``indices``."""
        idx = indices.to(self.power.device)
        return self.power[idx], self.latents[idx]
