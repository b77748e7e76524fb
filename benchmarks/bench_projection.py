"""Bit-packed projection kernels vs a dense torch float32 matmul (256 x 256 images).

Baseline: masks pre-expanded to a float32 (m, n) torch tensor, ``masks @ images.T`` with
torch's default thread count.  Ours: :func:`lsi_hw.sim.kernels.project` on the packed masks
(``method="auto"``: the planner picks the kernel, timing the candidates on the first call
of a shape class unless this machine's tuning file already has the choice; the warm-up call
does that).  Also shown, for information: a plain numpy float32 dense product and every
forced kernel.  ``LSI_KERNELS_RETUNE=1`` times every class again (``LSI_KERNELS_AUTOTUNE=0``:
the static cost model chooses).

    python benchmarks/bench_projection.py            # full run (~3-4 minutes)
    python benchmarks/bench_projection.py --quick    # fewer repeats, Hadamard dense extrapolated
    python benchmarks/bench_projection.py --calibrate  # measure the static cost-model constants

Every number is the median of several runs after a warm-up (JIT, plan); ratios are computed
from the times measured in this run.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from lsi_hw.sim import kernels as K
from lsi_hw.sim.autotune import autotune_enabled
from lsi_hw.sim.costmodel import predict_seconds
from lsi_hw.sim.kernel_paths import run_lut
from lsi_hw.sim.numba_kernels import planes_layout, unpack_kernel

N_SIDE = 256
N = N_SIDE * N_SIDE
#: (m, batch, target speed-up over torch dense)
CASES: tuple[tuple[int, int, float], ...] = (
    (256, 1, 2.0),
    (4096, 1, 2.0),
    (256, 8, 1.3),
    (4096, 8, 1.3),
    (256, 64, 0.9),
    (4096, 64, 0.9),
)
HADAMARD_TARGET = 1000.0


def settle() -> None:
    """Let other thread pools go idle before timing.

    After a BLAS call OpenBLAS's worker threads busy-wait for up to ~0.1 s, and torch's
    OpenMP threads briefly too; on a 2-core machine a numba kernel started meanwhile shares
    its cores with them and runs several times slower.  Each timed loop starts after this.
    """
    time.sleep(0.3)


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    settle()
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_masks(m: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(packed uint8 (m, n/8), dense float32 (m, n)) Bernoulli(0.5) masks."""
    rng = np.random.default_rng(seed)
    packed = rng.integers(0, 256, size=(m, n // 8), dtype=np.uint8)
    dense = np.unpackbits(packed, axis=1, bitorder="little").astype(np.float32)
    return packed, dense


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:10.3f}"


def time_case(m: int, batch: int, target: float, repeats: int) -> tuple[str, str]:
    """One row of the main table and one line of per-kernel times."""
    import torch

    packed, dense = random_masks(m, N, seed=m + batch)
    x = np.random.default_rng(batch).random((batch, N), dtype=np.float32)
    dense_t = torch.from_numpy(dense)
    x_t = torch.from_numpy(x)
    ours = median_time(lambda: K.project(packed, x), repeats)
    ref = median_time(lambda: dense_t @ x_t.T, repeats)
    npy = median_time(lambda: dense @ x.T, repeats)
    y = K.project(packed, x)
    y_ref = (dense_t @ x_t.T).numpy().T
    err = float(np.abs(y - y_ref).max() / np.abs(y_ref).max())
    ratio = ref / ours
    mem = dense.nbytes / packed.nbytes
    picked = K.explain_plan(packed, batch, np.float32)
    row = (
        f"{m:5d} {batch:3d} {fmt_ms(ours):>14} {fmt_ms(ref)} {ratio:7.2f} {target:6.1f} "
        f"{'PASS' if ratio >= target else 'MISS':>6} {fmt_ms(npy)} {mem:8.0f}x  "
        f"{picked}  (max rel. diff to torch {err:.1e})"
    )
    parts = []
    for meth in ("bitplane", "lut8", "lut4", "blas"):
        pred = predict_seconds(meth, m, N, batch, "float32")
        if pred > 1.5:
            parts.append(f"{meth} (skipped, model {pred:.1f} s)")
            continue
        t = median_time(lambda meth=meth: K.project(packed, x, method=meth), max(2, repeats // 2))
        parts.append(f"{meth} {t * 1e3:.2f} (model {pred * 1e3:.2f})")
    return row, f"  m={m:<5d} B={batch:<3d} " + ", ".join(parts)


def run_cases(repeats: int) -> list[str]:
    """The main table (and, below it, every kernel forced)."""
    head = (
        f"{'m':>5} {'B':>3} {'ours auto [ms]':>14} {'torch [ms]':>10} {'ratio':>7} "
        f"{'target':>6} {'result':>6} {'numpy [ms]':>10} {'mask mem':>9}  method picked"
    )
    print(head)
    lines = [head]
    details = []
    for m, batch, target in CASES:
        row, detail = time_case(m, batch, target, repeats)
        print(row, flush=True)
        lines.append(row)
        details.append(detail)
    lines.append("every kernel forced, median ms (cost-model prediction in brackets):")
    print("\n" + lines[-1])
    for d in details:
        print(d)
        lines.append(d)
    return lines


def _hadamard_block_maker() -> Callable[[int, np.ndarray], None]:
    """Returns fill(kb, out): rows kb*4096 .. kb*4096+4095 of the natural-order Hadamard
    masks (1 + H) / 2 of size 65536, float32 into ``out`` (4096, 65536)."""
    k = np.arange(4096, dtype=np.uint16)
    table = np.array([bin(i).count("1") & 1 for i in range(1 << 12)], dtype=np.uint8)
    parity = table[np.bitwise_and.outer(k, k)]
    plus = (1 - parity).astype(np.float32)  # (1 + h) / 2 with h = (-1) ** parity
    minus = parity.astype(np.float32)
    hi_parity = table[np.bitwise_and.outer(np.arange(16), np.arange(16))]

    def fill(kb: int, out: np.ndarray) -> None:
        for p_hi in range(16):
            out[:, p_hi * 4096:(p_hi + 1) * 4096] = minus if hi_parity[kb, p_hi] else plus

    return fill


def run_hadamard(quick: bool, repeats: int) -> list[str]:
    import torch

    from lsi_hw.patterns import PatternSet

    lines = []
    t0 = time.perf_counter()
    ps = PatternSet.hadamard(N_SIDE)  # all 65536 patterns (4 GiB of uint8 masks)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(7)
    x = rng.random((1, N_SIDE, N_SIDE), dtype=np.float32)
    ours = median_time(lambda: K.project(ps, x), max(repeats, 10))
    picked = K.explain_plan(ps, 1, np.float32)
    y = K.project(ps, x)[0]

    fill = _hadamard_block_maker()
    block = np.empty((4096, N), dtype=np.float32)
    block_t = torch.from_numpy(block)
    x_flat = x.reshape(1, N)
    x_t = torch.from_numpy(x_flat)
    blocks = (0, 9) if quick else tuple(range(16))
    torch_s: list[float] = []
    numpy_s: list[float] = []
    worst = 0.0
    for kb in blocks:
        fill(kb, block)
        torch_s.append(median_time(lambda: block_t @ x_t.T, 3))
        numpy_s.append(median_time(lambda: block @ x_flat.T, 3))
        # check ours against the dense rows of this block
        dense = (block_t @ x_t.T).numpy()[:, 0]
        rows = ps.hadamard_rows
        sel = np.nonzero((rows >= kb * 4096) & (rows < (kb + 1) * 4096))[0]
        diff = np.abs(y[sel] - dense[rows[sel] - kb * 4096]).max() / np.abs(dense).max()
        worst = max(worst, float(diff))
    scale = 16 / len(blocks)
    torch_total = sum(torch_s) * scale
    numpy_total = sum(numpy_s) * scale
    how = (
        f"sum of {len(blocks)} timed 4096-row blocks x {scale:.0f} (extrapolated)"
        if scale > 1
        else "sum of all 16 timed 4096-row blocks"
    )
    ratio = torch_total / ours
    out = [
        f"full Hadamard, 65536 patterns of 256x256, one float32 image "
        f"(PatternSet built in {build_s:.1f} s, not timed)",
        f"  dense float32 65536 x 65536 (16 GiB) never held at once: {how}",
        f"  ours auto: {ours * 1e3:.3f} ms  [{picked}]",
        f"  torch dense: {torch_total * 1e3:.1f} ms, numpy dense: {numpy_total * 1e3:.1f} ms",
        f"  ratio torch/ours {ratio:.0f}x, target {HADAMARD_TARGET:.0f}x: "
        f"{'PASS' if ratio >= HADAMARD_TARGET else 'MISS'}   (ours/numpy "
        f"{numpy_total / ours:.0f}x; max rel. diff to dense {worst:.1e})",
    ]
    for line in out:
        print(line, flush=True)
        lines.append(line)
    return lines


def run_uint8(repeats: int) -> None:
    print("\nuint8 images (exact path, result float64), for information:")
    for m, batch in ((256, 1), (4096, 1), (4096, 64)):
        packed, _ = random_masks(m, N, seed=3)
        x8 = np.random.default_rng(1).integers(0, 256, size=(batch, N), dtype=np.uint8)
        t = median_time(lambda: K.project(packed, x8), repeats)  # noqa: B023
        print(f"  m={m:<5d} B={batch:<3d} {t * 1e3:9.3f} ms  "
              f"{K.explain_plan(packed, batch, np.uint8)}")


# --------------------------------------------------------------------------------------------
# calibration of the cost model
# --------------------------------------------------------------------------------------------


def time_lut(packed: np.ndarray, x: np.ndarray, kind: str, nibble: bool, repeats: int) -> float:
    """Median seconds of the LUT path (``packed`` may have no masks: table build only)."""
    return median_time(lambda: run_lut(packed, x, kind, nibble), repeats)


def calibrate(repeats: int) -> None:
    """Measure the constants of ``lsi_hw.sim.costmodel.COST_MODEL`` and print them."""
    thr = numba.get_num_threads()
    rng = np.random.default_rng(0)
    n = N
    nb = n // 8
    result: dict[str, dict[str, float]] = {}
    for kind, dtype in (("float32", np.float32), ("float64", np.float64), ("uint8", np.uint8)):
        c: dict[str, float] = {}

        def images(b: int, dtype: Any = dtype) -> np.ndarray:
            if dtype == np.uint8:
                return rng.integers(0, 256, size=(b, n), dtype=np.uint8)
            return rng.random((b, n)).astype(dtype)

        tiny = rng.integers(0, 256, size=(4, 2), dtype=np.uint8)
        c["call"] = median_time(
            lambda tiny=tiny, dtype=dtype: K.project(tiny, np.ones((1, 16), dtype), "bitplane"),
            50,
        )
        x8 = images(8)
        ftype = np.float64 if kind == "float64" else np.float32
        planes = np.empty((8, 8, nb), dtype=ftype)
        c["prep"] = median_time(lambda x8=x8, planes=planes: planes_layout(x8, planes),
                                repeats) / (8 * n)
        packed, _ = random_masks(1024, n, seed=1)
        x1 = images(1)
        t = median_time(lambda packed=packed, x1=x1: K.project(packed, x1, "bitplane"), repeats)
        c["bitplane"] = (t - c["call"]) * thr / (1024 * n)
        empty = np.empty((0, nb), dtype=np.uint8)
        big, _ = random_masks(1024, n, seed=3)
        for nibble, key, n_build in ((False, "lut", 255), (True, "lut4", 30)):
            uses = 2 if nibble else 1
            per_use: list[tuple[int, float]] = []
            per_build: list[tuple[int, float]] = []
            for bc in (1, 8, 32, 64):
                xb = images(bc)
                t_s = time_lut(empty, xb, kind, nibble, repeats)
                t_b = time_lut(big, xb, kind, nibble, repeats)
                per_use.append((bc, max(0.0, t_b - t_s) * thr / (nb * uses * 1024)))
                build = t_s - c["call"] - c["prep"] * bc * n
                per_build.append((bc, max(0.0, build) * thr / (nb * n_build)))
            for name, pts in ((f"{key}_row", per_use), (f"{key}_build", per_build)):
                bcs = np.array([p[0] for p in pts], dtype=float)
                vals = np.array([p[1] for p in pts])
                slope, icpt = np.polyfit(bcs, vals, 1)
                c[f"{name}_a"] = float(max(icpt, 0.2 * vals.min()))
                c[f"{name}_b"] = float(max(slope, 0.0))
        blk = np.empty((256, n), dtype=ftype if kind != "uint8" else np.float32)
        p256, _ = random_masks(256, n, seed=4)
        c["unpack"] = median_time(lambda p256=p256, blk=blk: unpack_kernel(p256, blk),
                                  repeats) / (256 * n)
        for b in (1, 64):
            xf = images(b).astype(blk.dtype)
            t = median_time(lambda xf=xf, blk=blk: xf @ blk.T, repeats)
            if b == 1:
                c["gemm_mem"] = t / (256 * n)
            else:
                c["gemm"] = t / (256 * n * b)
        rows = 4 * thr
        xw = images(rows).astype(ftype)
        t = median_time(lambda xw=xw: K.fwht(xw), repeats)
        c["fwht"] = t * thr / (rows * n / 2 * math.log2(n))
        result[kind] = c
        print(kind, {k: f"{v:.3g}" for k, v in c.items()}, flush=True)
    print("\nCOST_MODEL = {")
    for kind, c in result.items():
        body = ", ".join(f'"{k}": {v:.2g}' for k, v in c.items())
        print(f'    "{kind}": {{{body}}},')
    print("}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter run")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure and print the cost-model constants")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    import torch

    print(f"numba {numba.__version__} ({numba.get_num_threads()} threads), torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}; "
          f"median of {repeats} runs")
    print(f"kernel autotune {'on' if autotune_enabled() else 'off'}, "
          f"tuning file {K.tuning_cache_path()}")
    if args.calibrate:
        calibrate(repeats)
        return
    print("random 0/1 masks (p = 0.5) on 256x256 pixels, float32 images; ratio = torch / ours\n")
    run_cases(repeats)
    print()
    run_hadamard(args.quick, repeats)
    run_uint8(repeats)


if __name__ == "__main__":
    main()
