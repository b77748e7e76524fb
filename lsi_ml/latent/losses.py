"""Training losses of the digital encoder, each term weighted by :class:`LossWeights`.

* latent L1 + L2 between decoded and target latents (always available);
* image reconstruction: L1 between ``generator.synthesize`` of both latents;
* identity: ``1 - cos`` between identity embeddings, from the generator's identity part of
  the latent (SynthFace) or a face-recognition network the user provides;
* perceptual: L2 between feature maps of a network the user provides (LPIPS/DINO are not
  downloadable here; no substitute is used silently: the term is skipped and reported).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from lsi_hw.errors import ConfigError
from lsi_ml.config_check import Rule, check_fields

__all__ = ["LossWeights", "encoder_losses"]


@dataclass(frozen=True)
class LossWeights:
    """Weights of each loss term (0 switches a term off)."""

    latent_l1: float = 1.0
    latent_l2: float = 1.0
    image: float = 0.0
    identity: float = 0.0
    perceptual: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self, {f.name: Rule(ge=0) for f in fields(self)}, where="config",
                     prefix="loss.")  # the [loss] table of a TrainConfig


def encoder_losses(
    pred: Tensor,
    target: Tensor,
    weights: LossWeights,
    *,
    synthesize: Callable[[Tensor], Tensor] | None = None,
    identity: Callable[[Tensor], Tensor] | None = None,
    perceptual: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """Weighted loss terms and their sum (key ``"total"``).

    ``identity`` maps a latent to an embedding; ``perceptual`` maps images to features.
    A term with a non-zero weight whose function is missing raises ConfigError (no term
    is quietly dropped).
    """
    if pred.shape != target.shape:
        raise ConfigError(f"latent shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    terms: dict[str, Tensor] = {}
    if weights.latent_l1:
        terms["latent_l1"] = weights.latent_l1 * F.l1_loss(pred, target)
    if weights.latent_l2:
        terms["latent_l2"] = weights.latent_l2 * F.mse_loss(pred, target)
    needs_images = weights.image or weights.perceptual
    if needs_images and synthesize is None:
        raise ConfigError("image/perceptual loss weights need the generator's synthesize()")
    if needs_images:
        assert synthesize is not None
        img_pred, img_target = synthesize(pred), synthesize(target).detach()
        if weights.image:
            terms["image"] = weights.image * F.l1_loss(img_pred, img_target)
        if weights.perceptual:
            if perceptual is None:
                raise ConfigError(
                    "perceptual loss weight > 0 needs a feature network (LPIPS/DINO weights "
                    "from a local file); none is bundled"
                )
            terms["perceptual"] = weights.perceptual * F.mse_loss(
                perceptual(img_pred), perceptual(img_target).detach())
    if weights.identity:
        if identity is None:
            raise ConfigError("identity loss weight > 0 needs an identity embedding function")
        cos = F.cosine_similarity(identity(pred), identity(target).detach(), dim=-1)
        terms["identity"] = weights.identity * torch.mean(1.0 - cos)
    terms["total"] = torch.stack(list(terms.values())).sum() if terms else pred.sum() * 0
    return terms
