"""Train the three semantic probes of one generator (attributes, segmentation, landmarks).

:class:`ProbeSet` bundles an :class:`~lsi_ml.latent.probes.AttributeProbe` (linear on the flattened
latent), a :class:`~lsi_ml.latent.probes.SegmentationProbe` (FPN over ``generator.features``) and a
landmark probe (heatmap soft-argmax or plain regression over coarse feature maps) for one
generator. :meth:`ProbeSet.fit` trains them on generator samples (latent -> ground truth of
``generator.render``) drawn from the ``train`` split of
:class:`~lsi_ml.data.synthetic.SyntheticFaces` (an evaluation reads the ``test`` split, a
disjoint stream), deterministically for a given :class:`ProbeConfig`.

Landmark convention: :meth:`ProbeSet.predict` returns pixels in the generator's image frame,
``(x, y)`` with pixel centres at integer coordinates (as ``SynthFace.landmarks``); the
probes themselves work in normalised coordinates ``u = (x + 0.5) / W``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lsi_hw.errors import ConfigError, require_known_keys
from lsi_ml.checkpoint import load_checkpoint, save_checkpoint
from lsi_ml.config_check import Rule, check_fields
from lsi_ml.devices import check_device
from lsi_ml.generators.base import FaceGenerator
from lsi_ml.latent.probes import (
    AttributeProbe,
    HeatmapLandmarkProbe,
    LandmarkProbe,
    SegmentationProbe,
    focal_loss,
)

__all__ = ["LANDMARK_HEADS", "ProbeConfig", "ProbeSet", "train_probes"]

LANDMARK_HEADS: tuple[str, ...] = ("heatmap", "regression")
"""Landmark probe kinds: soft-argmax heatmaps or the paper's flat regression."""

_KIND = "lsi_ml.ProbeSet"

_PROBE_RULES: dict[str, Rule] = {
    **{name: Rule(ge=1) for name in ("batch", "n_train", "seg_width", "seg_depth",
                                     "seg_upscale", "landmark_width", "landmark_depth",
                                     "render_batch")},
    **{name: Rule(ge=0) for name in ("steps", "warmup", "seg_trunk_level",
                                     "landmark_trunk_level", "seg_fine_width",
                                     "weight_decay", "focal_gamma", "class_balance")},
    "seed": Rule(ge=0, le=2**63 - 1),
    "lr": Rule(gt=0),
    "lr_attributes": Rule(gt=0),
    "landmark_head": Rule(choices=LANDMARK_HEADS),
}
"""Allowed values of the :class:`ProbeConfig` fields beyond their types."""


