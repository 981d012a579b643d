"""Range coder: round trips, TFC byte compatibility, estimate accuracy, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.codec.rangecoder import (
    RangeCoderError,
    decode_indexed,
    encode_indexed,
    estimate_bits,
    split_flat_cdf,
)
from device.errors import WildlinkError


def quantised_cdf(pmf: np.ndarray, precision: int = 16) -> np.ndarray:
    """pmf (incl. overflow bin) -> cdf with every bin >= 1 and total 2**precision."""
    total = 1 << precision
    counts = np.maximum(1, np.floor(pmf / pmf.sum() * (total - len(pmf))).astype(np.int64))
    counts[np.argmax(counts)] += total - counts.sum()
    return np.concatenate([[0], np.cumsum(counts)])


def gaussian_tables(scales, tail: float = 2**-8, precision: int = 16):
    """Discretised N(0, s) tables in the bundle layout, like TFC's NoisyNormal models."""
    from math import erf, sqrt

    def phi(x):
        return 0.5 * (1 + np.vectorize(erf)(x / sqrt(2)))

    rows, offsets = [], []
    for s in scales:
        k = int(np.ceil(s * 3.0)) + 1
        grid = np.arange(-k, k + 1)
        pmf = phi((grid + 0.5) / s) - phi((grid - 0.5) / s)
        pmf = np.append(pmf, max(1 - pmf.sum(), tail))
        rows.append(quantised_cdf(pmf, precision))
        offsets.append(-k)
    width = max(len(r) for r in rows)
    cdf = np.zeros((len(rows), width), np.int32)
    for i, r in enumerate(rows):
        cdf[i, : len(r)] = r
    lengths = np.array([len(r) for r in rows], np.int32)
    return cdf, np.array(offsets, np.int32), lengths


SCALES = np.exp(np.linspace(np.log(0.11), np.log(256.0), 64))


@pytest.fixture(scope="module")
def tables():
    return gaussian_tables(SCALES)


def latent_like(n: int, seed: int = 0):
    """Indexes skewed to small scales and values drawn from their Gaussians, like y."""
    rng = np.random.default_rng(seed)
    idx = np.clip(rng.gamma(2.0, 7.0, n).astype(np.int32), 0, 63)
    vals = np.round(rng.normal(0.0, SCALES[idx])).astype(np.int32)
    return vals, idx


def test_round_trip_realistic(tables):
    vals, idx = latent_like(20000)
    data = encode_indexed(vals, idx, *tables)
    out = decode_indexed(data, idx, *tables)
    assert out.dtype == np.int32 and out.shape == idx.shape
    np.testing.assert_array_equal(out, vals)


def test_shape_kept_and_c_order(tables):
    vals, idx = latent_like(2 * 3 * 5, seed=1)
    vals, idx = vals.reshape(2, 3, 5), idx.reshape(2, 3, 5)
    data = encode_indexed(vals, idx, *tables)
    assert data == encode_indexed(vals.ravel(), idx.ravel(), *tables)
    np.testing.assert_array_equal(decode_indexed(data, idx, *tables), vals)


def test_empty_input(tables):
    empty = np.zeros(0, np.int32)
    assert encode_indexed(empty, empty, *tables) == b""
    assert decode_indexed(b"", empty, *tables).shape == (0,)


def test_overflow_far_outside_table(tables):
    idx = np.array([0, 5, 63, 0, 0, 10], np.int32)
    vals = np.array([1000, -70000, 2**30, -(2**31) + 50, 0, 3], np.int32)
    data = encode_indexed(vals, idx, *tables)
    np.testing.assert_array_equal(decode_indexed(data, idx, *tables), vals)


def test_size_within_half_percent_of_estimate(tables):
    vals, idx = latent_like(50000, seed=2)
    vals[::997] += 500  # a few escapes
    bits = estimate_bits(vals, idx, *tables)
    size = len(encode_indexed(vals, idx, *tables))
    assert abs(8 * size - bits) <= 0.005 * bits


def test_lower_precision_and_widths():
    cdf, off, lengths = gaussian_tables([0.5, 2.0, 7.0], precision=12)
    vals, idx = latent_like(3000, seed=3)
    idx = idx % 3
    vals = np.round(vals / 8).astype(np.int32)
    vals[::50] = 99
    for width in (1, 3, 4, 8):
        data = encode_indexed(vals, idx, cdf, off, lengths, precision=12, overflow_width=width)
        out = decode_indexed(data, idx, cdf, off, lengths, precision=12, overflow_width=width)
        np.testing.assert_array_equal(out, vals)


