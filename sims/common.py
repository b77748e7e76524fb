"""What every study shares: configs, cached cells, models, probes, tables, figures, provenance.

A study is a list of independent *cells* (one trained model or one evaluated setting each).
Every finished cell writes its result row to ``OUT/cache/cells/<study>/<config digest>/<key>.json``
(atomically), so an interrupted run loses at most the cells in progress: rerunning the same
command skips the finished ones. Trained models live in
``OUT/cache/models/<hash of their TrainConfig>/model.pt`` (checkpointed every 200 steps,
resumed on a rerun); probes in ``OUT/cache/probes/``. Delete ``OUT/cache`` to start over.
Cells run in ``--jobs`` worker processes (one torch thread each unless ``--threads``).
Studies may run side by side on one OUT: shared models and probes are trained once (a
file lock per model; the others wait and load it).

Configs are TOML files (``sims/configs/<study>.toml``) with a ``[full]`` and a ``[quick]``
table; ``--quick`` picks the second.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lsi_hw.errors import ConfigError
from lsi_hw.plotting import save_figure

if TYPE_CHECKING:
    from lsi_ml.evaluation.recognizer import Recognizer
    from lsi_ml.evaluation.result import EvalResult
    from lsi_ml.generators.base import FaceGenerator
    from lsi_ml.latent.probe_training import ProbeSet
    from lsi_ml.training.config import TrainConfig
    from lsi_ml.training.trainer import Trainer

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
CELL_SELECTION_KEYS = frozenset({"ratios", "methods", "only_at", "table2_ratio"})
"""Config keys that choose which cells a study runs, not what any one cell computes."""

TABLE1_COLUMNS: tuple[tuple[str, str], ...] = (
    ("verification_accuracy", "Verification %"),
    ("fd", "FD (substitute)"),
    ("attribute_accuracy", "Attribute acc %"),
    ("segmentation_f1", "Seg F1 %"),
    ("landmark_nme", "NME"),
    ("psnr", "PSNR dB"),
    ("ssim", "SSIM"),
)
"""Metric columns of the Table-1/2-style tables: (row key, header)."""

PERCENT_KEYS = {"verification_accuracy", "attribute_accuracy", "segmentation_f1"}


# --------------------------------------------------------------------------- config
def load_study_config(study: str, quick: bool, path: str | Path | None = None) -> dict[str, Any]:
    """The ``[full]`` or ``[quick]`` table of a study's TOML config (plus ``[common]``).

    Parameters
    ----------
    study : str
        Study name (file ``sims/configs/<study>.toml`` unless ``path`` is given).
    quick : bool
        Take the ``[quick]`` table.
    path : str or Path, optional
        Another config file with the same layout.
    """
    import tomllib

    source = Path(path) if path else CONFIG_DIR / f"{study}.toml"
    try:
        doc = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read study config {source}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"study config {source} is not valid TOML: {exc}") from exc
    mode = "quick" if quick else "full"
    if mode not in doc:
        raise ConfigError(f"{source} has no [{mode}] table")
    return {**doc.get("common", {}), **doc[mode]}


def measurements_for_ratio(size: int, ratio: int) -> int:
    """Masks m for a compression ratio ``1:ratio`` of a ``size x size`` scene (0: < 1)."""
    return int(size * size // int(ratio))


# --------------------------------------------------------------------------- context
@dataclass
class Context:
    """One invocation of a study (where to write, how big, how parallel)."""

    out: Path
    quick: bool = False
    jobs: int = 1
    threads: int = 1
    device: str = "cpu"
    progress: bool = True
    config_path: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    computed: int = 0
    """Cells computed (not read back) by this context so far."""

    def study_config(self, study: str) -> dict[str, Any]:
        """The config table of ``study`` for this mode, with :attr:`overrides` merged in
        (a table value updates the table of the same name key by key)."""
        cfg = load_study_config(study, self.quick, self.config_path)
        for key, value in self.overrides.items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key] = {**cfg[key], **value}
            else:
                cfg[key] = value
        return cfg

    def cell_path(self, study: str, key: str) -> Path:
        """Where the row of cell ``key`` is kept: under a digest of the study's config, so
        a changed config (or --quick vs full) never reads back stale rows.

        The keys that only pick WHICH cells run (:data:`CELL_SELECTION_KEYS`: ratios,
        methods, ``only_at``, the Table-2 ratio) are left out of the digest, and the cell
        key names its method and ratio: adding a ratio or a method to a config reuses
        every cell already computed instead of recomputing the whole study.
        """
        cfg = {k: v for k, v in self.study_config(study).items()
               if k not in CELL_SELECTION_KEYS}
        text = json.dumps(cfg, sort_keys=True, default=str)
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        return self.out / "cache" / "cells" / study / digest / f"{key}.json"

    def run_cells(self, study: str, fn: Callable[..., dict[str, Any]],
                  cells: Sequence[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Run ``fn(ctx, **kwargs)`` for every ``(key, kwargs)`` not finished yet.

        Finished cells are read back from their JSON; the others run in ``jobs`` worker
        processes (or inline with ``jobs == 1``), each result written as soon as it is
        done. Returns the rows in the order of ``cells``.
        """
        todo = [(k, kw) for k, kw in cells if not self.cell_path(study, k).exists()]
        self.computed += len(todo)
        if len(todo) < len(cells):
            print(f"[{study}] {len(cells) - len(todo)} of {len(cells)} cells already done "
                  f"(reusing {self.cell_path(study, 'x').parent})")
        if todo:
            if self.jobs > 1 and len(todo) > 1:
                with ProcessPoolExecutor(max_workers=min(self.jobs, len(todo)),
                                         mp_context=get_context("spawn")) as pool:
                    futures = [(k, pool.submit(_run_cell, self, study, fn, k, kw))
                               for k, kw in todo]
                    for _, fut in futures:
                        fut.result()
            else:
                for k, kw in todo:
                    _run_cell(self, study, fn, k, kw)
        return [json.loads(self.cell_path(study, k).read_text(encoding="utf-8"))
                for k, _ in cells]


