"""A compiled reader for the common shape of an embedding CSV block: ``id,id,speaker,x_1,...,x_D`` rows.

Parsing the release's 210 GB of float text is the ingest's whole cost, and a general CSV parser spends most of it
on what this format never has (type inference, quoting rules, per-column builders). ``parse_block`` is one
numba-compiled pass over the bytes that reads 8 digits at a time, and gives the same float32 values as
pyarrow's parser (round to nearest, ties to even; checked in the tests).

It accepts only a strict subset of what the general path accepts: integer ids (``3596`` or ``3596.0``), a speaker
quoted without inner quotes or written plainly, and decimal numbers ``-?d*(.d*)?([eE][+-]?d+)?``. Any row
outside that subset (an empty or malformed cell, ``nan``, a blank line, an id past 18 digits, a non-ASCII
speaker, a value beyond float32's range) stops the kernel at that row; the caller hands the rest of the part to
the general reader, which accepts it or reports the bad cell with file, row and column as before. So the kernel
changes speed only, never results or messages.

Exactness: a value's significant digits (up to 19, more than the 17 any float64 text has) are read exactly as an
integer, then scaled in float64 by a correctly rounded power of ten (three roundings, within 1.5 units in the
last place) and rounded to float32. That last rounding can only differ from
the correctly rounded one when the float64 value lies within a few float64 units of a float32 halfway point; such
values are reported back and rounded exactly from their text (``exact_float32``). The release's numbers are
float32 values printed as float64, never near a halfway point, so that path is for foreign files.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

PADDING = 32  # zero bytes after a block: the 8-byte digit loads and one-byte look-aheads never read past it
MAX_ID_DIGITS = 18  # always fits int64; longer ids go to the general reader, which checks the range exactly
MAX_SIGNIFICANT_DIGITS = 19  # fits uint64 exactly
# A float64 value this many units (of its last place) from a float32 halfway point is rounded exactly instead.
HALFWAY_MARGIN = 8
SCALE_RANGE = 340  # decimal exponents with a table entry; past it a value is 0 or beyond float32 anyway
# 10**k for k in -SCALE_RANGE..SCALE_RANGE, each the float64 nearest to the exact power (inf past float64's range)
SCALES = np.array(
    [float(Fraction(10) ** k) if k <= 308 else np.inf for k in range(-SCALE_RANGE, SCALE_RANGE + 1)]
)

# Statuses of parse_block.
OK, STOPPED, TOO_MANY_INEXACT = 0, 1, 2


@intrinsic
def _load_u64(typingctx, array, index):
    """The 8 bytes at ``array[index:]`` as one little-endian uint64 (an unaligned load)."""

    def codegen(context, builder, signature, args):
        view = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, signature.args[0], view, [args[1]])
        return builder.load(builder.bitcast(pointer, ir.IntType(64).as_pointer()), align=1)

    return types.uint64(array, index), codegen


@intrinsic
def _float64_bits(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.uint64(types.float64), codegen


@njit(inline="always")
def _eight_digits(word):
    """Whether all 8 bytes of ``word`` are ASCII digits."""
    high = np.uint64(0xF0F0F0F0F0F0F0F0)
    return (word & high) | (((word + np.uint64(0x0606060606060606)) & high) >> np.uint64(4)) == np.uint64(
        0x3333333333333333
    )


@njit(inline="always")
def _eight_digits_value(word):
    """The number written by 8 ASCII digits (first digit in the lowest byte), by SWAR multiplies."""
    word = word - np.uint64(0x3030303030303030)
    word = (word * np.uint64(10)) + (word >> np.uint64(8))
    pairs = word & np.uint64(0x000000FF000000FF)
    pairs_hi = (word >> np.uint64(16)) & np.uint64(0x000000FF000000FF)
    return (pairs * np.uint64(100 + (1000000 << 32)) + pairs_hi * np.uint64(1 + (10000 << 32))) >> np.uint64(
        32
    )


@njit(inline="always")
def _is_digit(byte):
    return byte >= 48 and byte <= 57


@njit(cache=True, nogil=True, boundscheck=False)
def parse_block(  # noqa: C901 - one hot loop, by design
    data, end, dim, ids, speaker_span, out, inexact, scales, run_owner, run_sums, run_rows, run_count
):
    """Parse whole rows of ``data[:end]`` (``data`` has PADDING zero bytes after ``end``; ``end`` is just past
    a newline).

    Writes row r's ids to ``ids[r]`` (conversation, sentence), its speaker's byte span to ``speaker_span[r]``,
    its values to ``out[r]``, and (row, column, start, stop) of every value to round exactly to ``inexact``.
    Consecutive rows of one conversation form a run: run k's conversation is ``run_owner[k]``, its rows
    ``run_rows[k]``, the float64 sum of their values ``run_sums[k]`` (added in row order, as ``np.add.reduceat``
    adds); ``run_count[0]`` is the number of runs. Returns (status, rows parsed, inexact values); on a status other
    than OK the caller re-reads the whole block with the general reader.
    """
    position = 0
    rows = 0
    run = -1
    inexact_count = 0
    capacity = out.shape[0]
    while position < end:
        if rows == capacity:
            return STOPPED, rows, inexact_count
        i = position
        for k in range(2):  # conversation_id, sentence_number
            value = 0
            digits = 0
            while _is_digit(data[i]):
                value = value * 10 + (data[i] - 48)
                i += 1
                digits += 1
            if digits == 0 or digits > MAX_ID_DIGITS:
                return STOPPED, rows, inexact_count
            if data[i] == 46:  # "3596.0": zeros only after the point
                i += 1
                while data[i] == 48:
                    i += 1
            if data[i] != 44:
                return STOPPED, rows, inexact_count
            ids[rows, k] = value
            i += 1
        new_run = run < 0 or ids[rows, 0] != run_owner[run]
        if new_run:
            run += 1
            run_owner[run] = ids[rows, 0]
            run_rows[run] = 0
        if data[i] == 34:  # quoted speaker: no inner quotes, no line breaks
            i += 1
            speaker_span[rows, 0] = i
            while i < end and data[i] != 34 and data[i] != 10 and data[i] < 128:
                i += 1
            if i >= end or data[i] != 34:
                return STOPPED, rows, inexact_count
            speaker_span[rows, 1] = i
            i += 1
        else:
            speaker_span[rows, 0] = i
            while i < end and data[i] != 44 and data[i] != 10 and data[i] != 34 and data[i] < 128:
                i += 1
            speaker_span[rows, 1] = i
        if data[i] != 44:
            return STOPPED, rows, inexact_count
        i += 1
        for d in range(dim):
            value_start = i
            negative = data[i] == 45
            if negative:
                i += 1
            mantissa = np.uint64(0)
            significant = 0
            exponent = 0
            digits = 0
            while _is_digit(data[i]):  # integer part
                if significant < MAX_SIGNIFICANT_DIGITS:
                    mantissa = mantissa * np.uint64(10) + np.uint64(data[i] - 48)
                    if mantissa != 0:
                        significant += 1
                else:
                    exponent += 1
                i += 1
                digits += 1
            if data[i] == 46:  # fraction
                i += 1
                if mantissa == 0:
                    while data[i] == 48:
                        i += 1
                        exponent -= 1
                        digits += 1
                while significant + 8 <= MAX_SIGNIFICANT_DIGITS:
                    word = _load_u64(data, i)
                    if not _eight_digits(word):
                        break
                    mantissa = mantissa * np.uint64(100000000) + _eight_digits_value(word)
                    if mantissa != 0:
                        significant += 8
                    i += 8
                    exponent -= 8
                    digits += 8
                while _is_digit(data[i]):
                    if significant < MAX_SIGNIFICANT_DIGITS:
                        mantissa = mantissa * np.uint64(10) + np.uint64(data[i] - 48)
                        if mantissa != 0:
                            significant += 1
                        exponent -= 1
                    i += 1
                    digits += 1
            if digits == 0:
                return STOPPED, rows, inexact_count
            if data[i] == 101 or data[i] == 69:  # e, E
                i += 1
                exponent_negative = data[i] == 45
                if data[i] == 45 or data[i] == 43:
                    i += 1
                written = 0
                exponent_digits = 0
                while _is_digit(data[i]):
                    if exponent_digits < 5:
                        written = written * 10 + (data[i] - 48)
                    i += 1
                    exponent_digits += 1
                if exponent_digits == 0 or exponent_digits > 4:
                    return STOPPED, rows, inexact_count
                exponent += -written if exponent_negative else written
            if mantissa == 0:
                value = 0.0
            elif exponent < -SCALE_RANGE:
                value = 0.0  # far below float32's least value; rounded exactly below
            elif exponent > SCALE_RANGE:
                return STOPPED, rows, inexact_count
            else:  # within ~1.5 units in the last place: the halfway test below covers that
                value = float(mantissa) * scales[exponent + SCALE_RANGE]
            single = np.float32(value)
            if np.isinf(single):  # past float32's range: the general reader decides what that is
                return STOPPED, rows, inexact_count
            below_part = _float64_bits(value) & np.uint64(0x1FFFFFFF)  # the bits float32 rounds away
            if mantissa != 0 and (
                abs(np.int64(below_part) - np.int64(0x10000000)) <= HALFWAY_MARGIN
                or value < 1.1754943508222875e-38  # float32 subnormal: fewer bits kept
                or significant >= MAX_SIGNIFICANT_DIGITS
            ):
                if inexact_count == inexact.shape[0]:
                    return TOO_MANY_INEXACT, rows, inexact_count
                inexact[inexact_count, 0] = rows
                inexact[inexact_count, 1] = d
                inexact[inexact_count, 2] = value_start
                inexact[inexact_count, 3] = i
                inexact_count += 1
            stored = -single if negative else single
            out[rows, d] = stored
            if new_run:
                run_sums[run, d] = np.float64(stored)
            else:
                run_sums[run, d] += np.float64(stored)
            if d + 1 < dim:
                if data[i] != 44:
                    return STOPPED, rows, inexact_count
                i += 1
        if data[i] == 13:
            i += 1
        if data[i] != 10:
            return STOPPED, rows, inexact_count
        position = i + 1
        run_rows[run] += 1
        rows += 1
    run_count[0] = run + 1
    return OK, rows, inexact_count


def exact_float32(text: bytes) -> np.float32:
    """The float32 nearest to the decimal ``text`` (ties to even; ``-0`` stays negative), by exact arithmetic."""
    exact = Fraction(text.decode("ascii"))
    with np.errstate(over="ignore"):
        guess = np.float32(float(exact))
        neighbours = (np.nextafter(guess, np.float32(-np.inf)), np.nextafter(guess, np.float32(np.inf)))
    best = guess
    for candidate in neighbours:
        if not np.isfinite(candidate):
            continue
        distance, best_distance = abs(Fraction(float(candidate)) - exact), abs(Fraction(float(best)) - exact)
        if distance < best_distance or (
            distance == best_distance and int(candidate.view(np.uint32)) % 2 == 0
        ):
            best = candidate
    if best == 0 and text.lstrip().startswith(b"-"):
        return np.float32(-0.0)
    return best
