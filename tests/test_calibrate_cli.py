"""`lsi-hw calibrate`: refuses to replace a file unless --force, prints a short summary."""

from __future__ import annotations

import json

from click.testing import CliRunner

from lsi_hw.calibration import CalibrationFile
from lsi_hw.cli import main


def _calibrate(*args: str):
    return CliRunner().invoke(main, ["calibrate", "--routines", "dark,settling", "--size",
                                     "16", *args])


def test_calibrate_prints_the_path_and_one_line_per_routine(tmp_path):
    out = tmp_path / "cal.json"
    result = _calibrate("--out", str(out))
    assert result.exit_code == 0, result.output
    cal = CalibrationFile.load(out)
    output = result.output.split("\r")[-1]  # after the progress bar (stderr)
    lines = output[output.index("wrote "):].strip().splitlines()
    assert lines[0] == f"wrote {out} (calibration id {cal.id})"
    # the operating point comes first: fraction of the range used and the recommendation
    assert lines[1].startswith("  operating_point: brightest typical reading ")
    assert "of +-0.5 V" in lines[1] and "recommended " in lines[1]
    routines = [line for line in lines[1:] if not line.startswith("    ")]
    assert len(routines) == 3 and len(lines) <= 6  # warning / reason lines are indented
    assert routines[1].startswith("  dark: dark level ")
    # 50 dB settles within the delay: the summary says why tau is not given
    assert routines[2].startswith("  settling: unresolved because the carry-over ")
    assert "settling delay" in routines[2] and "tau < " in routines[2]
    assert "{" not in output  # no JSON dump
    assert set(cal.results) == {"operating_point", "dark", "settling"}


def test_calibrate_refuses_an_existing_file_unless_forced(tmp_path):
    out = tmp_path / "cal.json"
    assert _calibrate("--out", str(out)).exit_code == 0
    before = out.read_bytes()
    again = _calibrate("--out", str(out), "--seed", "1")
    assert again.exit_code == 2
    assert again.output.strip() == f"Error: --out {out} exists; add --force to replace it"
    assert out.read_bytes() == before
    forced = _calibrate("--out", str(out), "--seed", "1", "--force")
    assert forced.exit_code == 0, forced.output
    assert out.read_bytes() != before
    assert json.loads(out.read_text())["id"] == CalibrationFile.load(out).id
    assert [p.name for p in tmp_path.iterdir()] == ["cal.json"]


def test_calibrate_refuses_a_missing_folder_and_a_folder_as_out(tmp_path):
    missing = _calibrate("--out", str(tmp_path / "nowhere" / "cal.json"))
    assert missing.exit_code == 2 and "does not exist" in missing.output
    folder = tmp_path / "x.json"
    folder.mkdir()
    assert "is a folder" in _calibrate("--out", str(folder), "--force").output
