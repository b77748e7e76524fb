"""The optical encoder: learnable binary DMD masks and the physics they are trained through.

:class:`OpticalEncoder` holds ``m`` real-valued mask weights, binarizes them with the
paper's straight-through estimator (``round(clamp(w, 0, 1))`` forward, identity gradient)
and sends scenes through the differentiable torch twin of the bench
(:class:`lsi_hw.sim.torch_model.TorchForwardModel`), built from the same
:class:`~lsi_hw.sim.forward.SimConfig` as ``SimBench``: monitor gamma, relay optics,
DMD, photodiode, PDA100A2 gain, settling, noise and ADC quantization.  The trained masks
leave as a :class:`~lsi_hw.patterns.PatternSet` that any bench can load.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lsi_hw.errors import ConfigError
from lsi_hw.patterns import PatternSet
from lsi_hw.sim.forward import SimConfig
from lsi_hw.sim.torch_model import TorchForwardModel, binarize_ste, round_ste

__all__ = ["MASK_INITS", "OpticalEncoder", "check_mask_init", "initial_weights"]

#: mask initialisations of :class:`OpticalEncoder`
MASK_INITS: tuple[str, ...] = ("random", "hadamard")


def check_mask_init(n_masks: int, mask_shape: tuple[int, int], init: str) -> None:
    """Raise ConfigError unless ``init`` can start ``n_masks`` masks of ``mask_shape``."""
    h, w = (int(v) for v in mask_shape)
    if init not in MASK_INITS:
        raise ConfigError(f"mask init {init!r} is not one of {MASK_INITS}")
    if init == "hadamard":
        if h != w or h < 2 or h & (h - 1):
            raise ConfigError(f"init='hadamard' needs square power-of-two masks; got {h} x {w}")
        if n_masks > h * w:
            raise ConfigError(f"init='hadamard': {n_masks} masks > {h * w} Hadamard rows")


def initial_weights(n_masks: int, mask_shape: tuple[int, int], init: str = "random",
                    seed: int = 0) -> Tensor:
    """Initial mask weights ``(m, H, W)`` in [0, 1] (see :class:`OpticalEncoder`'s ``init``)."""
    check_mask_init(n_masks, mask_shape, init)
    h, w = (int(v) for v in mask_shape)
    if init == "hadamard":
        masks = PatternSet.hadamard(h, int(n_masks), order="sequency").masks
        return 0.25 + 0.5 * torch.from_numpy(masks.astype("float32"))
    generator = torch.Generator().manual_seed(int(seed))
    return torch.rand(int(n_masks), h, w, generator=generator)


class OpticalEncoder(nn.Module):
    """``m`` learnable binary masks over an ``H x W`` grid plus the bench physics.

    Parameters
    ----------
    n_masks:
        Number of masks m (= measurements per scene).
    mask_shape:
        (H, W) of the masks; scenes are resampled onto it by the relay model.
    config:
        The simulated bench (default ``SimConfig()``); its noise preset decides the noise
        added during training.
    mask_bits:
        1 for binary masks (the DMD's native mode); k > 1 trains k-bit masks (values on
        ``2**k`` levels in [0, 1], straight-through rounding), for comparison studies.
    seed:
        Seed of the uniform random initialisation (as the paper).
    init:
        ``random``: weights uniform in [0, 1] (the paper). ``hadamard``: the first ``m``
        sequency-ordered Walsh-Hadamard masks ``(1 + h_k) / 2`` (low spatial frequencies
        first; square power-of-two masks, ``m <= H * W``), stored as weights 0.25 / 0.75 so
        training can still flip mirrors. Measured on SynthFace 64 px, m = 256, decoder
        trained 8000 steps on a measurement bank: val latent L1 0.681 with Hadamard masks
        vs 0.712 with masks learned end to end for 4000 steps from a random start (pose far
        better decoded: yaw R^2 0.42 vs 0.08).
    """

    def __init__(
        self,
        n_masks: int,
        mask_shape: tuple[int, int],
        config: SimConfig | None = None,
        *,
        mask_bits: int = 1,
        seed: int = 0,
        init: str = "random",
    ) -> None:
        super().__init__()
        if int(n_masks) < 1:
            raise ConfigError(f"n_masks={n_masks} must be >= 1")
        if not 1 <= int(mask_bits) <= 8:
            raise ConfigError(f"mask_bits={mask_bits} outside 1..8")
        self.mask_bits = int(mask_bits)
        self.config = config or SimConfig()
        self.weights = nn.Parameter(initial_weights(int(n_masks), tuple(mask_shape), init,
                                                    int(seed)))
        self.physics = TorchForwardModel(self.config, tuple(mask_shape))

    @property
    def n_masks(self) -> int:
        """Number of masks m."""
        return int(self.weights.shape[0])

    def masks(self) -> Tensor:
        """The masks as displayed, (m, H, W): exactly 0/1 (or k-bit levels), STE gradient."""
        if self.mask_bits == 1:
            return binarize_ste(self.weights)
        levels = 2**self.mask_bits - 1
        return round_ste(self.weights.clamp(0.0, 1.0) * levels) / levels

    @torch.no_grad()
    def clamp_(self) -> None:
        """Keep the weights in [0, 1] (call after each optimizer step, as the paper)."""
        self.weights.clamp_(0.0, 1.0)

    def forward(self, images: Tensor, *, noise: bool | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """Detector readings (B, m), volts, of images shown on the monitor.

        ``images`` are (B, 3, H, W) or (B, H, W, 3) drive fractions in [0, 1] (generator
        output); ``noise=None`` follows the config's noise preset.
        """
        return self.detect(self.power(images), noise=noise, generator=generator)

    def power(self, images: Tensor) -> Tensor:
        """Noiseless optical power on the photodiode, W, (B, m), through the masks.

        ``forward(images) == detect(power(images))`` (same noise for the same generator).
        """
        scenes = images.permute(0, 2, 3, 1) if images.shape[1] == 3 and images.ndim == 4 \
            else images
        return self.physics.optical_power(self.physics.irradiance(scenes), self.masks())

    def detect(self, power: Tensor, *, noise: bool | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """Readings (B, m), volts, of optical powers (B, m), W: photodiode, gain, noise, ADC."""
        return self.physics.detect(power, noise=noise, generator=generator)

    def energy_loss(self) -> Tensor:
        """Spread the masks' fill fractions over [0, 1] (the paper's optional energy term).

        Mean squared distance between the sorted fill fractions and evenly spaced targets;
        0 when the fractions are spread uniformly.
        """
        fill = self.masks().flatten(1).mean(dim=1)
        target = torch.linspace(0.5 / self.n_masks, 1 - 0.5 / self.n_masks, self.n_masks,
                                device=fill.device, dtype=fill.dtype)
        return torch.mean((torch.sort(fill).values - target) ** 2)

    def export_patterns(self, name: str = "learned") -> PatternSet:
        """The binary masks as a PatternSet any bench can load (1-bit encoders only)."""
        if self.mask_bits != 1:
            raise ConfigError(
                f"a {self.mask_bits}-bit encoder has no binary patterns; a DMD shows k-bit "
                "masks as k bit planes with weighted exposures, which lsi_hw does not do yet"
            )
        with torch.no_grad():
            masks = self.masks().to(torch.uint8).cpu().numpy()
        return PatternSet(masks, name=name, meta={"generator": "lsi_ml.OpticalEncoder",
                                                   "n_masks": self.n_masks})