@st.composite
def tables_and_symbols(draw):
    precision = draw(st.integers(1, 16))
    rows = draw(st.integers(1, 4))
    cdfs, lengths = [], []
    for _ in range(rows):
        n = draw(st.integers(2, min(12, 1 << precision)))  # symbols incl. overflow
        weights = draw(st.lists(st.integers(1, 1000), min_size=n, max_size=n))
        cdfs.append(quantised_cdf(np.array(weights, float), precision))
        lengths.append(n + 1)
    cdf = np.zeros((rows, max(lengths)), np.int32)
    for i, c in enumerate(cdfs):
        cdf[i, : len(c)] = c
    offset = np.array(draw(st.lists(st.integers(-20, 20), min_size=rows, max_size=rows)), np.int32)
    count = draw(st.integers(0, 200))
    idx = np.array(draw(st.lists(st.integers(0, rows - 1), min_size=count, max_size=count)))
    small = st.integers(-30, 30)
    huge = st.integers(-(2**30), 2**30)  # |value - offset| must stay below 2**31 (uint32)
    vals = draw(st.lists(st.one_of(small, small, small, huge), min_size=count, max_size=count))
    width = draw(st.integers(1, 16))
    tables = (cdf, offset, np.array(lengths, np.int32))
    return np.array(vals, np.int64).astype(np.int32), idx.astype(np.int32), tables, precision, width


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables_and_symbols())
def test_round_trip_random_tables(case):
    vals, idx, tables, precision, width = case
    data = encode_indexed(vals, idx, *tables, precision=precision, overflow_width=width)
    out = decode_indexed(data, idx, *tables, precision=precision, overflow_width=width)
    np.testing.assert_array_equal(out, vals)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 400))
def test_decoding_garbage_never_crashes(data, count):
    tables = gaussian_tables(SCALES[::8])
    idx = (np.arange(count) % len(SCALES[::8])).astype(np.int32)
    try:
        out = decode_indexed(data, idx, *tables)
    except RangeCoderError:
        return
    assert out.shape == idx.shape


def test_corruption_detected_mostly(tables):
    vals, idx = latent_like(3000, seed=4)
    data = bytearray(encode_indexed(vals, idx, *tables))
    caught = 0
    for pos in range(0, len(data), max(1, len(data) // 40)):
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        try:
            out = decode_indexed(bytes(bad), idx, *tables)
        except RangeCoderError:
            caught += 1
            continue
        caught += int(not np.array_equal(out, vals))
    assert caught >= 35  # flips change the output or are reported, in practice always
    with pytest.raises(RangeCoderError, match="corrupt"):
        decode_indexed(bytes(data) + b"\x01\x02\x03", idx, *tables)
    with pytest.raises(RangeCoderError, match="after its last symbol"):
        decode_indexed(bytes(data) + bytes(9), idx, *tables)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c, o, n: (c[:, :20], o, n), "cdf_length"),
        (lambda c, o, n: (c[:, :2], o, n), "2-D"),
        (lambda c, o, n: (c + 1, o, n), "start at 0"),
        (lambda c, o, n: (c, o[:-1], n), "must be"),
        (lambda c, o, n: (c.astype(float), o, n), "integer"),
    ],
)
def test_bad_tables(tables, change, message):
    vals, idx = latent_like(10)
    with pytest.raises(RangeCoderError, match=message):
        encode_indexed(vals, idx, *change(*tables))


def test_bad_symbols(tables):
    vals, idx = latent_like(10)
    with pytest.raises(RangeCoderError, match="indexes must be in"):
        encode_indexed(vals, idx + 64, *tables)
    with pytest.raises(RangeCoderError, match="shape"):
        encode_indexed(vals[:5], idx, *tables)
    with pytest.raises(RangeCoderError, match="int32"):
        encode_indexed(vals.astype(np.int64) - 2**62, idx, *tables)
    with pytest.raises(RangeCoderError, match="precision"):
        encode_indexed(vals, idx, *tables, precision=17)
    with pytest.raises(WildlinkError):
        decode_indexed(b"\x00", idx.astype(float), *tables)
    assert issubclass(RangeCoderError, ValueError)


def test_split_flat_cdf():
    flat = np.array([-16, 0, 30000, 65536, -16, 0, 1, 2, 65536], np.int32)
    cdf, off, lengths, precision = split_flat_cdf(flat, [-1, 4])
    assert precision == 16
    np.testing.assert_array_equal(lengths, [3, 4])
    np.testing.assert_array_equal(cdf, [[0, 30000, 65536, 0], [0, 1, 2, 65536]])
    with pytest.raises(RangeCoderError):
        split_flat_cdf(flat, [0])


# --------------------------------------------------------------------------------------------
# byte compatibility with TensorFlow Compression (dev environment only)


@pytest.fixture(scope="module")
def tfc():
    tfc = pytest.importorskip("tensorflow_compression")
    return tfc


