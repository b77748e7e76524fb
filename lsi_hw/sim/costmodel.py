"""The static cost model of the projection paths: the planner's fallback and its guide.

:func:`predict_seconds` estimates the time of one projection from per-operation constants
(:data:`COST_MODEL`).  The constants were measured on a single machine, so on another one
the estimate is only a rough guide: by default :mod:`lsi_hw.sim.autotune` times the paths
on each machine and the model only sizes those timings and drops paths it expects to be
far slower.  With autotuning off (``LSI_KERNELS_AUTOTUNE=0`` or ``Projector(autotune=
False)``) the model alone chooses, which makes the choice, and with it the float rounding
of a result, the same on every run and every machine.
"""

from __future__ import annotations

import math

import numba

from lsi_hw.errors import ConfigError
from lsi_hw.sim.kernel_paths import batch_chunks, lut_width

__all__ = ["COST_MODEL", "predict_seconds"]

#: Cost-model constants in seconds, measured on the 2-core AMD EPYC (Zen, AVX-512, 1 MiB L2
#: per core) dev machine with numba 0.68 / OpenBLAS 0.3.31, 256 x 256 images, by
#: ``python benchmarks/bench_projection.py --calibrate`` (several runs, rounded, the lower
#: plausible value kept: the machine is shared and noise only adds time).  Per thread ("/thr")
#: unless noted:
#: ``call``: fixed cost of a call; ``prep``: per image pixel (layout copies, all threads);
#: ``bitplane``: per mask-pixel-image (/thr); ``lut_row`` / ``lut4_row``: per table-row add of
#: the use phase, ``a + b * Bc`` for Bc images per row (/thr); ``lut_build`` /
#: ``lut4_build``: the same per table row built; ``unpack``: per mask pixel (serial);
#: ``gemm``: per mask-pixel-image multiply-add (BLAS, all threads) with the floor
#: ``gemm_mem`` per mask pixel (memory bound at small batch); ``fwht``: per butterfly (/thr).
COST_MODEL: dict[str, dict[str, float]] = {
    "float32": {
        "call": 1.5e-5, "prep": 2.0e-10, "bitplane": 3.3e-11,
        "lut_row_a": 2.4e-9, "lut_row_b": 3.5e-11, "lut_build_a": 1.0e-9, "lut_build_b": 5.0e-11,
        "lut4_row_a": 1.5e-9, "lut4_row_b": 3.5e-11, "lut4_build_a": 1.2e-9,
        "lut4_build_b": 2.2e-10,
        "unpack": 5.0e-10, "gemm": 1.0e-11, "gemm_mem": 6.5e-11, "fwht": 1.6e-10,
    },
    "float64": {
        "call": 1.5e-5, "prep": 2.2e-10, "bitplane": 5.5e-11,
        "lut_row_a": 2.3e-9, "lut_row_b": 8.0e-11, "lut_build_a": 4.0e-10, "lut_build_b": 2.0e-10,
        "lut4_row_a": 1.5e-9, "lut4_row_b": 6.0e-11, "lut4_build_a": 4.0e-10,
        "lut4_build_b": 6.0e-10,
        "unpack": 6.0e-10, "gemm": 2.3e-11, "gemm_mem": 1.7e-10, "fwht": 2.3e-10,
    },
    "uint8": {
        "call": 1.5e-5, "prep": 2.3e-10, "bitplane": 3.0e-11,
        "lut_row_a": 1.3e-9, "lut_row_b": 5.0e-11, "lut_build_a": 8.0e-10, "lut_build_b": 5.0e-11,
        "lut4_row_a": 1.0e-9, "lut4_row_b": 4.0e-11, "lut4_build_a": 1.2e-9,
        "lut4_build_b": 1.5e-10,
        "unpack": 5.0e-10, "gemm": 1.05e-11, "gemm_mem": 6.5e-11, "fwht": 2.3e-10,
    },
}


def predict_seconds(
    method: str, m: int, n: int, batch: int, kind: str, threads: int | None = None
) -> float:
    """Cost-model estimate (seconds) of one :func:`~lsi_hw.sim.kernels.project` call with
    ``method``.

    Parameters
    ----------
    method : str
        "bitplane", "lut8", "lut4", "blas" or "fwht".
    m, n, batch : int
        Masks, pixels per mask, images.
    kind : str
        "float32", "float64" or "uint8" (the images' dtype class).
    threads : int or None
        Numba threads (default ``numba.get_num_threads()``).

    Returns
    -------
    float
        Predicted seconds (see :data:`COST_MODEL`).
    """
    c = COST_MODEL[kind]
    thr = max(1, threads if threads is not None else numba.get_num_threads())
    nb = -(-n // 8)
    t = c["call"] + c["prep"] * batch * n
    if method == "bitplane":
        # images go 4 at a time through one decode of the mask bits (~3/4 of the cost)
        eff = 3 * (batch // 4) + batch % 4
        return t + c["bitplane"] * m * nb * 8 * eff / min(thr, max(m, 1))
    if method in ("lut8", "lut4"):
        key = "lut4" if method == "lut4" else "lut"
        builds = nb * (30 if method == "lut4" else 255)
        uses = nb * m * (2 if method == "lut4" else 1)
        par = min(thr, nb)
        itemsize = 8 if kind == "float64" else 4
        for b0, b1 in batch_chunks(batch):
            bc = lut_width(b1 - b0, itemsize)
            build = builds * (c[f"{key}_build_a"] + c[f"{key}_build_b"] * bc)
            use = uses * (c[f"{key}_row_a"] + c[f"{key}_row_b"] * bc)
            t += (build + use) / par + c["prep"] * m * bc * par  # + partial-sum reduction
        return t
    if method == "blas":
        return t + c["unpack"] * m * n + max(c["gemm"] * batch, c["gemm_mem"]) * m * n
    if method == "fwht":
        par = thr if (batch >= thr or n >= 1 << 15) else batch
        butterflies = batch * n / 2 * math.log2(max(n, 2))
        return t + c["fwht"] * butterflies / par + c["prep"] * batch * m
    raise ConfigError(f"unknown kernel {method!r}")

