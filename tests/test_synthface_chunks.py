"""SynthFace chunked rendering is a speed-only setting: images and segmentation do not
depend on how a batch is split into chunks (beyond float rounding)."""

from __future__ import annotations

import pytest
import torch

from lsi_ml.generators.synthface import SynthFace


@pytest.mark.parametrize("size,n,per_chunk", [(64, 40, None), (32, 9, 4)])
def test_chunk_size_does_not_change_the_render(size: int, n: int,
                                               per_chunk: int | None) -> None:
    g = SynthFace(size, seed=0)
    if per_chunk is not None:
        g.chunk_pixels = per_chunk * size**2
    z = g.sample_latent(n, torch.Generator().manual_seed(n))
    assert g.chunk_pixels // size**2 < n  # the batch is split (64 px: the default)
    with torch.no_grad():
        split = g.render(z)
        g.chunk_pixels = 1 << 24  # one chunk
        whole = g.render(z)
    assert torch.equal(split.segmentation, whole.segmentation)
    assert torch.allclose(split.image, whole.image, rtol=0, atol=1e-6)
    assert torch.equal(split.landmarks, whole.landmarks)


def test_chunked_render_keeps_gradients() -> None:
    g = SynthFace(32, seed=0)
    g.chunk_pixels = 4 * 32**2  # 4 faces per chunk
    z = g.sample_latent(6, torch.Generator().manual_seed(1)).requires_grad_()
    g.synthesize(z).mean().backward()
    assert z.grad is not None and bool(torch.isfinite(z.grad).all())
    assert float(z.grad.abs().sum()) > 0
