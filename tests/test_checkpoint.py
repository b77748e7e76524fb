"""Checkpoints: round trip, atomic write, safe load refuses code."""

from __future__ import annotations

import pickle

import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_ml.checkpoint import git_revision, load_checkpoint, save_checkpoint


def test_round_trip_with_optimizer_state(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "ck.pt", config={"lr": 1e-3, "m": 256}, step=7,
                           model=model.state_dict(), optimizer=opt.state_dict(),
                           extra={"masks": torch.ones(2, 4, 4, dtype=torch.uint8)})
    data = load_checkpoint(path)
    assert data["step"] == 7 and data["config"] == {"lr": 1e-3, "m": 256}
    restored = torch.nn.Linear(3, 2)
    restored.load_state_dict(data["model"])
    assert torch.equal(restored.weight, model.weight)
    opt2 = torch.optim.Adam(restored.parameters())
    opt2.load_state_dict(data["optimizer"])
    assert data["extra"]["masks"].sum() == 32
    assert data["git_revision"] == git_revision()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ck.pt")]


class Evil:
    def __reduce__(self):
        return (print, ("this would run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_load_refuses_files_that_would_run_code(tmp_path):
    path = tmp_path / "evil.pt"
    with path.open("wb") as fh:
        pickle.dump({"format_version": 1, "x": Evil()}, fh)
    with pytest.raises(ConfigError, match="safely"):
        load_checkpoint(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"something": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ConfigError, match="not an lsi_ml checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
