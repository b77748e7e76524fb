"""sims.report with bootstrap intervals and the exact readout in the CSVs: cells print
"value [low, high]", an exact-readout table follows; CSVs without them give the old tables."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from sims.report import CI_NOTE, write_summary

BASE = {"method": "LSI", "ratio": "1:256", "m": "16", "verification_accuracy": "0.736",
        "fd": "1.11", "attribute_accuracy": "0.688", "segmentation_f1": "0.367",
        "landmark_nme": "8.38", "psnr": "18.83", "ssim": "0.69", "latent_l1": "0.70"}
CI = {"verification_accuracy_ci_lo": "0.70", "verification_accuracy_ci_hi": "0.77",
      "attribute_accuracy_ci_lo": "0.67", "attribute_accuracy_ci_hi": "0.705",
      "segmentation_f1_ci_lo": "0.35", "segmentation_f1_ci_hi": "0.38",
      "landmark_nme_ci_lo": "8.1", "landmark_nme_ci_hi": "8.6",
      "psnr_ci_lo": "18.5", "psnr_ci_hi": "19.1",
      "exact_attribute_accuracy": "0.91", "exact_seg_f1": "0.80", "exact_nme": "2.5",
      "exact_attribute_accuracy_ci_lo": "0.90", "exact_attribute_accuracy_ci_hi": "0.92",
      "exact_seg_f1_ci_lo": "0.79", "exact_seg_f1_ci_hi": "0.81",
      "exact_nme_ci_lo": "2.4", "exact_nme_ci_hi": "2.6"}


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, keys)
        writer.writeheader()
        writer.writerows(rows)


def _summary(tmp_path: Path, comp: list[dict[str, str]], base: list[dict[str, str]]) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    _write(tmp_path / "compression_sweep.csv", comp)
    _write(tmp_path / "baselines_table2.csv", base)
    (tmp_path / "PROVENANCE.json").write_text(json.dumps({}), encoding="utf-8")
    path = write_summary(tmp_path)
    assert path is not None
    return path.read_text(encoding="utf-8")


def _baseline_rows(with_ci: bool) -> list[dict[str, str]]:
    lsi = {**BASE, "method": "LSI (latent route)", "route": "latent probes"}
    image = {**BASE, "method": "Hadamard + least squares", "route": "grey image probes",
             "verification_accuracy": "0.586"}
    if with_ci:
        lsi.update(CI)
        image.update({k: v for k, v in CI.items() if not k.startswith("exact")},
                     exact_attribute_accuracy="nan", exact_seg_f1="", exact_nme="")
    return [lsi, image]


def test_intervals_and_exact_readout_in_the_summary(tmp_path: Path) -> None:
    text = _summary(tmp_path, [{**BASE, **CI}], _baseline_rows(True))
    assert "| 1:256 | 16 | 73.6 [70.0, 77.0] | 90.98 | 68.8 [67.0, 70.5] / 89.15 | " \
           "36.7 [35.0, 38.0] / 70.94 | 8.38 [8.10, 8.60] / 1.43 | 1.11 / 26.62 |" in text
    assert text.count(CI_NOTE) == 2
    assert "| 1:256 | 91.0 [90.0, 92.0] | 80.0 [79.0, 81.0] | 2.50 [2.40, 2.60] |" in text
    assert "| LSI (latent route) | latent probes | 73.6 [70.0, 77.0] |" in text
    assert "| 18.83 [18.50, 19.10] |" in text  # PSNR with its interval
    assert "| Hadamard + least squares | n/a | n/a | n/a |" in text
    assert "an image-space method has no latent to render" in text


def test_csvs_without_intervals_give_the_plain_tables(tmp_path: Path) -> None:
    plain = _summary(tmp_path / "plain", [BASE], _baseline_rows(False))
    assert CI_NOTE not in plain and "Exact readout" not in plain
    assert "| 1:256 | 16 | 73.6 | 90.98 | 68.8 / 89.15 | 36.7 / 70.94 | 8.38 / 1.43 | " \
           "1.11 / 26.62 |" in plain
    assert "| LSI (latent route) | latent probes | 73.6 | 68.8 | 36.7 | 8.38 | 1.11 | " \
           "18.83 |" in plain
    # intervals only decorate cells: removing them gives the plain table back
    with_ci = _summary(tmp_path / "ci", [{**BASE, **CI}], _baseline_rows(True))
    stripped = re.sub(r" \[[^\]]*\]", "", with_ci)
    table = [line for line in plain.splitlines() if line.startswith("| 1:256 |")]
    assert table and all(line in stripped for line in table)
