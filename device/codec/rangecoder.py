"""Range coder, byte-compatible with TensorFlow Compression's (numpy and the standard library).

This is our own implementation of the algorithm in TFC's `cc/lib/range_coder.cc` (G. N. N.
Martin, "Range coding", 1979: a 32-bit interval `[base, base + size)`, narrowed by
`floor(size * cdf / 2^precision)` and renormalised 16 bits at a time once `size <= 2^16`) and of
the escape of `cc/kernels/unbounded_index_range_coding_kernels.cc` (`UnboundedIndexRangeEncode`
with `overflow_width`): a value outside its row's table is sent as the row's last (overflow)
symbol followed by a variable-length code in `overflow_width`-bit uniform digits.

Speed (see tools/benchmarks/rangecoder.py): everything that is not sequential is numpy. The
encoder turns every symbol (and every escape digit) into one `(lower, upper)` pair at precision
16 with vectorised gathers, then runs one tight loop over Python ints. TFC resolves carries with
its `delay` state machine; we keep the low end of the interval as an unbounded Python int (at
most 33 bits) and propagate a carry into the already written bytes, which yields the same
digits (both write the base-2^16 digits of the same number) and a much shorter loop.

Table layout (docs/bundle.md): `cdf` int32 `[rows, max_len]` padded; row r holds
`cdf[r, :cdf_length[r]]`, starting at 0 and ending at `2**precision`; symbol `k` of row r codes
value `k + cdf_offset[r]` for `0 <= k < cdf_length[r] - 2`; `k = cdf_length[r] - 2` is the
overflow (escape) symbol. `split_flat_cdf` converts TFC entropy models' flat `cdf` to this.

Example:
    >>> data = encode_indexed(values, indexes, cdf, cdf_offset, cdf_length)   # doctest: +SKIP
    >>> decode_indexed(data, indexes, cdf, cdf_offset, cdf_length)            # doctest: +SKIP
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from device.errors import WildlinkError

__all__ = [
    "RangeCoderError",
    "decode_indexed",
    "encode_indexed",
    "estimate_bits",
    "split_flat_cdf",
]

_TOP = 1 << 32  # the coder's interval lives in [0, 2^32)
_RENORM = 1 << 16  # renormalise once size <= 2^16 (range_coder.cc: size_minus1 >> 16 == 0)
_MAX_ESCAPE = (1 << 31) - 1  # escaped magnitudes must fit TFC's uint32 overflow and int32 values


class RangeCoderError(WildlinkError, ValueError):
    """A range-coded stream is corrupt or truncated, or the tables/symbols are invalid."""


# --------------------------------------------------------------------------------------------
# tables


_CACHE: list = []  # [(inputs, prepared)], most recent first: rate control reuses one table set
_CACHE_SIZE = 4


def _check_tables(cdf, cdf_offset, cdf_length, precision: int, overflow_width: int):
    """Validated tables, cached by identity: callers treat their table arrays as read-only.

    The validation costs more than estimating a band, and the encoder's rate control estimates
    every band at several steps with the same arrays.
    """
    key = (cdf, cdf_offset, cdf_length, precision, overflow_width)
    for i, (inputs, prepared) in enumerate(_CACHE):
        same = all(a is b for a, b in zip(inputs[:3], key[:3], strict=True))
        if same and inputs[3:] == key[3:]:
            if i:
                _CACHE.insert(0, _CACHE.pop(i))
            return prepared
    prepared = _validate_tables(cdf, cdf_offset, cdf_length, precision, overflow_width)
    if all(isinstance(a, np.ndarray) for a in key[:3]):
        _CACHE.insert(0, (key, prepared))
        del _CACHE[_CACHE_SIZE:]
    return prepared


def _validate_tables(cdf, cdf_offset, cdf_length, precision: int, overflow_width: int):
    """Validate the table triple; return int64 arrays (cdf scaled to precision 16)."""
    if not 0 < int(precision) <= 16:
        raise RangeCoderError(f"precision must be in [1, 16], got {precision}")
    if not 0 < int(overflow_width) <= 16:
        raise RangeCoderError(f"overflow_width must be in [1, 16], got {overflow_width}")
    cdf = np.asarray(cdf)
    cdf_offset = np.asarray(cdf_offset)
    cdf_length = np.asarray(cdf_length)
    if cdf.ndim != 2 or cdf.shape[1] < 3 or cdf.shape[0] < 1:
        raise RangeCoderError(f"cdf must be 2-D [rows, >=3], got shape {cdf.shape}")
    rows = cdf.shape[0]
    if cdf_offset.shape != (rows,) or cdf_length.shape != (rows,):
        raise RangeCoderError(
            f"cdf_offset {cdf_offset.shape} and cdf_length {cdf_length.shape} must be ({rows},)"
        )
    for name, arr in (("cdf", cdf), ("cdf_offset", cdf_offset), ("cdf_length", cdf_length)):
        if arr.dtype.kind not in "iu":
            raise RangeCoderError(f"{name} must be integer, got {arr.dtype}")
    cdf = cdf.astype(np.int64)
    lengths = cdf_length.astype(np.int64)
    if lengths.min() < 3 or lengths.max() > cdf.shape[1]:
        raise RangeCoderError(f"cdf_length must be in [3, {cdf.shape[1]}]")
    top = 1 << int(precision)
    cols = np.arange(cdf.shape[1])
    used = cols[None, :] < lengths[:, None]
    last = cdf[np.arange(rows), lengths - 1]
    if np.any(cdf[:, 0] != 0) or np.any(last != top):
        raise RangeCoderError(f"every cdf row must start at 0 and end at {top} (2**precision)")
    steps = np.diff(cdf, axis=1)
    if np.any((steps < 0) & used[:, 1:]):
        raise RangeCoderError("cdf rows must be non-decreasing")
    scaled = np.where(used, cdf, top) << (16 - int(precision))
    return scaled, cdf_offset.astype(np.int64), lengths


def split_flat_cdf(flat_cdf, cdf_offset) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """TFC entropy models' flat `cdf` -> `(cdf [rows, max_len], cdf_offset, cdf_length, precision)`.

    TFC >= 2.2 stores each row as `[-precision, 0, ..., 2**precision]` concatenated
    (`ContinuousEntropyModelBase._build_tables`); the bundle stores padded rows instead.
    """
    flat = np.asarray(flat_cdf, np.int64).ravel()
    offsets = np.asarray(cdf_offset, np.int32).ravel()
    starts = np.flatnonzero(flat < 0)
    if len(starts) != len(offsets) or len(starts) == 0 or starts[0] != 0:
        raise RangeCoderError("flat cdf does not have one [-precision, 0, ...] block per offset")
    precision = int(-flat[0])
    ends = np.append(starts[1:], len(flat))
    rows = []
    for s, e in zip(starts, ends, strict=True):
        block = flat[s + 1 : e]
        # Like TFC's ScanCDF: a row ends at its first 2**precision; repeats after it (bins of
        # zero mass) are padding, so the last bin before them is the overflow symbol.
        hits = np.flatnonzero(block == 1 << precision)
        if hits.size == 0 or block[0] != 0:
            raise RangeCoderError("flat cdf row does not run from 0 to 2**precision")
        rows.append(block[: hits[0] + 1])
    lengths = np.array([len(row) for row in rows], np.int32)
    table = np.zeros((len(rows), int(lengths.max())), np.int32)
    for r, row in enumerate(rows):
        table[r, : len(row)] = row
    return table, offsets, lengths, precision


# --------------------------------------------------------------------------------------------
# symbols -> (lower, upper) events


def _prepare(values, indexes, tables):
    """Per-symbol row, table symbol and escape magnitude, vectorised."""
    cdf, offset, lengths = tables
    values = np.asarray(values)
    indexes = np.asarray(indexes)
    if values.shape != indexes.shape:
        raise RangeCoderError(f"values {values.shape} and indexes {indexes.shape} differ in shape")
    if values.dtype.kind not in "iu" or indexes.dtype.kind not in "iu":
        raise RangeCoderError("values and indexes must be integer arrays")
    if values.dtype.itemsize > 4 and values.size:
        if values.min() < -(1 << 31) or values.max() >= 1 << 31:
            raise RangeCoderError("values must fit in int32")
    rows = indexes.ravel().astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= cdf.shape[0]):
        raise RangeCoderError(f"indexes must be in [0, {cdf.shape[0]})")
    v = values.ravel().astype(np.int64) - offset[rows]
    max_value = lengths[rows] - 2
    # unbounded_index_range_coding_kernels.cc: negative -> odd, beyond the table -> even.
    overflow = np.where(v < 0, -2 * v - 1, 2 * (v - max_value))
    escaped = (v < 0) | (v >= max_value)
    if escaped.any() and overflow[escaped].max() > 2 * _MAX_ESCAPE:
        raise RangeCoderError("a value is too far outside its table to be escaped (int32 range)")
    sym = np.where(escaped, max_value, v)
    return rows, sym, escaped, overflow


def _escape_events(overflow: np.ndarray, width: int):
    """Digits of the escape code for each escaped value, as (owner, digit) in coding order.

    Per value: `widths` = number of `width`-bit digits of `overflow`; `widths` in unary-ish
    blocks of max digit (`max_overflow` repeated, then the remainder), then the digits, low first.
    """
    max_digit = (1 << width) - 1
    widths = np.zeros(overflow.shape, np.int64)
    rest = overflow.copy()
    while np.any(rest):
        nz = rest != 0
        widths += nz
        rest >>= width
    n_full = widths // max_digit
    counts = n_full + 1 + widths
    owner = np.repeat(np.arange(len(overflow)), counts)
    pos = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    full = np.repeat(n_full, counts)
    digit = np.where(pos < full, max_digit, 0)
    digit = np.where(pos == full, np.repeat(widths % max_digit, counts), digit)
    j = pos - full - 1
    shifted = np.repeat(overflow, counts) >> np.clip(j * width, 0, 62)
    digit = np.where(pos > full, shifted & max_digit, digit)
    return owner, digit, counts


def _events(values, indexes, tables, overflow_width: int):
    """All coder events as (lower, upper) at precision 16, in stream order (int64 arrays)."""
    cdf, _, _ = tables
    rows, sym, escaped, overflow = _prepare(values, indexes, tables)
    flat_pos = rows * cdf.shape[1] + sym  # flat gathers are faster than 2-D fancy indexing
    flat = cdf.ravel()
    lower = flat[flat_pos]
    upper = flat[flat_pos + 1]
    if np.any(upper <= lower):
        bad = int(np.flatnonzero(upper <= lower)[0])
        raise RangeCoderError(f"symbol {bad} has zero probability in its cdf row {rows[bad]}")
    esc = np.flatnonzero(escaped)
    if esc.size == 0:
        return lower, upper
    _, digit, counts = _escape_events(overflow[esc], overflow_width)
    per_symbol = np.ones(len(lower), np.int64)
    per_symbol[esc] += counts
    starts = np.cumsum(per_symbol) - per_symbol
    total = int(per_symbol.sum())
    out_lo = np.empty(total, np.int64)
    out_hi = np.empty(total, np.int64)
    out_lo[starts] = lower
    out_hi[starts] = upper
    mask = np.ones(total, bool)
    mask[starts] = False
    shift = 16 - overflow_width
    out_lo[mask] = digit << shift
    out_hi[mask] = (digit + 1) << shift
    return out_lo, out_hi


# --------------------------------------------------------------------------------------------
# public API


def encode_indexed(
    values, indexes, cdf, cdf_offset, cdf_length, precision: int = 16, overflow_width: int = 4
) -> bytes:
    """Range-encode `values`, each with the cdf row named by its index (TFC's bytes).

    Args:
        values: integer array, any shape (flattened in C order).
        indexes: integer array, same shape, each in `[0, rows)`.
        cdf, cdf_offset, cdf_length: the tables (module docstring; int32 `[rows, L]`, `[rows]`).
        precision: bits of the cdf values (TFC `range_coder_precision`, 1..16).
        overflow_width: bits per escape digit (TFC `overflow_width`, 1..16).

    Returns:
        The stream, identical to `tfc.unbounded_index_range_encode` for the same inputs.
    """
    tables = _check_tables(cdf, cdf_offset, cdf_length, precision, overflow_width)
    lower, upper = _events(values, indexes, tables, overflow_width)
    # Iterating a memoryview makes each Python int on the fly: faster than tolist() first.
    return _encode_events(memoryview(lower), memoryview(upper))


def _encode_events(lowers, uppers) -> bytes:
    """The sequential part: narrow [low, low + size) per event (range_coder.cc, Encode)."""
    out = bytearray()
    low = 0
    size = _TOP
    renorm = _RENORM
    top = _TOP
    for lo, hi in zip(lowers, uppers, strict=True):
        a = (size * lo) >> 16
        size = ((size * hi) >> 16) - a
        low += a
        if size <= renorm:
            if low >= top:  # carry into the written digits (TFC's case #2)
                low -= top
                i = len(out) - 1
                while out[i] == 0xFF:
                    out[i] = 0
                    i -= 1
                out[i] += 1
            out += (low >> 16).to_bytes(2, "big")
            low = (low & 0xFFFF) << 16
            size <<= 16
    return bytes(_finish(out, low, size))


def _finish(out: bytearray, low: int, size: int) -> bytearray:
    """Pick the shortest value in [low, low + size), as RangeEncoder::Finalize does."""
    if low >= _TOP:  # pending carry: TFC was in state 1 and base overflowed (state 0 now)
        low -= _TOP
        _carry(out)
    if low + size - 1 >= _TOP:
        # TFC state 1: it picks 2^32 and omits the implied trailing zero bytes.
        _carry(out)
        while out and out[-1] == 0:
            out.pop()
        return out
    if low == 0:
        return out
    upper = low + size - 1
    mid = ((low - 1) >> 24) + 1
    if mid <= (upper >> 24):
        out.append(mid)
        return out
    mid = ((low - 1) >> 16) + 1
    out.append(mid >> 8)
    if mid & 0xFF:
        out.append(mid & 0xFF)
    return out


def _carry(out: bytearray) -> None:
    i = len(out) - 1
    while out[i] == 0xFF:
        out[i] = 0
        i -= 1
    out[i] += 1


def decode_indexed(
    data: bytes, indexes, cdf, cdf_offset, cdf_length, precision: int = 16, overflow_width: int = 4
) -> np.ndarray:
    """Inverse of `encode_indexed`: int32 values with the shape of `indexes`.

    Raises:
        RangeCoderError: the tables are invalid, or the stream is inconsistent with them
            (corrupt, truncated, too long, or coded with other tables). Detection of corruption
            is best effort, as in TFC's `RangeDecoder::Finalize`; the container's CRCs are the
            real check.
    """
    cdf_s, offset, lengths = _check_tables(cdf, cdf_offset, cdf_length, precision, overflow_width)
    indexes = np.asarray(indexes)
    if indexes.dtype.kind not in "iu":
        raise RangeCoderError("indexes must be an integer array")
    rows = indexes.ravel().astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= cdf_s.shape[0]):
        raise RangeCoderError(f"indexes must be in [0, {cdf_s.shape[0]})")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise RangeCoderError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    symbols = _decode_symbols(data, memoryview(rows), cdf_s, lengths, overflow_width)
    values = np.asarray(symbols, np.int64) + offset[rows]
    if values.size and (values.min() < -(1 << 31) or values.max() >= 1 << 31):
        raise RangeCoderError("decoded value outside int32: stream corrupt")
    return values.astype(np.int32).reshape(indexes.shape)


def _decode_symbols(data: bytes, rows, cdf, lengths, overflow_width: int) -> list:
    """The sequential part of decoding; symbols are table positions, escapes resolved.

    State as in RangeDecoder, but only `dist` = value - base (< size) is carried: the symbol
    search and the renormalisation depend on nothing else, and `base` can be recovered at the
    end from the last four bytes read (`value`) for the end check.
    """
    tables = [row[:n].tolist() for row, n in zip(cdf, lengths.tolist(), strict=True)]
    escape = [n - 2 for n in lengths.tolist()]
    per_symbol = [tables[r] for r in rows]
    escapes = [escape[r] for r in rows]
    # Past the end the decoder reads zeros; one renormalisation per symbol at most, and the
    # escape digits (rare) append their own zeros in `_uniform_digit`.
    buf = bytearray(data)
    buf += bytes(4 + 2 * len(rows))
    dist = int.from_bytes(buf[:4], "big")
    state = [dist, _TOP, 4]  # dist, size, pos: only escapes go through this list
    size = _TOP
    pos = 4
    renorm = _RENORM
    out = []
    append = out.append
    for c, e in zip(per_symbol, escapes, strict=True):
        # first j with size * c[j] >= (dist + 1) << 16, i.e. c[j] > ((dist + 1) << 16 - 1) // size
        s = bisect_right(c, (((dist + 1) << 16) - 1) // size) - 1
        a = (size * c[s]) >> 16
        size = ((size * c[s + 1]) >> 16) - a
        dist -= a
        if size <= renorm:
            dist = (dist << 16) | (buf[pos] << 8) | buf[pos + 1]
            pos += 2
            size <<= 16
        if s == e:
            state[:] = dist, size, pos
            s = _decode_escape(state, buf, s, overflow_width)
            dist, size, pos = state
        append(s)
    _check_end(data, int.from_bytes(buf[pos - 4 : pos], "big"), pos, size, dist)
    return out


def _decode_escape(state: list, buf: bytearray, max_value: int, width: int) -> int:
    """Read the escape code after an overflow symbol; return the table-relative value."""
    max_digit = (1 << width) - 1
    max_widths = -(-32 // width)  # an uint32 overflow has at most this many digits
    widths = 0
    while True:
        digit = _uniform_digit(state, buf, width)
        widths += digit
        if widths > max_widths:
            raise RangeCoderError("escape code too long: stream corrupt")
        if digit != max_digit:
            break
    overflow = 0
    for j in range(widths):
        overflow |= _uniform_digit(state, buf, width) << (j * width)
    value = overflow >> 1
    return -value - 1 if overflow & 1 else value + max_value


def _uniform_digit(state: list, buf: bytearray, width: int) -> int:
    """Decode one `width`-bit uniform digit: cdf[j] = j << (16 - width)."""
    dist, size, pos = state
    shift = 16 - width
    t = (((dist + 1) << 16) - 1) // size + 1
    digit = min((t - 1) >> shift, (1 << width) - 1)
    a = (size * (digit << shift)) >> 16
    size = ((size * ((digit + 1) << shift)) >> 16) - a
    dist -= a
    if size <= _RENORM:
        dist = (dist << 16) | (buf[pos] << 8) | buf[pos + 1]
        pos += 2
        size <<= 16
        buf += b"\0\0"  # keep the zero padding ahead of the main loop's reads
    state[:] = dist, size, pos
    return digit


def _check_end(data: bytes, value: int, pos: int, size: int, dist: int) -> None:
    """TFC's RangeDecoder::Finalize: all bytes read, and the value is what the encoder picks."""
    if pos < len(data):
        raise RangeCoderError(
            f"stream has {len(data) - pos} bytes after its last symbol: corrupt or wrong tables"
        )
    base = (value - dist) & (_TOP - 1)
    upper = (base + size - 1) & (_TOP - 1)
    if base == 0 or upper < base:
        expected = 0
    else:
        shift = 24 if ((base - 1) >> 24) < (upper >> 24) else 16
        expected = ((((base - 1) >> shift) + 1) << shift) & (_TOP - 1)
    if value != expected:
        raise RangeCoderError("stream does not end where its symbols do: corrupt or truncated")


def estimate_bits(
    values, indexes, cdf, cdf_offset, cdf_length, precision: int = 16, overflow_width: int = 4
) -> float:
    """Ideal code length in bits, sum of -log2 p, escapes included (vectorised, no coding).

    The range coder's output is within a few bytes of this (termination) plus ~0.01%.
    """
    tables = _check_tables(cdf, cdf_offset, cdf_length, precision, overflow_width)
    table, _, _ = tables
    rows, sym, escaped, overflow = _prepare(values, indexes, tables)
    freq = table[rows, sym + 1] - table[rows, sym]
    if np.any(freq <= 0):
        raise RangeCoderError("a symbol has zero probability in its cdf row")
    bits = float(np.sum(16.0 - np.log2(freq)))
    esc = np.flatnonzero(escaped)
    if esc.size:
        _, _, counts = _escape_events(overflow[esc], overflow_width)
        bits += float(counts.sum()) * overflow_width
    return bits
