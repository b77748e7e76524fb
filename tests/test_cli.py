"""`lsi-hw` through click's CliRunner: the main job and every bad-input case."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from lsi_hw.cli import main
from lsi_hw.patterns import PatternSet
from lsi_hw.types import Measurement

read_measurement = Measurement.load

SMALL = ["--m", "16", "--size", "32"]


def run(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_help_everywhere():
    for args in (["--help"], ["simulate", "--help"], ["patterns", "--help"],
                 ["patterns", "generate", "--help"], ["patterns", "inspect", "--help"],
                 ["patterns", "export", "--help"]):
        result = run(args)
        assert result.exit_code == 0, args
        assert "Usage" in result.output


@pytest.mark.parametrize("noise", ["none", "shot", "read", "full"])
def test_simulate_writes_everything(tmp_path, noise):
    out = tmp_path / "run"
    result = run(["simulate", "--noise", noise, *SMALL, "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("measurement.npz", "expected.npz", "scenes.npz", "patterns.npz",
                 "summary.json", "preview.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["patterns"]["m"] == 16 and summary["noise"] == noise
    assert "SNR" in result.output and "real-time factor" in result.output
    meas = read_measurement(str(out / "measurement.npz"))
    assert meas.values.shape == (4, 16)
    assert meas.settings["noise"]["preset"] == noise
    assert summary["volts_min"] == pytest.approx(meas.values.min())
    assert (out / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert meas.scene_ids == ("siemens_star", "gray_ramp", "gray_staircase", "astronaut")
    with np.load(out / "scenes.npz") as shown:
        assert shown["scenes"].shape[0] == 4 and shown["scenes"].dtype == np.uint8
        assert list(shown["names"]) == list(meas.scene_ids)


def test_simulate_shows_the_built_in_faces_by_name(tmp_path):
    out = tmp_path / "faces"
    result = run(["simulate", "--images", "faces", "--patterns", "random", "--m", "16",
                  "--size", "64", "-o", str(out), "--no-plot"])
    assert result.exit_code == 0, result.output
    meas = read_measurement(str(out / "measurement.npz"))
    assert meas.values.shape == (9, 16)
    assert meas.scene_ids[:2] == ("synthface-0", "synthface-1")
    assert meas.scene_ids[-1] == "astronaut"
    bad = run(["simulate", "--images", "celebs", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "built-in set" in bad.output


def test_simulate_is_seeded(tmp_path):
    a = run(["simulate", "--noise", "full", *SMALL, "--out", str(tmp_path / "a"), "--no-plot"])
    b = run(["simulate", "--noise", "full", *SMALL, "--out", str(tmp_path / "b"), "--no-plot"])
    assert a.exit_code == b.exit_code == 0
    va = read_measurement(str(tmp_path / "a" / "measurement.npz")).values
    vb = read_measurement(str(tmp_path / "b" / "measurement.npz")).values
    np.testing.assert_array_equal(va, vb)


@pytest.mark.parametrize("kind", ["random", "fourier"])
def test_simulate_other_pattern_kinds_and_split(tmp_path, kind):
    out = tmp_path / kind
    result = run(["simulate", "--patterns", kind, *SMALL, "--split", "--out", str(out),
                  "--no-plot"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["patterns"]["m"] == 32


def test_simulate_from_pattern_file_and_image_folder(tmp_path):
    from skimage import io

    masks = PatternSet.random(8, (32, 32), seed=0)
    masks.save(tmp_path / "learned.npz")
    folder = tmp_path / "faces"
    folder.mkdir()
    io.imsave(folder / "a.png", np.random.default_rng(0).integers(0, 256, (40, 40, 3),
                                                                  dtype=np.uint8))
    out = tmp_path / "run"
    result = run(["simulate", "--patterns", str(tmp_path / "learned.npz"), "--images",
                  str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_measurement(str(out / "measurement.npz")).values.shape == (1, 8)


def _bad(tmp_path, args, match):
    out = tmp_path / "never"
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln]
    assert lines[-1].startswith("Error"), result.output
    assert match in result.output, result.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]
    return result


def test_non_binary_mask_file(tmp_path):
    bad = np.zeros((3, 32, 32))
    bad[1, 4, 5] = 0.5
    np.save(tmp_path / "bad.npy", bad)
    r = _bad(tmp_path, ["simulate", "--patterns", str(tmp_path / "bad.npy")], "binary")
    assert "(4, 5)" in r.output and "1" in r.output


def test_nan_in_mask_file(tmp_path):
    bad = np.zeros((2, 32, 32))
    bad[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    _bad(tmp_path, ["simulate", "--patterns", str(tmp_path / "nan.npy")], "non-finite")


def test_shape_mismatch_between_file_and_size(tmp_path):
    PatternSet.random(4, (16, 16), seed=0).save(tmp_path / "p.npz")
    _bad(tmp_path, ["simulate", "--patterns", str(tmp_path / "p.npz"), "--size", "32"],
         "(16, 16)")


def test_more_patterns_than_hadamard_basis(tmp_path):
    _bad(tmp_path, ["simulate", "--m", "2000", "--size", "32"], "1024")


def test_more_patterns_than_the_modulator_holds(tmp_path):
    _bad(tmp_path, ["simulate", "--patterns", "random", "--m", "140000", "--size", "8"],
         "modulator holds")


def test_gain_outside_the_table(tmp_path):
    _bad(tmp_path, ["simulate", *SMALL, "--gain-db", "45"], "allowed: 0, 10, 20")


def test_unreadable_image(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png at all")
    _bad(tmp_path, ["simulate", *SMALL, "--images", str(folder)], "unreadable")


def test_image_of_the_wrong_size(tmp_path):
    from skimage import io

    folder = tmp_path / "imgs"
    folder.mkdir()
    io.imsave(folder / "small.png", np.zeros((20, 20), dtype=np.uint8), check_contrast=False)
    _bad(tmp_path, ["simulate", *SMALL, "--images", str(folder)], "at least 32x32")


def test_unknown_pattern_kind_and_bad_m(tmp_path):
    _bad(tmp_path, ["simulate", "--patterns", "sobol"], "neither hadamard")
    _bad(tmp_path, ["simulate", "--m", "0"], "--m 0")


def test_bad_noise_name_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["simulate", "--noise", "loud"])
    assert result.exit_code == 2 and "loud" in result.output


def test_existing_output_is_not_overwritten(tmp_path):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "precious.txt").write_text("data")
    result = CliRunner().invoke(main, ["simulate", *SMALL, "--out", str(out)])
    assert result.exit_code == 2 and "--force" in result.output
    assert (out / "precious.txt").read_text() == "data"


def test_patterns_generate_inspect_export(tmp_path):
    f = tmp_path / "h.npz"
    assert run(["patterns", "generate", "hadamard", "--m", "30", "--size", "16", "--split",
                "-o", str(f)]).exit_code == 0
    ps = PatternSet.load(f)
    assert ps.m == 60 and ps.is_split
    result = run(["patterns", "inspect", str(f), "--png", str(tmp_path / "grid.png")])
    assert result.exit_code == 0 and "split" in result.output
    assert (tmp_path / "grid.png").is_file()
    out = tmp_path / "frames"
    assert run(["patterns", "export", str(f), "--format", "dlp-frames", "--out",
                str(out)]).exit_code == 0
    frames = sorted(out.glob("frame_*.png"))
    assert len(frames) == 3  # 60 patterns / 24 bit planes
    from skimage import io

    from lsi_hw.patterns import unpack_dlp_frames

    stack = np.stack([io.imread(p)[..., :3] for p in frames])
    dmd = unpack_dlp_frames(stack, 60)
    np.testing.assert_array_equal(dmd, ps.to_dmd(diamond=True))
    out2 = tmp_path / "packed"
    assert run(["patterns", "export", str(f), "--format", "packed", "--out",
                str(out2)]).exit_code == 0
    np.testing.assert_array_equal(np.load(out2 / "packed.npy"), ps.pack())
