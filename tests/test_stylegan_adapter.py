"""StyleGAN adapter: pickles need explicit trust; a tiny generator built here runs through it."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from lsi_hw.errors import ConfigError
from lsi_ml.generators.stylegan import StyleGANGenerator


class TinyMapping(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 6)
        self.register_buffer("w_avg", torch.zeros(6))

    def forward(self, z, c):
        return self.fc(z)[:, None].repeat(1, 3, 1)


class Block4(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3 * 4 * 4)

    def forward(self, w):
        return torch.tanh(self.fc(w)).view(-1, 3, 4, 4)


class TinySynthesis(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b4 = Block4()
        self.b8 = nn.Upsample(scale_factor=2)

    def forward(self, ws):
        return self.b8(self.b4(ws[:, 0]))


class TinyGenerator(nn.Module):
    z_dim, w_dim, num_ws, c_dim, img_resolution = 8, 6, 3, 0, 8

    def __init__(self) -> None:
        super().__init__()
        self.mapping = TinyMapping()
        self.synthesis = TinySynthesis()


@pytest.fixture
def pkl(tmp_path):
    path = tmp_path / "tiny.pkl"
    with path.open("wb") as fh:
        pickle.dump({"G_ema": TinyGenerator()}, fh)
    return path


def test_pickle_needs_explicit_trust(pkl):
    with pytest.raises(ConfigError, match="runs code"):
        StyleGANGenerator(pkl)


def test_protocol_on_a_tiny_generator(pkl):
    gen = StyleGANGenerator(pkl, trust=True)
    latent = gen.sample_latent(5, generator=torch.Generator().manual_seed(0))
    assert latent.shape == (5, 3, 6) and gen.latent_shape == (3, 6)
    images = gen.synthesize(latent)
    assert images.shape == (5, 3, 8, 8) and images.min() >= 0 and images.max() <= 1
    feats = gen.features(latent)
    assert [f.shape[-1] for f in feats] == [4, 8]
    assert len(gen.levels) == 3
    again = gen.sample_latent(5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(latent, again)
    half = StyleGANGenerator(pkl, trust=True, truncation_psi=0.5).sample_latent(
        5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(half, 0.5 * latent)  # w_avg is zero in the tiny mapping


def test_bad_files_and_modules(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        StyleGANGenerator(tmp_path / "none.pkl", trust=True)
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match="cannot unpickle"):
        StyleGANGenerator(bad, trust=True)
    with pytest.raises(ConfigError, match="lacks"):
        StyleGANGenerator(nn.Linear(2, 2))
