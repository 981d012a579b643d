"""Benchmark: range coder symbols/s (pure Python/numpy), against TFC's C++ op when present.

The data imitate y of a 1024x768 image (64 x 48 latents x 96 channels = 294,912 symbols):
64 log-spaced Gaussian scales from 0.11 to 256 (the bundle's scale table), indexes skewed to
small scales, values drawn from their scale, and one escape per ~1000 symbols.
"""

from __future__ import annotations

import os
import time
from math import erf, sqrt

import numpy as np

from device.codec.rangecoder import decode_indexed, encode_indexed, estimate_bits

COMMAND = "python -c 'from tools.benchmarks.rangecoder import run; print(run(quick=False))'"
SCALES = np.exp(np.linspace(np.log(0.11), np.log(256.0), 64))


def gaussian_tables(scales=SCALES, precision: int = 16):
    """Bundle-layout tables of discretised N(0, s) (tails 3 s, overflow bin >= 2^-8)."""
    total = 1 << precision
    phi = np.vectorize(lambda x: 0.5 * (1 + erf(x / sqrt(2))))
    rows, offsets = [], []
    for s in scales:
        k = int(np.ceil(3 * s)) + 1
        grid = np.arange(-k, k + 1)
        pmf = phi((grid + 0.5) / s) - phi((grid - 0.5) / s)
        pmf = np.append(pmf, max(1 - pmf.sum(), 2**-8))
        counts = np.maximum(1, np.floor(pmf / pmf.sum() * (total - len(pmf))).astype(np.int64))
        counts[np.argmax(counts)] += total - counts.sum()
        rows.append(np.concatenate([[0], np.cumsum(counts)]))
        offsets.append(-k)
    cdf = np.zeros((len(rows), max(map(len, rows))), np.int32)
    for i, row in enumerate(rows):
        cdf[i, : len(row)] = row
    return cdf, np.array(offsets, np.int32), np.array([len(r) for r in rows], np.int32)


def latent_like(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    idx = np.clip(rng.gamma(2.0, 7.0, n).astype(np.int32), 0, len(SCALES) - 1)
    vals = np.round(rng.normal(0.0, SCALES[idx])).astype(np.int32)
    vals[::997] += 300  # escapes
    return vals, idx


def _best(fn, repeats: int, clock=time.perf_counter) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = clock()
        result = fn()
        times.append(clock() - start)
    return min(times), result


def _tfc_rates(vals, idx, tables, repeats: int):
    """TFC's C++ unbounded_index_range_encode/decode, for scale (None when not installed)."""
    try:
        from tensorflow_compression.python.ops import gen_ops
    except ImportError:
        return None
    cdf, off, lengths = tables

    def enc():
        return gen_ops.unbounded_index_range_encode(
            vals, idx, cdf, lengths, off, precision=16, overflow_width=4
        ).numpy()

    t_enc, data = _best(enc, repeats)
    t_dec, _ = _best(
        lambda: gen_ops.unbounded_index_range_decode(
            data, idx, cdf, lengths, off, precision=16, overflow_width=4
        ).numpy(),
        repeats,
    )
    return len(vals) / t_enc, len(vals) / t_dec, data


def run(quick: bool) -> str:
    n = 50_000 if quick else 64 * 48 * 96
    repeats = 2 if quick else 5
    tables = gaussian_tables()
    vals, idx = latent_like(n)
    t_enc, data = _best(lambda: encode_indexed(vals, idx, *tables), repeats)
    t_dec, out = _best(lambda: decode_indexed(data, idx, *tables), repeats)
    t_est, bits = _best(lambda: estimate_bits(vals, idx, *tables), repeats)
    # CPU time of this process: what the coder costs on a core of its own (the wall clock
    # also counts the time other processes held the CPU).
    c_enc, _ = _best(lambda: encode_indexed(vals, idx, *tables), repeats, time.process_time)
    c_dec, _ = _best(lambda: decode_indexed(data, idx, *tables), repeats, time.process_time)
    if not np.array_equal(out, vals):
        raise RuntimeError("range coder round trip failed in the benchmark")
    lines = [
        "## Range coder",
        "",
        f"`{COMMAND}`" + (" (quick: `run(quick=True)`, 50k symbols)" if quick else ""),
        "",
        f"{n:,} y-like symbols (64 Gaussian scales 0.11..256, escapes every 997th), "
        f"precision 16, overflow width 4, best of {repeats}, one thread; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs while measuring (a busy machine "
        "lowers these figures):",
        "",
        "| implementation | clock | encode (symbols/s) | decode (symbols/s) |",
        "|---|---|---|---|",
        f"| wildlink, pure Python + numpy | wall | {n / t_enc:,.0f} | {n / t_dec:,.0f} |",
        f"| wildlink, pure Python + numpy | CPU time | {n / c_enc:,.0f} | {n / c_dec:,.0f} |",
    ]
    tfc = None if quick else _tfc_rates(vals, idx, tables, repeats)
    if tfc is not None:
        same = "identical bytes" if tfc[2] == data else "DIFFERENT BYTES"
        lines.append(f"| TFC 2.14 C++ op ({same}) | wall | {tfc[0]:,.0f} | {tfc[1]:,.0f} |")
    lines += [
        "",
        f"Coded size {len(data):,} bytes = {8 * len(data) / n:.3f} bits/symbol; "
        f"estimate_bits {bits / 8:,.1f} bytes ({100 * (8 * len(data) / bits - 1):+.3f}%), "
        f"computed in {1e3 * t_est:.1f} ms.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick=False))
