"""``OUT/summary.md``: our Table-1/Table-2-style rows beside the paper's numbers.

Written after every ``python -m sims`` run from the CSV files in OUT (nothing typed by hand);
``docs/results.md`` is a copy of it (written with it when OUT is ``sims/results``). The
paper's numbers are those of its Tables 1 and 2 (Souza, Zheng, Heidrich, CVPR 2025:
CelebA-HQ at 256 px, StyleGAN-XL, VGGFace / Dlib verification, Inception FID): a
different data set, generator and set of metric networks, so the columns sit side by side
for shape, not for equality.

Where a CSV carries bootstrap intervals (columns ``<score>_ci_lo`` / ``<score>_ci_hi``, from
:meth:`lsi_ml.evaluation.result.EvalResult.ci_row`) a cell prints ``"89.1 [87.9, 90.2]"``, and where
it carries the exact readout (``exact_attribute_accuracy``, ``exact_seg_f1``, ``exact_nme``)
a table of it follows; CSVs without those columns give the tables they always gave.
"""

from __future__ import annotations

import csv
import json
import math
from functools import partial
from pathlib import Path
from typing import Any

from sims.common import RESULTS_DIR, SYNTHFACE_VERSION, device_notes, write_bytes_atomic

RESULTS_PAGE = RESULTS_DIR.parent.parent / "docs" / "results.md"
"""The project page that shows the summary of ``sims/results``."""

# ratio -> (measurements, verif VGGFace %, verif Dlib %, FID, attr %, seg F1 %, NME)
PAPER_TABLE1: dict[int, tuple[int, float | None, float | None, float | None, float, float,
                              float]] = {
    128: (512, 91.97, 92.74, 27.38, 89.07, 70.00, 1.48),
    256: (256, 90.98, 92.68, 26.62, 89.15, 70.94, 1.43),
    512: (128, 89.61, 91.67, 28.66, 89.20, 70.25, 1.48),
    1024: (64, 81.12, 87.44, 28.79, 88.74, 69.18, 1.52),
    2048: (32, 54.72, 77.77, 35.89, 88.06, 65.81, 1.67),
    4096: (16, 27.22, 59.21, 46.18, 86.44, 60.63, 2.01),
    8192: (8, None, None, None, 83.81, 53.77, 2.18),
    16384: (4, None, None, None, 81.75, 46.36, 2.47),
}
"""The paper's Table 1 (simulation, CelebA-HQ test, ratio = measurements : 65536 pixels)."""

PAPER_TABLE2: tuple[tuple[str, float, float, float], ...] = (
    ("FSI-DL (Fourier single-pixel + deep learning)", 3.30, 13.15, 123.5),
    ("SAUNet", 17.84, 50.12, 75.53),
    ("SAUNet (8-bit masks)", 39.47, 65.97, 65.79),
    ("LSI", 90.98, 92.68, 26.62),
)
"""The paper's Table 2 (simulation, 1:256): method, verification VGGFace %, Dlib %, FID."""


