"""Adapter for a user's local StyleGAN-family generator file (StyleGAN2/3, StyleGAN-XL).

Nothing is downloaded.  NVIDIA's ``.pkl`` files are Python pickles: loading one runs
whatever code it names, so it happens only with an explicit ``trust=True`` (CLI:
``--trust-pickle``) for files you made or got from a source you trust.  The pickle must
hold the generator under ``G_ema`` (NVIDIA's layout) or be the module itself, with the
usual attributes: ``z_dim``, ``w_dim``, ``num_ws``, ``c_dim``, ``img_resolution``,
``mapping(z, c)`` -> (n, num_ws, w_dim) and ``synthesis(ws)`` -> images in [-1, 1].
Their code (``torch_utils``, ``dnnlib``) must be importable, as for NVIDIA's own tools.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lsi_hw.errors import ConfigError

__all__ = ["StyleGANGenerator"]

_REQUIRED = ("z_dim", "w_dim", "num_ws", "mapping", "synthesis")


class StyleGANGenerator:
    """A StyleGAN-family generator behind the toolkit's Generator protocol.

    Parameters
    ----------
    source:
        Path of the ``.pkl`` file, or an already built generator module.
    trust:
        Required True for a file: unpickling runs code from the file.
    feature_layers:
        Names of synthesis submodules whose outputs :meth:`features` returns (default:
        every direct child of ``synthesis``).
    truncation_psi:
        Truncation of sampled latents towards the mean w (1 = none).
    """

    def __init__(
        self,
        source: str | Path | nn.Module,
        *,
        trust: bool = False,
        feature_layers: Sequence[str] | None = None,
        truncation_psi: float = 1.0,
        device: str | torch.device = "cpu",
    ) -> None:
        if isinstance(source, nn.Module):
            net = source
        else:
            path = Path(source)
            if not trust:
                raise ConfigError(
                    f"{path} is a Python pickle: loading it runs code from the file. Load it only "
                    "if you trust where it came from, with trust=True (CLI: --trust-pickle)"
                )
            if not path.is_file():
                raise ConfigError(f"generator file {path} does not exist")
            with path.open("rb") as fh:
                try:
                    loaded = pickle.load(fh)  # explicit, documented opt-in above
                except Exception as exc:
                    raise ConfigError(f"cannot unpickle {path}: {exc}") from exc
            net = loaded["G_ema"] if isinstance(loaded, dict) and "G_ema" in loaded else loaded
        missing = [name for name in _REQUIRED if not hasattr(net, name)]
        if missing:
            raise ConfigError(
                f"the generator lacks {', '.join(missing)}; expected a StyleGAN-family generator"
            )
        self.net = net.to(device).eval().requires_grad_(False)
        self.device = torch.device(device)
        self.truncation_psi = float(truncation_psi)
        children = dict(self.net.synthesis.named_children())
        names = list(children) if feature_layers is None else list(feature_layers)
        unknown = [n for n in names if n not in children]
        if unknown:
            raise ConfigError(f"feature layers {unknown} not in synthesis; have {list(children)}")
        self.feature_layers = names
        self._w_avg: Tensor | None = None

    @property
    def levels(self) -> list[tuple[str, slice]]:
        """One level per w vector of W+: (name, slice along the level axis)."""
        return [(f"w{i}", slice(i, i + 1)) for i in range(int(self.net.num_ws))]

    @property
    def latent_shape(self) -> tuple[int, int]:
        """(num_ws, w_dim): the W+ layout."""
        return int(self.net.num_ws), int(self.net.w_dim)

    def _mean_w(self) -> Tensor:
        if self._w_avg is None:
            avg = getattr(self.net.mapping, "w_avg", None)
            if avg is None:
                z = torch.randn(4096, self.net.z_dim, generator=torch.Generator().manual_seed(0))
                avg = self._map(z.to(self.device)).mean(dim=(0, 1))
            self._w_avg = avg.to(self.device)
        return self._w_avg

    def _map(self, z: Tensor) -> Tensor:
        c = torch.zeros(len(z), int(getattr(self.net, "c_dim", 0)), device=z.device)
        ws = self.net.mapping(z, c)
        return ws if ws.ndim == 3 else ws[:, None].repeat(1, int(self.net.num_ws), 1)

    @torch.no_grad()
    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """W+ latents (n, num_ws, w_dim) of random z through the mapping network."""
        z = torch.randn(int(n), int(self.net.z_dim), generator=generator).to(self.device)
        ws = self._map(z)
        if self.truncation_psi != 1.0:
            ws = self._mean_w() + self.truncation_psi * (ws - self._mean_w())
        return ws

    def synthesize(self, latent: Tensor) -> Tensor:
        """Images (n, 3, H, W) in [0, 1] from W+ latents."""
        images = self.net.synthesis(latent.to(self.device))
        return ((images + 1.0) / 2.0).clamp(0.0, 1.0)

    def features(self, latent: Tensor) -> list[Tensor]:
        """Outputs of the chosen synthesis layers (multi-scale maps) for ``latent``."""
        captured: dict[str, Tensor] = {}
        children = dict(self.net.synthesis.named_children())
        hooks = []
        for name in self.feature_layers:
            def keep(_m: Any, _i: Any, out: Any, name: str = name) -> None:
                captured[name] = out[0] if isinstance(out, tuple) else out
            hooks.append(children[name].register_forward_hook(keep))
        try:
            self.net.synthesis(latent.to(self.device))
        finally:
            for hook in hooks:
                hook.remove()
        return [captured[name] for name in self.feature_layers if name in captured]