def test_bytes_identical_to_tfc_unbounded_index_op(tfc, tables):
    from tensorflow_compression.python.ops import gen_ops

    cdf, off, lengths = tables
    vals, idx = latent_like(20000, seed=5)
    vals[::101] = np.random.default_rng(6).integers(-(2**20), 2**20, len(vals[::101]))
    for width in (4, 1, 7):
        ref = gen_ops.unbounded_index_range_encode(
            vals, idx, cdf, lengths, off, precision=16, overflow_width=width
        ).numpy()
        assert encode_indexed(vals, idx, cdf, off, lengths, overflow_width=width) == ref
        out = decode_indexed(ref, idx, cdf, off, lengths, overflow_width=width)
        np.testing.assert_array_equal(out, vals)
        back = gen_ops.unbounded_index_range_decode(
            ref, idx, cdf, lengths, off, precision=16, overflow_width=width
        ).numpy()
        np.testing.assert_array_equal(back, vals)


def test_bytes_identical_to_tfc_with_bundle_tables(tfc):
    """The committed tiny bundle's y and z tables (written by training/export.py)."""
    from pathlib import Path

    from tensorflow_compression.python.ops import gen_ops

    path = Path(__file__).parent / "data" / "tiny_bundle" / "entropy.npz"
    if not path.is_file():
        pytest.skip("no tiny bundle")
    with np.load(path) as npz:
        e = {key: npz[key] for key in npz.files}
    rng = np.random.default_rng(9)
    for name in ("y", "z"):
        cdf, off, lengths = e[f"{name}_cdf"], e[f"{name}_cdf_offset"], e[f"{name}_cdf_length"]
        idx = rng.integers(0, len(off), 4000).astype(np.int32)
        vals = np.round(rng.normal(0, 0.25 * (lengths[idx] - 2)) + off[idx] + lengths[idx] / 2)
        vals = vals.astype(np.int32)
        vals[::150] += 10_000  # escapes
        ref = gen_ops.unbounded_index_range_encode(
            vals, idx, cdf, lengths, off, precision=16, overflow_width=4
        ).numpy()
        assert encode_indexed(vals, idx, cdf, off, lengths) == ref
        np.testing.assert_array_equal(decode_indexed(ref, idx, cdf, off, lengths), vals)


def test_bytes_identical_to_tfc_indexed_model(tfc):
    """LocationScaleIndexedEntropyModel(NoisyNormal).compress, symbols inside the tables.

    TFC's entropy models escape with an Elias gamma code (entropy_encode_index), ours with
    overflow_width digits (unbounded_index_range_encode, the bundle's choice); both are the same
    range coder, so streams without escapes must match byte for byte.
    """
    import tensorflow as tf

    model = tfc.LocationScaleIndexedEntropyModel(
        tfc.NoisyNormal, 64, lambda i: tf.exp(tf.math.log(0.11) + i * np.log(256 / 0.11) / 63),
        coding_rank=1, compression=True, range_coder_precision=16,
    )
    cdf, off, lengths, precision = split_flat_cdf(model.cdf.numpy(), model.cdf_offset.numpy())
    rng = np.random.default_rng(7)
    idx = rng.integers(0, 64, 5000).astype(np.int32)
    lo, hi = off[idx], off[idx] + lengths[idx] - 3
    vals = np.clip(np.round(rng.normal(0, SCALES[idx] * 1.5)), lo, hi).astype(np.int32)
    ref = model.compress(tf.constant(vals, tf.float32), tf.constant(idx)).numpy()
    assert encode_indexed(vals, idx, cdf, off, lengths, precision=precision) == ref
    assert precision == 16
    out = decode_indexed(ref, idx, cdf, off, lengths, precision=precision)
    np.testing.assert_array_equal(out, vals)


@pytest.mark.slow  # TFC estimates the DeepFactorized tails by optimisation (~10-40 s)
def test_bytes_identical_to_tfc_batched_model(tfc):
    """ContinuousBatchedEntropyModel(NoisyDeepFactorized): one cdf row per channel, like z."""
    import tensorflow as tf

    channels = 3
    prior = tfc.NoisyDeepFactorized(batch_shape=(channels,))
    model = tfc.ContinuousBatchedEntropyModel(prior, coding_rank=3, compression=True)
    cdf, off, lengths, precision = split_flat_cdf(model.cdf.numpy(), model.cdf_offset.numpy())
    rng = np.random.default_rng(8)
    shape = (6, 5, channels)
    ch = np.broadcast_to(np.arange(channels, dtype=np.int32), shape)
    lo, hi = off[ch], off[ch] + lengths[ch] - 3
    offset = model.quantization_offset.numpy()
    vals = np.clip(np.round(rng.normal(0, 3, shape)), lo, hi).astype(np.int32)
    ref = model.compress(tf.constant(vals + offset, tf.float32)).numpy()
    assert encode_indexed(vals, ch, cdf, off, lengths, precision=precision) == ref
    assert precision == 12  # TFC's default range_coder_precision
    out = decode_indexed(ref, ch, cdf, off, lengths, precision=precision)
    np.testing.assert_array_equal(out, vals)