def _read(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _pct(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if not math.isfinite(v) else f"{100 * v:.1f}"


def _num(value: Any, digits: int = 2) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if not math.isfinite(v) else f"{v:.{digits}f}"


def _number(value: Any) -> float | None:
    """``value`` as a float (infinite allowed), None if empty, not a number or NaN."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _interval(row: dict[str, str], key: str, percent: bool, digits: int = 2) -> str:
    """``" [lo, hi]"`` from the row's ``<key>_ci_lo`` / ``<key>_ci_hi`` columns ("" if the
    CSV has none or they are empty)."""
    low, high = _number(row.get(f"{key}_ci_lo")), _number(row.get(f"{key}_ci_hi"))
    if low is None or high is None:
        return ""
    if percent:
        return f" [{100 * low:.1f}, {100 * high:.1f}]"
    return f" [{low:.{digits}f}, {high:.{digits}f}]"


def _pct_ci(row: dict[str, str], key: str) -> str:
    """A percentage cell with its interval when the CSV has one: ``"89.1 [87.9, 90.2]"``."""
    text = _pct(row.get(key))
    return text if text == "-" else text + _interval(row, key, True)


def _num_ci(row: dict[str, str], key: str, digits: int = 2) -> str:
    """A number cell with its interval when the CSV has one."""
    text = _num(row.get(key), digits)
    return text if text == "-" else text + _interval(row, key, False, digits)


def _has_intervals(rows: list[dict[str, str]]) -> bool:
    return any(k.endswith("_ci_lo") and _number(v) is not None
               for row in rows for k, v in row.items())


def _has_exact(rows: list[dict[str, str]]) -> bool:
    return any(_number(row.get("exact_seg_f1")) is not None for row in rows)


CI_NOTE = ("[low, high]: 95 % percentile bootstrap interval over the test faces (test pairs "
           "for verification, threshold fixed on the val pairs); none for the FD.")


def _ci_lines(rows: list[dict[str, str]]) -> list[str]:
    """The interval note under a table whose CSV has intervals (none: no lines)."""
    return ["", CI_NOTE] if _has_intervals(rows) else []


def _exact_lines(rows: list[dict[str, str]], label: Any) -> list[str]:
    """A table of the exact readout (render the decoded latent, compare its ground truth
    with the scene's) of rows that have it; rows without it (image-space methods) print
    n/a. No lines when no row has it (CSVs from before the exact readout)."""
    if not _has_exact(rows):
        return []
    lines = ["", "Exact readout (the decoded latent rendered by the generator: its exact "
             "attributes, per-face segmentation F1 and landmark NME against the scene's; "
             "the primary score on SynthFace, no probe involved):", "",
             "| row | exact attr. % | exact seg F1 % | exact NME |", "|---|---|---|---|"]
    missing = False
    for row in rows:
        if _number(row.get("exact_seg_f1")) is None:
            missing = True
            lines.append(f"| {label(row)} | n/a | n/a | n/a |")
            continue
        lines.append(f"| {label(row)} | {_pct_ci(row, 'exact_attribute_accuracy')} | "
                     f"{_pct_ci(row, 'exact_seg_f1')} | {_num_ci(row, 'exact_nme')} |")
    if missing:
        lines += ["", "n/a: an image-space method has no latent to render (only a latent "
                  "decoder has an exact readout)."]
    return lines


def _recognizer_lines(rows: list[dict[str, str]], label: Any) -> list[str]:
    """A table of the SynthFace recognizer's scores of rows that have them (each decoded or
    reconstructed image against its own original); no lines when no row has them."""
    if not any(_number(r.get("recognizer_accuracy")) is not None for r in rows):
        return []
    lines = ["", "Identity by the SynthFace recognizer (a metric-learning CNN trained on "
             "SynthFace renders across nuisances, threshold fixed on held-out render pairs): "
             "each decoded or reconstructed image against its own original (genuine) and "
             "against other test faces (impostors); *accuracy* is over both, *genuine "
             "accepted* is the paper's verification, *hardest impostor* the rejection rate "
             "of each face's most similar other face:", "",
             "| row | accuracy % | genuine accepted % | hardest impostor rejected % |",
             "|---|---|---|---|"]
    for row in rows:
        if _number(row.get("recognizer_accuracy")) is None:
            continue
        lines.append(f"| {label(row)} | {_pct_ci(row, 'recognizer_accuracy')} | "
                     f"{_pct_ci(row, 'recognizer_genuine_accept')} | "
                     f"{_pct_ci(row, 'recognizer_hard_accuracy')} |")
    return lines


def _paper(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _provenance(folder: Path) -> dict[str, Any]:
    """``folder/PROVENANCE.json`` as a dict ({} when absent)."""
    path = folder / "PROVENANCE.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _run_text(entry: dict[str, Any]) -> str:
    """"full run: `command`, N min" of a provenance entry."""
    return (f"{entry.get('mode', '?')} run: `{entry.get('command', '?')}`, "
            f"{entry.get('minutes', '?')} min")


def _subfolder_runs(subs: list[Path], study: str
                    ) -> list[tuple[Path, list[dict[str, str]], dict[str, Any]]]:
    """(folder, rows of ``<study>.csv``, provenance entry) of the subfolders that ran it."""
    return [(sub, rows, _provenance(sub).get(study, {}))
            for sub in subs if (rows := _read(sub / f"{study}.csv"))]


def _table1_lines(comp: list[dict[str, str]]) -> list[str]:
    """A Table-1-style Markdown table of compression-sweep rows, the paper's beside ours."""
    lines = ["| ratio | m (ours) | verif. % (ours) | verif. VGGFace % (paper) | "
             "attr. % (ours / paper) | seg F1 % (ours / paper) | NME (ours / paper) | "
             "FD subst. (ours) / FID (paper) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in comp:
        ratio_text = row.get("ratio", "")
        if not ratio_text.startswith("1:"):
            label = row.get("method", "")
            lines.append(f"| {label} | - | {_pct_ci(row, 'verification_accuracy')} | - | "
                         f"{_pct_ci(row, 'attribute_accuracy')} / - | "
                         f"{_pct_ci(row, 'segmentation_f1')} / - | "
                         f"{_num_ci(row, 'landmark_nme')} / - | {_num(row['fd'])} / - |")
            continue
        ratio = int(ratio_text.split(":")[1])
        p = PAPER_TABLE1.get(ratio)
        lines.append(
            f"| {ratio_text} | {row['m']} | {_pct_ci(row, 'verification_accuracy')} | "
            f"{_paper(p[1]) if p else '-'} | "
            f"{_pct_ci(row, 'attribute_accuracy')} / {_paper(p[4]) if p else '-'} | "
            f"{_pct_ci(row, 'segmentation_f1')} / {_paper(p[5]) if p else '-'} | "
            f"{_num_ci(row, 'landmark_nme')} / {_paper(p[6]) if p else '-'} | "
            f"{_num(row['fd'])} / {_paper(p[3]) if p else '-'} |")
    lines += _ci_lines(comp)
    def label(r: dict[str, str]) -> str:
        return r.get("ratio", "") if r.get("ratio", "").startswith("1:") else r.get("method", "")

    return lines + _exact_lines(comp, label) + _recognizer_lines(comp, label)


#: (CSV column, label, higher is better) of the metrics the LSI-vs-baselines verdict compares
VERDICT_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("verification_accuracy", "verification", True),
    ("attribute_accuracy", "attributes", True),
    ("segmentation_f1", "seg F1", True),
    ("landmark_nme", "NME", False),
)


def _metric_text(value: Any, percent: bool) -> str:
    return f"{_pct(value)} %" if percent else _num(value)


def _printed_score(row: dict[str, str], key: str, higher: bool) -> int:
    """A metric as printed (0.1 % points, 0.01 NME), signed so that larger is better: a
    lead smaller than the printed digits is a tie."""
    value = float(row[key])
    return round(value * 1000) if higher else -round(value * 100)


def _ci_bounds(row: dict[str, str], key: str) -> tuple[float, float] | None:
    """The row's bootstrap interval of ``key`` as numbers (None when the CSV has none)."""
    low, high = _number(row.get(f"{key}_ci_lo")), _number(row.get(f"{key}_ci_hi"))
    return None if low is None or high is None else (low, high)


def _compare(lsi: dict[str, str], other: dict[str, str], key: str, higher: bool
             ) -> tuple[int, bool]:
    """(+1 LSI better, 0 tie, -1 other better; whether decided by intervals). With both
    intervals: better means the intervals do not overlap; else the printed values."""
    a, b = _ci_bounds(lsi, key), _ci_bounds(other, key)
    if a is not None and b is not None:
        if higher:
            return (1 if a[0] > b[1] else -1 if b[0] > a[1] else 0), True
        return (1 if a[1] < b[0] else -1 if b[1] < a[0] else 0), True
    mine, theirs = _printed_score(lsi, key, higher), _printed_score(other, key, higher)
    return (1 if mine > theirs else -1 if mine < theirs else 0), False


def _score_text(row: dict[str, str], key: str, higher: bool) -> str:
    """A verdict's number: ``"78.0 % [73.0, 83.0]"`` (percent) or ``"9.50 [9.1, 9.9]"``."""
    if higher:
        text = _pct(row.get(key))
        return text if text == "-" else f"{text} %" + _interval(row, key, True)
    return _num_ci(row, key)


def _verdict_lines(rows: list[dict[str, str]]) -> list[str]:
    """Where LSI (the better of its two routes) beats every image-space method, and where
    not, per ratio and metric, from a baselines CSV (all ratios).

    Rows with bootstrap intervals are compared by them: LSI wins a metric only when its
    95 % interval and the other method's do not overlap; overlapping intervals are listed
    as undecided. Rows without intervals are compared as printed (a tie counts as a win).
    """
    ratios: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        if row.get("ratio", "-").startswith("1:"):
            ratios.setdefault(row["ratio"], []).append(row)
    wins, undecided, losses = [], [], []
    by_interval = False
    for ratio, group in sorted(ratios.items(), key=lambda kv: int(kv[0].split(":")[1])):
        lsi = [r for r in group if r["method"].startswith("LSI")]
        others = [r for r in group if not r["method"].startswith("LSI")]
        if not lsi or not others:
            continue
        lost, tied = [], []
        for key, name, higher in VERDICT_METRICS:
            score = partial(_printed_score, key=key, higher=higher)
            best = max(lsi, key=score)
            for r in others:
                verdict, decided = _compare(best, r, key, higher)
                by_interval |= decided
                text = (f"{r['method']} {name} {_score_text(r, key, higher)} vs LSI "
                        f"{_score_text(best, key, higher)}")
                if verdict < 0:
                    lost.append(text)
                elif verdict == 0 and decided:
                    tied.append(text)
        if lost:
            losses.append(f"{ratio} ({'; '.join(lost)})")
        if tied:
            undecided.append(f"{ratio} ({'; '.join(tied)})")
        if not lost and not tied:
            wins.append(ratio)
    lines = []
    if wins:
        how = ("beats every image-space method with non-overlapping 95 % intervals"
               if by_interval else "beats or equals (as printed) every image-space method")
        lines.append(f"LSI (the better of its latent and image routes) {how} on "
                     "verification, attributes, seg F1 and NME at " + ", ".join(wins) + ".")
    if undecided:
        lines.append("Intervals overlap (no clear winner) at " + "; ".join(undecided) + ".")
    if losses:
        lines.append("An image-space method does better at " + "; ".join(losses) + ".")
    return ["", *lines] if lines else []


def _device_lines(rows: list[dict[str, str]]) -> list[str]:
    """Notes under a summary table naming its rows computed on a GPU (none: no lines)."""
    notes = device_notes(rows, lambda r: f"{r.get('method', '?')} at {r.get('ratio', '?')}")
    return ["", *notes] if notes else []


def write_summary(out: Path) -> Path | None:
    """Write ``out/summary.md`` from the compression-sweep and baselines CSVs (if any)."""
    comp = _read(out / "compression_sweep.csv")
    base = _read(out / "baselines_table2.csv")
    if not comp and not base:
        return None
    prov = _provenance(out)
    lines = ["## Results", "", *_intro_lines(prov)]
    if comp:
        lines += ["", "### Table 1 style: LSI over compression ratios", "",
                  f"From the {_run_of(prov, 'compression_sweep')}.", ""]
        lines += _table1_lines(comp) + _device_lines(comp)
    subs = sorted(p for p in out.iterdir() if p.is_dir() and p.name not in ("cache", "quick"))
    for sub, extra, entry in _subfolder_runs(subs, "compression_sweep"):
        lines += ["", f"Larger scenes (`sims/results/{sub.name}/`, {_run_text(entry)}): the "
                  "ratios a 64 px scene cannot reach; same training recipe, its own probes "
                  "and probe ceiling at that size.", ""]
        lines += _table1_lines(extra) + _device_lines(extra)
    if base:
        lines += _table2_section(out, base, prov)
    for sub, extra, entry in _subfolder_runs(subs, "baselines"):
        lines += _subfolder_baseline_lines(sub, extra, entry)
    others = [f"`{k}` ({v.get('mode', '?')} run, {v.get('minutes', '?')} min)"
              for k, v in prov.items() if k not in ("compression_sweep", "baselines")]
    if others:
        lines += ["", "Also in `sims/results/`: " + ", ".join(others) + "; see their "
                  "`.md` tables and figures."]
    path = out / "summary.md"
    text = "\n".join(lines) + "\n"
    write_bytes_atomic(path, text.encode())
    if out.resolve() == RESULTS_DIR.resolve() and RESULTS_PAGE.parent.is_dir():
        write_bytes_atomic(RESULTS_PAGE, text.replace("## Results\n", "# Results\n", 1).encode())
    return path


def _run_of(prov: dict[str, Any], study: str) -> str:
    """"full run: `command`, N min, revision R" of a study in the provenance."""
    entry = prov.get(study, {})
    return f"{_run_text(entry)}, revision {entry.get('git_revision', '?')}"


def _intro_lines(prov: dict[str, Any]) -> list[str]:
    """What the summary compares, and warnings about stale or --quick results."""
    modes = sorted({prov[k].get("mode", "?") for k in ("compression_sweep", "baselines")
                    if k in prov})
    lines = ["Generated from the CSV files of `sims/results/` (exact versions in "
             "`PROVENANCE.json`). Ours: SynthFace 64 px (ratio = m : "
             "4096 pixels), verif. (ours) from decoded identity vectors across nuisance "
             "redraws (the recognizer's image-to-original scores follow each table), "
             "FD in a random-conv "
             "substitute space (not Inception FID), our own probes. Paper: CelebA-HQ 256 px "
             "(ratio = m : 65536), StyleGAN-XL, VGGFace / Dlib verification, FID. Compare "
             "the shape of the curves, not the values. At equal measurement counts, our 1:16 "
             "(m = 256) sits beside the paper's 1:256 and our 1:256 (m = 16) beside its "
             "1:4096."]
    stale = sorted(k for k in prov if isinstance(prov[k], dict) and int(
        prov[k].get("synthface_version", 1)) < SYNTHFACE_VERSION)
    if stale:
        lines.append("")
        lines.append(f"**Stale: {', '.join(stale)} {'were' if len(stale) > 1 else 'was'} "
                     f"made with SynthFace v1** (unaligned faces whose identity a grey camera "
                     f"barely sees, identity verification from decoded identity vectors, no "
                     f"intervals); the current default is SynthFace v{SYNTHFACE_VERSION}, "
                     f"scored by exact readout, probes and a recognizer with bootstrap "
                     f"intervals. Regenerate with the commands of the Studies section.")
    if "quick" in modes:
        lines.append("")
        lines.append("**Tables from a --quick run** (400 training steps, 64-128 test faces) "
                     "show that every study runs end to end, not what the method reaches.")
    return lines


def _table2_section(out: Path, base: list[dict[str, str]], prov: dict[str, Any]) -> list[str]:
    """The Table-2-style section: every method at one ratio, the verdict over every ratio
    of ``baselines.csv`` and the paper's Table 2."""
    ratio = next((r["ratio"] for r in base if r.get("ratio", "-") != "-"), "?")
    lines = ["", f"### Table 2 style: LSI vs image-space methods at {ratio}", "",
             f"From the {_run_of(prov, 'baselines')}.", "",
             "| method | scored by | verif. % | attr. % | seg F1 % | NME | FD subst. | "
             "PSNR dB |", "|---|---|---|---|---|---|---|---|"]
    for row in base:
        lines.append(f"| {row['method']} | {row['route']} | "
                     f"{_pct_ci(row, 'verification_accuracy')} | "
                     f"{_pct_ci(row, 'attribute_accuracy')} | "
                     f"{_pct_ci(row, 'segmentation_f1')} "
                     f"| {_num_ci(row, 'landmark_nme')} | {_num(row['fd'])} | "
                     f"{_num_ci(row, 'psnr')} |")
    lines += _ci_lines(base) + _exact_lines(base, lambda r: r.get("method", ""))
    lines += _recognizer_lines(base, lambda r: r.get("method", ""))
    lines += _device_lines(base)
    every_ratio = _read(out / "baselines.csv")
    if every_ratio:
        lines += ["", f"Over every ratio of `baselines.csv` ({len(every_ratio)} rows; "
                  "curves in `baselines_curves.png`), computed from the CSV:"]
        lines += _verdict_lines(every_ratio)
    lines += ["", "The paper's Table 2 (1:256 of 256 px, CelebA-HQ; verification VGGFace / "
              "Dlib %, FID):", "", "| method | VGGFace % | Dlib % | FID |", "|---|---|---|---|"]
    lines += [f"| {m} | {a:.2f} | {b:.2f} | {c:.2f} |" for m, a, b, c in PAPER_TABLE2]
    return lines


def _subfolder_baseline_lines(sub: Path, extra: list[dict[str, str]],
                              entry: dict[str, Any]) -> list[str]:
    """The baselines table of a larger-scene subfolder, with its verdict."""
    lines = ["", f"Baselines on the larger scenes (`sims/results/{sub.name}/`, "
             f"{_run_text(entry)}):", "",
             "| method | scored by | ratio | m | verif. % | attr. % | seg F1 % | NME |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {row['method']} | {row['route']} | {row['ratio']} | {row['m'] or '-'} | "
              f"{_pct_ci(row, 'verification_accuracy')} | "
              f"{_pct_ci(row, 'attribute_accuracy')} "
              f"| {_pct_ci(row, 'segmentation_f1')} | {_num_ci(row, 'landmark_nme')} |"
              for row in extra]
    lines += _ci_lines(extra) + _exact_lines(
        extra, lambda r: f"{r.get('method', '')} at {r.get('ratio', '')}")
    lines += _device_lines(extra) + _verdict_lines(extra)
    return lines