def _run_cell(ctx: Context, study: str, fn: Callable[..., dict[str, Any]], key: str,
              kwargs: dict[str, Any]) -> None:
    set_threads(ctx.threads)
    t0 = time.perf_counter()
    print(f"[{study}] cell {key} ...", flush=True)
    row = fn(ctx, **kwargs)
    row = {"cell": key, **row, "cell_seconds": round(time.perf_counter() - t0, 1),
           "device": device_label(ctx.device)}
    path = ctx.cell_path(study, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, json.dumps(_jsonable(row), indent=1).encode())
    print(f"[{study}] cell {key} done in {row['cell_seconds']:.0f} s", flush=True)


def device_label(device: str) -> str:
    """``cpu``, or a CUDA device with its card's name (``cuda (NVIDIA H100 ...)``)."""
    if not device.startswith("cuda"):
        return device
    import torch

    return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"


def device_notes(rows: Sequence[dict[str, Any]],
                 label: Callable[[dict[str, Any]], str] | None = None) -> list[str]:
    """A table note naming the rows computed on another device than the CPU.

    Cells are cached and reused across runs, so one table can mix rows computed on a CPU
    and on a GPU (same configs, different noise draws and float rounding); the table says
    which. Rows cached before cells recorded their device count as CPU (every earlier
    result in sims/results ran on a CPU). ``label(row)`` names a row (default: its cell).
    """
    other: dict[str, list[str]] = {}
    for row in rows:
        device = row.get("device") or "cpu"
        if device != "cpu":
            name = label(row) if label else str(row.get("cell", "?"))
            other.setdefault(device, []).append(name)
    return [f"Computed on {device}, not the CPU: {', '.join(cells)}."
            for device, cells in other.items()]


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (a crash leaves the old file or none),
    creating its folder first."""
    from lsi_hw.atomic import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, data)


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> Path:
    """``np.savez_compressed`` of ``arrays`` to ``path``, atomically (folders created)."""
    from lsi_hw.atomic import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def set_threads(n: int) -> None:
    """Pin torch (and BLAS via the environment of children) to ``n`` threads."""
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    torch.set_num_threads(int(n))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------- models
@contextmanager
def held(path: Path) -> Iterator[None]:
    """Block until this process holds an exclusive lock on ``path`` (created if needed).

    Studies running side by side (several ``python -m sims`` processes sharing one OUT)
    train a shared model once: the second waits, then loads the finished model. The kernel
    drops the lock when a process dies, so a crash never leaves it stale.
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def train_config(base: dict[str, Any], changes: dict[str, Any] | None = None
                 ) -> TrainConfig:
    """A :class:`~lsi_ml.training.config.TrainConfig` from a study table's ``[train]``
    values (flat keys or a table per section), with ``changes`` by their dotted keys
    (``{"masks.n_masks": 256}``, see :meth:`TrainConfig.with_overrides`)."""
    from lsi_ml.training.config import TrainConfig

    return TrainConfig.from_dict(base).with_overrides(changes)