@dataclass(frozen=True)
class ProbeConfig:
    """How the probes are built and trained.

    Attributes
    ----------
    steps : int
        Optimizer steps (all three probes step together, each on its own loss).
    batch : int
        Samples per step.
    lr : float
        Peak Adam learning rate of the segmentation and landmark probes; a linear warm-up
        over ``warmup`` steps, then a cosine decay to 2 % of the peak.
    lr_attributes : float
        Peak Adam learning rate of the (linear) attribute probe.
    warmup : int
        Warm-up steps.
    weight_decay : float
        Decoupled (AdamW) weight decay of all probes.
    n_train : int
        Training faces rendered once (with ground truth and feature maps, kept in memory as
        float16) and sampled with replacement.
    seed : int
        Seed of the training faces (``train`` split of ``SyntheticFaces``), the probe
        initialisation and the batch order.
    seg_width, seg_depth, seg_upscale : int
        FPN width, 3x3 convolutions after the merge and sub-pixel factor of its head.
    focal_gamma : float
        Focal-loss exponent of the segmentation probe (0 = cross-entropy).
    class_balance : float
        Per-class weights of the segmentation loss ``(f_c / max f)^-class_balance`` from
        the class pixel frequencies ``f_c`` of the training set, renormalised to a
        pixel-weighted mean of 1 and capped at 100 (0 = unweighted). Small classes (eyes,
        brows, lips: a few pixels each) otherwise barely move the loss.
    landmark_head : str
        ``"heatmap"`` (soft-argmax, default) or ``"regression"`` (the paper's probe:
        1x1 conv + linear layer on one map).
    landmark_maps : tuple of int
        Indices (into ``generator.features(latent)``, finest first) of the maps the
        landmark probe reads; ``"regression"`` uses the first one.
    landmark_width, landmark_depth : int
        Width and 3x3 convolutions of the landmark probe.
    seg_trunk_level, seg_fine_width : int
        Where the FPN's 3x3 convolutions run (0 = finest map, 1 = the next coarser one:
        about 4x fewer operations) and the width of the narrow full-resolution path that
        then carries the finer maps to the head (0 = none); see
        :class:`~lsi_ml.latent.probes.SegmentationProbe`. 0 / 0 = the original FPN.
    landmark_trunk_level : int
        Level among ``landmark_maps`` (0 = finest) at which the landmark probe's 3x3 stack
        runs (see :class:`~lsi_ml.latent.probes.HeatmapLandmarkProbe`); 0 = the original probe.
    render_batch : int
        Faces per ``render``/``features`` call while building the training set.
    device : str
        Torch device of the training (and of the probe weights afterwards); the generator
        renders there too. Not part of the saved probes' identity.
    progress : bool
        Show tqdm progress bars.

    Notes
    -----
    Probe ceilings measured with these defaults on 512 held-out true latents (``test``
    split, seed 0), SynthFace seed 0, trained on an H100 (``device="cuda"``):
    size 64: attribute accuracy 0.990, macro seg F1 0.820, landmark NME 1.23 (40 s);
    size 128: 0.990, 0.842, 1.27 (60 s). With ``steps=10000, n_train=16384``: size 64
    0.995 / 0.849 / 0.88 (73 s), size 128 0.995 / 0.878 / 0.80 (109 s). The weakest
    segmentation classes are the brows (about 2.5 px each at size 64: F1 0.65-0.70).
    On 2 CPU cores a step of the default probes costs about 1-4 s (shared machine), so a
    CPU budget of a few minutes buys only a few hundred steps: far from these ceilings
    (after 2000 steps on 4096 faces: about 0.976 / 0.76 / 3-5.5). Train on a GPU, or
    once and save the probes (:meth:`ProbeSet.save`).

    Presets at size 64, 2000 steps on 4096 faces (the same budget), trained on one core of
    the shared 2-core dev machine (H100 in brackets; TF32 there), 512 test latents:
    attribute accuracy / macro seg F1 / landmark NME, and the cost per batch of 64 on one
    core (untrained = trained cost; the machine is shared, so +-30 %):

    * :meth:`cpu`: 0.976 / 0.760 / 3.51, 447 s training (H100: 0.976 / 0.760 /
      4.6-4.8). Heads (segmentation + landmarks) about 145-170 ms; ``predict`` of 64
      latents (render + encoder + heads) about 220 ms = ~290 latents/s.
    * :meth:`fast`: 0.976 / 0.700 / 4.89, 159 s training (H100: 0.976 / 0.701 / 4.86).
      Heads about 45-55 ms (3x cheaper: segmentation trunk at 1/4 of the image size +
      32-channel full-resolution path, landmark heatmaps at 1/8 from maps (2, 3));
      ``predict`` about 115 ms = ~550 latents/s. The seg F1 cost falls on the thin
      classes (brows, eyes, lips: 0.52-0.63 instead of 0.57-0.70); landmarks are 40 %
      worse. ``ProbeConfig.fast(landmark_maps=(1, 2, 3), landmark_width=48,
      landmark_depth=4)`` gets NME 4.49 for about 15 ms more.

    The SynthFace render that ``predict`` needs for the feature maps costs 40-75 ms of
    those per 64 latents on one core by itself, so neither preset reaches 1000 latents/s
    on one core (``benchmarks/bench_decode.py``).
    """

    steps: int = 5000
    batch: int = 32
    lr: float = 3e-3
    lr_attributes: float = 3e-2
    warmup: int = 50
    weight_decay: float = 0.0
    n_train: int = 8192
    seed: int = 0
    seg_width: int = 64
    seg_depth: int = 2
    seg_upscale: int = 2
    focal_gamma: float = 1.0
    class_balance: float = 0.5
    landmark_head: str = "heatmap"
    landmark_maps: tuple[int, ...] = (0, 1, 2)
    landmark_width: int = 96
    landmark_depth: int = 3
    seg_trunk_level: int = 0
    seg_fine_width: int = 0
    landmark_trunk_level: int = 0
    render_batch: int = 256
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self, _PROBE_RULES, where="probe config")
        check_device(self.device)
        if not self.landmark_maps or min(self.landmark_maps) < 0:
            raise ConfigError(f"landmark_maps={self.landmark_maps} must be non-empty, >= 0")
        if len(set(self.landmark_maps)) != len(self.landmark_maps):
            raise ConfigError(f"landmark_maps={self.landmark_maps} has duplicates")
        if self.landmark_trunk_level >= len(self.landmark_maps):
            raise ConfigError(f"landmark_trunk_level={self.landmark_trunk_level} must be < "
                              f"len(landmark_maps)={len(self.landmark_maps)}")

    @classmethod
    def cpu(cls, **overrides: Any) -> ProbeConfig:
        """The laptop-CPU preset (what ``lsi-ml`` trains by default): 2000 steps on 4096
        faces, landmark head on the coarser maps (1, 2, 3) with 4 convolutions; about
        0.14 s a step on one core at 64 px (~5 min). Measured ceiling at 64 px (one
        shared core): attributes 0.976, seg F1 0.760, NME 3.5 (remeasured: 3.51; same
        budget on an H100: 0.976 / 0.760 / 4.6-4.8) -- the quality defaults
        (``ProbeConfig()``, ideally on a GPU) are far better. :meth:`fast` is a variant with
        3x cheaper heads for scoring."""
        values: dict[str, Any] = {"steps": 2000, "n_train": 4096, "landmark_maps": (1, 2, 3),
                                  "landmark_depth": 4}
        values.update(overrides)
        return cls(**values)

    @classmethod
    def fast(cls, **overrides: Any) -> ProbeConfig:
        """:meth:`cpu` with about 3x cheaper dense heads, for high-throughput scoring.

        Segmentation: FPN trunk (width 48, 2 convolutions) at the second-finest map, then
        a 32-channel path at the finest map (``seg_trunk_level=1, seg_fine_width=32``).
        Landmarks: heatmaps from maps (2, 3) (1/8 of the image size), width 96, 3
        convolutions. Same training budget as :meth:`cpu`; about 3x cheaper heads and 2x
        faster :meth:`ProbeSet.predict` on a CPU, for segmentation F1 0.76 -> 0.70 and
        landmark NME 3.5 -> 4.9 at 64 px (see the class notes).
        """
        values: dict[str, Any] = {"seg_width": 48, "seg_trunk_level": 1,
                                  "seg_fine_width": 32, "landmark_maps": (2, 3),
                                  "landmark_width": 96, "landmark_depth": 3}
        values.update(overrides)
        return cls.cpu(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``landmark_maps`` as a list); :meth:`from_dict` inverts it."""
        data = asdict(self)
        data["landmark_maps"] = list(self.landmark_maps)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeConfig:
        """Config from :meth:`to_dict` output (lists become tuples); unknown keys and
        values of the wrong type raise ConfigError."""
        if not isinstance(data, dict):
            raise ConfigError(f"probe config must be a table, not {type(data).__name__}")
        require_known_keys(data, (f.name for f in fields(cls)), "probe config keys")
        return cls(**data)


def probe_generator_signature(generator: FaceGenerator) -> dict[str, Any]:
    """What a probe set is tied to: class, size, seed, latent shape, class/attribute names."""
    size = getattr(generator, "size", None)
    seed = getattr(generator, "seed", None)
    return {
        "class": type(generator).__name__,
        "size": None if size is None else int(size),
        "seed": None if seed is None else int(seed),
        "latent_shape": [int(v) for v in generator.latent_shape],
        "class_names": [str(c) for c in generator.class_names],
        "attribute_names": [str(a) for a in generator.attribute_names],
    }


class ProbeSet(nn.Module):
    """Attribute, segmentation and landmark probes for one generator.

    Parameters
    ----------
    generator
        A ground-truth generator (e.g. :class:`~lsi_ml.generators.synthface.SynthFace`)
        with ``size``, ``latent_shape``, ``class_names``, ``attribute_names``,
        ``features(latent)`` and ``render(latent)``. It is kept as a plain reference (not a
        submodule, not saved); its signature (class, size, seed, latent shape, class and
        attribute names) is stored and checked on :meth:`load`.
    config : ProbeConfig or None
        Architecture (and training) settings; default ``ProbeConfig()``.

    Notes
    -----
    The probes are initialised from ``config.seed``; build it and call :meth:`fit`, or use
    :func:`train_probes`.
    """

    def __init__(self, generator: FaceGenerator, config: ProbeConfig | None = None) -> None:
        super().__init__()
        cfg = config or ProbeConfig()
        self.config = cfg
        self.generator = generator
        self.signature = probe_generator_signature(generator)
        self.size = int(generator.size)
        self.class_names: tuple[str, ...] = tuple(self.signature["class_names"])
        self.attribute_names: tuple[str, ...] = tuple(self.signature["attribute_names"])
        n_levels, level_dim = self.signature["latent_shape"]
        with torch.no_grad():
            probe_latent = torch.zeros(1, n_levels, level_dim)
            feats = generator.features(probe_latent)
        self.feature_shapes: list[tuple[int, int, int]] = [tuple(f.shape[1:]) for f in feats]
        if max(cfg.landmark_maps) >= len(feats):
            raise ConfigError(f"landmark_maps={cfg.landmark_maps}: the generator has only "
                              f"{len(feats)} feature maps")
        self.train_stats: dict[str, float] = {}
        with torch.random.fork_rng(devices=[]):  # seeded init, caller's RNG untouched
            torch.manual_seed(cfg.seed)
            self.attributes = AttributeProbe(n_levels * level_dim, len(self.attribute_names))
            self.segmentation = SegmentationProbe(
                [c for c, _, _ in self.feature_shapes], len(self.class_names),
                width=cfg.seg_width, depth=cfg.seg_depth, upscale=cfg.seg_upscale,
                trunk_level=cfg.seg_trunk_level, fine_width=cfg.seg_fine_width)
            lm_shapes = [self.feature_shapes[i] for i in cfg.landmark_maps]
            self.landmarks: nn.Module
            if cfg.landmark_head == "heatmap":
                self.landmarks = HeatmapLandmarkProbe(
                    [c for c, _, _ in lm_shapes], n_points=68, width=cfg.landmark_width,
                    depth=cfg.landmark_depth, trunk_level=cfg.landmark_trunk_level)
            else:
                c, h, w = lm_shapes[0]
                self.landmarks = LandmarkProbe(c, (h, w), n_points=68,
                                               width=cfg.landmark_width)

    # ---------------------------------------------------------------- forward pieces
    def _landmark_norm(self, feats: Sequence[Tensor]) -> Tensor:
        maps = [feats[i] for i in self.config.landmark_maps]
        if self.config.landmark_head == "heatmap":
            return self.landmarks(maps)
        return self.landmarks(maps[0])

    def _check_latent(self, latent: Tensor) -> Tensor:
        shape = tuple(self.signature["latent_shape"])
        if not isinstance(latent, Tensor) or latent.dim() != 3 or tuple(latent.shape[1:]) \
                != shape:
            got = tuple(latent.shape) if isinstance(latent, Tensor) else type(latent).__name__
            raise ConfigError(f"latent must have shape (B, {shape[0]}, {shape[1]}), got {got}")
        if not torch.isfinite(latent).all():
            raise ConfigError("latent has non-finite values")
        return latent.float()

    def to_pixels(self, norm: Tensor) -> Tensor:
        """Normalised landmark coordinates -> pixels (centres at integers): ``u W - 0.5``."""
        return norm * self.size - 0.5

    def to_normalised(self, pixels: Tensor) -> Tensor:
        """Pixel landmark coordinates -> normalised ``(x + 0.5) / W``."""
        return (pixels + 0.5) / self.size

    @torch.no_grad()
    def predict(self, latent: Tensor, features: Sequence[Tensor] | None = None,
                batch: int = 256) -> dict[str, Tensor]:
        """Read attributes, segmentation and landmarks off latents.

        Parameters
        ----------
        latent : Tensor
            ``(B, L, D)`` latents of the generator.
        features : sequence of Tensor, optional
            ``generator.features(latent)`` if already computed (saves a render).
        batch : int
            Latents per forward pass (memory only).

        Returns
        -------
        dict of Tensor
            ``attributes`` (B, A) bool, ``attribute_logits`` (B, A) float,
            ``segmentation`` (B, H, W) int64 class ids at the generator's image size,
            ``landmarks`` (B, 68, 2) float pixels ``(x, y)`` in the generator's image frame
            (pixel centres at integer coordinates, like ``SynthFace.landmarks``). Results
            are on the device of ``latent``.
        """
        latent = self._check_latent(latent)
        out_device = latent.device
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            logits, segs, lms = [], [], []
            for lo in range(0, latent.shape[0], batch):
                z = latent[lo:lo + batch].to(device)
                with torch.no_grad():
                    if features is None:
                        feats = self.generator.features(z)
                    else:
                        feats = [f[lo:lo + batch].to(device).float() for f in features]
                    # channels_last: same numbers (to ~1e-7), 1.4-2.5x faster convolutions
                    # and upsampling on CPU; max(1).indices is much faster than argmax(1)
                    feats = [f.contiguous(memory_format=torch.channels_last) for f in feats]
                    logits.append(self.attributes(z))
                    segs.append(self.segmentation.predict_classes(feats, (self.size,
                                                                          self.size)))
                    lms.append(self.to_pixels(self._landmark_norm(feats)))
        finally:
            self.train(was_training)
        if not logits:
            raise ConfigError("predict needs at least one latent")
        attr_logits = torch.cat(logits)
        return {
            "attributes": (attr_logits > 0).to(out_device),
            "attribute_logits": attr_logits.to(out_device),
            "segmentation": torch.cat(segs).to(out_device),
            "landmarks": torch.cat(lms).to(out_device),
        }

    # ---------------------------------------------------------------- training
    def _training_set(self, generator: FaceGenerator) -> dict[str, Any]:
        """Render ``n_train`` faces once: latents, GT and float16 feature maps."""
        from lsi_ml.data.synthetic import SyntheticFaces

        cfg = self.config
        data = SyntheticFaces(generator, cfg.n_train, seed=cfg.seed, split="train",
                              cache=False)
        latents, attrs, segs, lms = [], [], [], []
        feats: list[list[Tensor]] = []
        with tqdm(total=cfg.n_train, desc="probe data", unit="face",
                  disable=not cfg.progress, leave=False) as bar, torch.no_grad():
            for lo in range(0, cfg.n_train, cfg.render_batch):
                z = data.latents(range(lo, min(lo + cfg.render_batch, cfg.n_train)))
                z = z.to(cfg.device)
                out = generator.render(z)
                latents.append(z)
                attrs.append(out.attributes.float())
                segs.append(out.segmentation.to(torch.uint8 if len(self.class_names) <= 255
                                                else torch.int64))
                lms.append(self.to_normalised(out.landmarks.float()))
                feats.append([f.half() for f in generator.features(z)])
                bar.update(z.shape[0])
        return {
            "latent": torch.cat(latents),
            "attributes": torch.cat(attrs),
            "segmentation": torch.cat(segs),
            "landmarks": torch.cat(lms),
            "features": [torch.cat([f[k] for f in feats]) for k in range(len(feats[0]))],
        }

    @classmethod
    def fit(cls, generator: FaceGenerator, config: ProbeConfig | None = None) -> ProbeSet:
        """Build a probe set for ``generator`` and train it (see :func:`train_probes`)."""
        return train_probes(generator, config)

    def train_on(self, generator: FaceGenerator) -> dict[str, float]:
        """Train this probe set in place on fresh samples of ``generator``.

        Returns
        -------
        dict
            ``seconds_data`` and ``seconds_train`` (wall-clock s), and the final running
            losses ``loss_attributes``, ``loss_segmentation``, ``loss_landmarks_px``
            (landmark L1 in pixels for the heatmap head, MSE of normalised coordinates for
            the regression head).
        """
        if probe_generator_signature(generator) != self.signature:
            raise ConfigError("train_on: the generator differs from the one the probes were "
                              "built for")
        cfg = self.config
        t0 = time.perf_counter()
        data = self._training_set(generator)
        t1 = time.perf_counter()
        n = data["latent"].shape[0]
        self.to(cfg.device)
        order = torch.Generator().manual_seed(cfg.seed + 1)
        counts = torch.bincount(data["segmentation"].flatten().long().cpu(),
                                minlength=len(self.class_names)).double()
        class_weight = None
        if cfg.class_balance > 0:
            freq = counts / counts.sum()
            w = (freq.clamp(min=1e-12) / freq.max()) ** (-cfg.class_balance)
            w = w.clamp(max=100.0)
            w = w / float((w * freq).sum())
            class_weight = w.float().to(cfg.device)
        attr_params = list(self.attributes.parameters())
        other = list(self.segmentation.parameters()) + list(self.landmarks.parameters())
        opt = torch.optim.AdamW([
            {"params": attr_params, "lr": cfg.lr_attributes},
            {"params": other, "lr": cfg.lr},
        ], weight_decay=cfg.weight_decay)
        peaks = [cfg.lr_attributes, cfg.lr]

        def factor(step: int) -> float:
            if step < cfg.warmup:
                return (step + 1) / cfg.warmup
            t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
            return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

        size = (self.size, self.size)
        running: dict[str, float] = {}
        self.train()
        with tqdm(total=cfg.steps, desc="probes", unit="step", disable=not cfg.progress,
                  leave=False) as bar:
            for step in range(cfg.steps):
                for group, peak in zip(opt.param_groups, peaks, strict=True):
                    group["lr"] = peak * factor(step)
                idx = torch.randint(0, n, (cfg.batch,), generator=order).to(cfg.device)
                z = data["latent"][idx]
                feats = [f[idx].float() for f in data["features"]]
                l_attr = AttributeProbe.loss(self.attributes(z), data["attributes"][idx])
                l_seg = focal_loss(self.segmentation(feats, size),
                                   data["segmentation"][idx].long(), gamma=cfg.focal_gamma,
                                   weight=class_weight)
                pred = self._landmark_norm(feats)
                target = data["landmarks"][idx]
                if cfg.landmark_head == "heatmap":
                    l_lm = HeatmapLandmarkProbe.loss(pred, target) * self.size
                else:
                    l_lm = LandmarkProbe.loss(pred, target)
                opt.zero_grad(set_to_none=True)
                (l_attr + l_seg + l_lm).backward()
                opt.step()
                for key, val in (("loss_attributes", l_attr), ("loss_segmentation", l_seg),
                                 ("loss_landmarks_px", l_lm)):
                    v = float(val.detach())
                    running[key] = v if key not in running else 0.95 * running[key] + 0.05 * v
                if cfg.progress and step % 20 == 0:
                    bar.set_postfix(attr=f"{running['loss_attributes']:.3f}",
                                    seg=f"{running['loss_segmentation']:.3f}",
                                    lm=f"{running['loss_landmarks_px']:.3f}")
                bar.update(1)
        self.eval()
        return {"seconds_data": t1 - t0, "seconds_train": time.perf_counter() - t1, **running}

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write the probes atomically (``lsi_ml.checkpoint``; loadable with weights_only)."""
        return save_checkpoint(
            path, config=self.config.to_dict(), step=self.config.steps,
            model=self.state_dict(),
            extra={"kind": _KIND, "generator": self.signature},
        )

    @classmethod
    def load(cls, path: str | Path, generator: FaceGenerator) -> ProbeSet:
        """Read probes written by :meth:`save` for ``generator``.

        Files saved before the ``seg_trunk_level`` / ``seg_fine_width`` /
        ``landmark_trunk_level`` options load unchanged (their defaults are the original
        architecture).

        Raises
        ------
        ConfigError
            If the file is not a probe checkpoint, was written for a generator with a
            different class, size, seed, latent shape, class names or attribute names, or
            its config or weights do not fit this version's probes (config mismatch).
        """
        payload = load_checkpoint(path)
        extra = payload.get("extra") or {}
        if extra.get("kind") != _KIND:
            raise ConfigError(f"{path} is not a ProbeSet checkpoint")
        saved = extra.get("generator")
        current = probe_generator_signature(generator)
        if saved != current:
            diff = sorted(k for k in set(current) | set(saved or {})
                          if (saved or {}).get(k) != current.get(k))
            raise ConfigError(f"{path}: probes were trained for another generator "
                              f"(differs in {diff}: saved {[(saved or {}).get(k) for k in diff]}"
                              f", given {[current.get(k) for k in diff]})")
        try:
            config = ProbeConfig.from_dict(payload["config"])
        except (ConfigError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: the saved probe config does not fit this version "
                              f"of ProbeConfig ({exc}); retrain the probes") from exc
        probes = cls(generator, config)
        try:
            probes.load_state_dict(payload["model"])
        except RuntimeError as exc:  # missing / unexpected / mis-shaped weights
            first = str(exc).strip().splitlines()
            raise ConfigError(f"{path}: the saved weights do not match the probe "
                              f"architecture of its config (config mismatch, e.g. a file "
                              f"from another version); retrain the probes. "
                              f"{first[0] if first else ''}") from exc
        probes.eval()
        return probes


def train_probes(generator: FaceGenerator, config: ProbeConfig | None = None) -> ProbeSet:
    """Build a :class:`ProbeSet` for ``generator`` and train it on fresh samples.

    Parameters
    ----------
    generator
        Ground-truth generator (``render`` + ``features``), e.g. ``SynthFace(64)``.
    config : ProbeConfig or None
        Settings; ``ProbeConfig()`` by default.

    Returns
    -------
    ProbeSet
        Trained, in eval mode; ``probes.train_stats`` holds the timings and final losses.
    """
    probes = ProbeSet(generator, config)
    probes.train_stats = probes.train_on(generator)
    return probes
