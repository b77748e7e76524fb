"""SynthFace v2's identity is what a grey single-pixel camera can see.

Every identity dimension is either GEOMETRY (one standard deviation moves an edge of the
face by at least one pixel at 64 px) or TONE (one standard deviation changes the grey value
of a face region by at least ``TONE_MIN``); no identity dimension is hue only, and the
hue-only nuisance dimensions leave the grey image unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from lsi_ml.generators.synthface import (
    CLASS_NAMES,
    IDENTITY_INDEX,
    PARAM_INDEX,
    PARAM_NAMES,
    SynthFace,
)

TONE_DIMS = ("skin_light", "hair_dark", "beard", "brow_dark", "brow_thickness")
TONE_MIN = 0.02
"""Grey-value change (of [0, 1]) averaged over the face region that changes: ~5 of 255."""
N_FACES = 12


def _plus_one_sd(z: torch.Tensor, name: str) -> torch.Tensor:
    flat = z.clone().reshape(len(z), -1)
    flat[:, PARAM_INDEX[name]] += 1.0
    return flat.reshape(z.shape)


def _boundary(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def edge_shift_px64(model: SynthFace, z0: torch.Tensor, z1: torch.Tensor) -> np.ndarray:
    """Per face: the largest edge displacement between two renders, in pixels at 64 px.

    The larger of the largest landmark displacement and, over segmentation classes, the
    Hausdorff distance between the class boundaries (rendered at ``model.size`` and scaled
    to 64 px, so edges are located to a fraction of a 64-px pixel).
    """
    k = model.size / 64
    with torch.no_grad():
        a, b = model.render(z0), model.render(z1)
    out = ((a.landmarks - b.landmarks).norm(dim=-1).amax(1) / k).numpy()
    sa, sb = a.segmentation.numpy(), b.segmentation.numpy()
    for i in range(len(sa)):
        for cls in np.union1d(np.unique(sa[i]), np.unique(sb[i])):
            ma, mb = sa[i] == cls, sb[i] == cls
            if ma.sum() < 4 or mb.sum() < 4 or not (ma ^ mb).any():
                continue
            ba, bb = _boundary(ma), _boundary(mb)
            d = max(ndimage.distance_transform_edt(~bb)[ba].max(),
                    ndimage.distance_transform_edt(~ba)[bb].max())
            out[i] = max(out[i], d / k)
    return out


def tone_shift(model: SynthFace, z0: torch.Tensor, z1: torch.Tensor) -> np.ndarray:
    """Per face: the largest mean |grey change| over a segmentation class (either render)."""
    with torch.no_grad():
        a, b = model.render(z0), model.render(z1)
    ga, gb = a.image.mean(1), b.image.mean(1)
    out = torch.zeros(len(z0))
    for cls in range(len(CLASS_NAMES)):
        m = ((a.segmentation == cls) | (b.segmentation == cls)).float()
        cnt = m.flatten(1).sum(1)
        d = ((ga - gb).abs() * m).flatten(1).sum(1) / cnt.clamp(min=1)
        out = torch.maximum(out, torch.where(cnt >= 3, d, torch.zeros_like(d)))
    return out.numpy()


@pytest.fixture(scope="module")
def faces() -> tuple[SynthFace, SynthFace, torch.Tensor]:
    hi, lo = SynthFace(size=256), SynthFace(size=64)
    return hi, lo, hi.sample_latent(N_FACES, torch.Generator().manual_seed(21))


def test_identity_has_no_hidden_dims() -> None:
    names = [PARAM_NAMES[i] for i in IDENTITY_INDEX]
    assert set(TONE_DIMS) <= set(names)
    assert len(names) >= 25
    for hue_word in ("warm", "red", "hue", "tint"):
        assert not any(hue_word in n for n in names), names


@pytest.mark.parametrize("name", [PARAM_NAMES[i] for i in IDENTITY_INDEX
                                  if PARAM_NAMES[i] not in TONE_DIMS])
def test_geometry_identity_moves_an_edge_by_a_pixel(faces, name: str) -> None:
    hi, _, z = faces
    shift = edge_shift_px64(hi, z, _plus_one_sd(z, name))
    assert np.median(shift) >= 1.0, (name, np.round(shift, 2))


@pytest.mark.parametrize("name", TONE_DIMS)
def test_tone_identity_changes_the_grey_image(faces, name: str) -> None:
    _, lo, z = faces
    shift = tone_shift(lo, z, _plus_one_sd(z, name))
    assert shift.mean() >= TONE_MIN, (name, np.round(shift, 3))


@pytest.mark.parametrize("name", ["tan", "hair_tint", "iris_tint"])
def test_hue_only_nuisance_leaves_the_grey_image_alone(faces, name: str) -> None:
    _, lo, z = faces
    with torch.no_grad():
        g0 = lo.synthesize(z).mean(1)
        g1 = lo.synthesize(_plus_one_sd(z, name)).mean(1)
        rgb = (lo.synthesize(z) - lo.synthesize(_plus_one_sd(z, name))).abs().max()
    assert rgb > 0.01  # the colour does change ...
    assert (g0 - g1).abs().mean() < 0.1 * TONE_MIN  # ... but not the grey value (clipping aside)


def test_the_test_can_fail(faces) -> None:
    """A nuisance with a tiny effect (sub-pixel jitter) fails the geometry criterion."""
    hi, _, z = faces
    assert np.median(edge_shift_px64(hi, z, _plus_one_sd(z, "tx"))) < 1.0


def test_attribute_flips_switch_exactly_one_attribute() -> None:
    """attribute_flips(z)[:, k] differs from z in attribute k only (the latent thresholds
    match SynthFace.attributes), with the driver pushed past its threshold."""
    gen = SynthFace(64, seed=0)
    z = gen.sample_latent(64, generator=torch.Generator().manual_seed(11))
    flips = gen.attribute_flips(z)
    assert flips.shape == (64, 10, *z.shape[1:])
    base = gen.attributes(z)
    for k in range(10):
        changed = gen.attributes(flips[:, k]) != base
        assert bool(changed[:, k].all()), k
        assert not bool(torch.cat([changed[:, :k], changed[:, k + 1:]], 1).any()), k
        assert int((flips[:, k] != z).flatten(1).sum(1).max()) == 1
    margins = gen.attribute_margins(z)
    assert torch.equal(margins > 0, base)
    assert torch.equal(gen.attribute_margins(flips[:, 3])[:, 3] > 0, ~base[:, 3])