def config_key(config: TrainConfig) -> str:
    """Short stable hash of a TrainConfig's run-defining fields.

    It hashes the flat dict of earlier versions (:meth:`TrainConfig.flat_dict`), so the
    keys of the models already in a cache did not change when the config became nested.
    """
    values = config.flat_dict()
    for name in ("progress", "checkpoint", "checkpoint_every", "device", "init_from"):
        values.pop(name, None)
    if not values.get("bank_steps"):  # no bank phase: its settings do not shape the run
        for name in ("bank_steps", "bank_size", "bank_batch", "lr_bank"):
            values.pop(name, None)
    if values.get("mask_init") == "random":  # the default (keys written before it existed)
        values.pop("mask_init")
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def trained_model(ctx: Context, config: TrainConfig, *, init_from: Path | None = None
                  ) -> Trainer:
    """Train (or resume, or load when finished) the LSI model of ``config``.

    The model lives in ``OUT/models/<config_key>/model.pt``; a finished model is loaded,
    an interrupted one resumed from its last checkpoint.
    """

    key = config_key(config) + (f"-from-{init_from.parent.name}" if init_from else "")
    folder = ctx.out / "cache" / "models" / key
    folder.mkdir(parents=True, exist_ok=True)
    with held(folder / ".lock"):
        return _train_or_load(ctx, config, folder, init_from)


def _train_or_load(ctx: Context, config: TrainConfig, folder: Path,
                   init_from: Path | None) -> Trainer:
    """Train, resume or load the model in ``folder`` through the one training entry point
    (:func:`lsi_ml.training.run.run`); no probes (the studies cache their own)."""
    from lsi_ml.training.run import run

    progress = ctx.progress and ctx.jobs == 1
    cfg = config.with_overrides({"schedule.checkpoint_every": 200, "progress": progress,
                                 "device": ctx.device,
                                 "init_from": str(init_from) if init_from else None})
    return run(cfg, folder, train_probes=False, progress=progress, estimate=False,
               echo=lambda _line: None)


def probes_for(ctx: Context, generator: FaceGenerator, settings: dict[str, Any]
               ) -> ProbeSet:
    """Latent probes of ``generator`` (CPU preset + ``settings``), trained once and cached."""
    from lsi_ml.latent.probe_training import ProbeConfig, ProbeSet

    config = ProbeConfig.cpu(progress=ctx.progress, device=ctx.device, **settings)
    text = json.dumps({**config.to_dict(), "device": None}, sort_keys=True, default=str)
    kind = type(generator).__name__
    path = ctx.out / "cache" / "probes" / (f"latent-{kind}-{generator.size}px-"
                                           f"{hashlib.sha1(text.encode()).hexdigest()[:10]}.pt")
    with held(path.with_suffix(".lock")):
        if path.exists():
            return ProbeSet.load(path, generator)
        probes = ProbeSet.fit(generator, config)
        probes.save(path)
        return probes


def recognizer_for(ctx: Context, generator: FaceGenerator,
                   settings: dict[str, Any] | bool | None) -> Recognizer | None:
    """The SynthFace recognizer of ``generator`` (``RecognizerConfig`` + ``settings``),
    trained once and cached under the results' cache; None when ``settings`` is False."""
    if settings is False:
        return None
    from lsi_ml.evaluation.recognizer import RecognizerConfig
    from lsi_ml.evaluation.recognizer_cache import load_or_train_recognizer

    config = RecognizerConfig(**(settings or {}), progress=ctx.progress)
    folder = ctx.out / "cache" / "recognizer"
    with held(folder / ".lock"):
        return load_or_train_recognizer(generator, config, cache_dir=folder,
                                        progress=ctx.progress, device=ctx.device)


def evaluation_row(result: EvalResult) -> dict[str, Any]:
    """The numbers of an EvalResult a table needs (plus the ceiling when computed)."""
    doc = result.as_dict()
    keep = [k for k, _ in TABLE1_COLUMNS] + [
        "verification_hard_accuracy", "latent_l1", "fd_space", "n_test", "n_pairs"]
    row = {k: doc.get(k) for k in keep}
    if isinstance(row.get("fd"), dict):
        row["fd"] = row["fd"].get("value")
    ci_row = getattr(result, "ci_row", None)
    if callable(ci_row):  # bootstrap intervals and the exact readout, when computed
        row.update(ci_row())
    return row


# --------------------------------------------------------------------------- tables
def _fmt(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, str):
        return value
    if key in PERCENT_KEYS:
        return f"{100 * float(value):.1f}"
    if key == "x":  # a setting: as written in the config (0.001, 1.05, 40)
        return f"{value:g}" if isinstance(value, (int, float)) else str(value)
    if key == "ssim":
        return f"{float(value):.3f}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


CSV_SKIP_KEYS = frozenset({"cell"})
"""Row keys :func:`write_table` leaves out of the CSV (bookkeeping, not results)."""


def write_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]],
                stem: Path, *, title: str = "", notes: Iterable[str] = ()) -> tuple[Path, Path]:
    """Write ``stem.csv`` (raw numbers) and ``stem.md`` (formatted, percent for rates).

    The Markdown table has ``columns``; the CSV has them first, then every other scalar the
    rows carry.

    Parameters
    ----------
    rows : sequence of dict
        One dict per row; missing keys are empty.
    columns : sequence of (key, header)
        Which keys, in which order, with which header.
    stem : Path
        Output path without suffix.
    title, notes
        Markdown heading and lines printed under the table.
    """
    import csv
    import io

    stem.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    keys = [k for k, _ in columns]
    if any("device" in row for row in rows) and "device" not in keys:
        keys.append("device")  # where each row was computed (see device_notes)
    # every other number the rows carry (exact readout, recognizer, bootstrap intervals
    # ``<key>_ci_lo/_ci_hi``) follows, in order of first appearance: the CSV is the raw record
    for row in rows:
        keys += [k for k, v in row.items() if k not in keys and k not in CSV_SKIP_KEYS
                 and (v is None or isinstance(v, (int, float, str)))]
    writer.writerow(keys)
    for row in rows:
        writer.writerow(["cpu" if k == "device" and not row.get(k) else
                         "" if row.get(k) is None else row.get(k) for k in keys])
    csv_path = stem.with_suffix(".csv")
    write_bytes_atomic(csv_path, buf.getvalue().encode())
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(h for _, h in columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_fmt(k, row.get(k)) for k, _ in columns) + " |")
    notes = list(notes) + device_notes(rows)
    if notes:
        lines.append("")
        lines += notes
    md_path = stem.with_suffix(".md")
    write_bytes_atomic(md_path, ("\n".join(lines) + "\n").encode())
    return csv_path, md_path


def plot_curves(x: Sequence[float], series: dict[str, dict[str, Sequence[float]]],
                path: Path, *, xlabel: str, title: str = "", log_x: bool | float = False,
                metrics: Sequence[tuple[str, str]] = TABLE1_COLUMNS[:5]) -> Path:
    """One panel per metric; one line per method (``series[method][metric]`` over ``x``,
    or over ``series[method]["x"]``); ``log_x``: True (base 2) or a log base."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 3.0))
    for ax, (key, label) in zip(np.atleast_1d(axes), metrics, strict=True):
        for method, values in series.items():
            ys = [np.nan if v is None else float(v) for v in values.get(key, [])]
            if key in PERCENT_KEYS:
                ys = [100 * y for y in ys]
            xs = list(x)[:len(ys)] if "x" not in values else list(values["x"])
            ax.plot(xs, ys, "o-", label=method, ms=3)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        if log_x:
            ax.set_xscale("log", base=2 if log_x is True else float(log_x))
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path, dpi=110)


def image_grid(rows: Sequence[tuple[str, np.ndarray]], path: Path) -> Path:
    """A labelled grid: one row per ``(label, images (N, 3, H, W) in [0, 1])``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = max(len(imgs) for _, imgs in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.3 * n_cols + 0.8, 1.3 * len(rows)),
                             squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(imgs):
                ax.imshow(np.clip(np.transpose(np.asarray(imgs[c]), (1, 2, 0)), 0, 1))
            if c == 0:
                ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path, dpi=110)


# --------------------------------------------------------------------------- provenance
SYNTHFACE_VERSION = 2
"""Version of the default generator (``SynthFace.version``) this code scores; results whose
provenance names an older one (or none: version 1) are reported as stale."""


def provenance(ctx: Context, argv: Sequence[str]) -> dict[str, Any]:
    """The exact command, versions and machine that produced the results."""
    import numba
    import scipy
    import torch

    import lsi_ml

    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, check=False).stdout.strip()
        # changes under the results folder itself (this run's outputs) do not count
        root = Path(__file__).resolve().parent.parent
        out = ctx.out.resolve()
        exclude = ([f":(exclude){out.relative_to(root).as_posix()}"]
                   if out.is_relative_to(root) else [])
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ".", *exclude],
                               capture_output=True, text=True, cwd=root,
                               check=False).stdout.strip()
    except OSError:
        rev, dirty = "", ""
    if not rev:  # a copy of the tree without git (e.g. on a remote GPU machine)
        rev, dirty = os.environ.get("LSI_GIT_REVISION", "unknown"), ""
    return {
        "command": "python -m sims " + " ".join(argv),
        "mode": "quick" if ctx.quick else "full",
        "synthface_version": SYNTHFACE_VERSION,
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "git_revision": rev + ("+local-changes" if dirty else ""),
        "python": sys.version.split()[0],
        "lsi_toolkit": getattr(lsi_ml, "__version__", "?"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jobs": ctx.jobs,
        "threads_per_job": ctx.threads,
        "device": ctx.device,
        "cuda_device": torch.cuda.get_device_name(0) if ctx.device.startswith("cuda") else None,
    }
