"""Bid-log readers: iPinYou theta lines and make-ipinyou-data logs, parsed into arrays by numba.

Two formats (see docs/replay.md):

- ``ipinyou-theta``: one request per line, ``click market_price pctr``, separated by
  spaces or tabs, no header (the rlb-dp ``*.theta.txt`` files).
- ``ipinyou-log``: the tab-separated logs of the public make-ipinyou-data scripts,
  with a header line (``click weekday hour bidid ... slotprice bidprice payprice ...``);
  ``payprice`` is the market price and the pCTR comes from a named column or a constant.

The whole file is read as bytes, its newlines counted to size the outputs, and the
lines parsed in one more numba pass (no Python loop over lines). Decimal pCTRs become
exactly the double Python's ``float()`` gives: the kernel converts numbers like the
logs' (up to 18 significant digits, scale within 10**-22..10**22) with proven correct
rounding, and hands any number it cannot prove to ``float()`` itself. Blank lines are
not requests and are ignored; any other line that does not parse is an error naming
its line number, or, with ``skip_bad``, is counted and skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from numba import njit

from rtb.errors import InputError
from rtb.files import open_regular

FORMATS = ("ipinyou-theta", "ipinyou-log")
THETA_FIELDS = ("click", "market_price", "pctr")
LOG_PRICE_COLUMN = "payprice"
LOG_CLICK_COLUMN = "click"


class BidLog(NamedTuple):
    """One parsed bid log: a row per request, in log order."""

    click: np.ndarray  # bool[n]: the impression, if shown, was clicked
    market_price: np.ndarray  # i4[n]: what a winner pays, in the log's unit (fen CPM for iPinYou)
    pctr: np.ndarray  # f8[n]: predicted click probability, in [0, 1]
    skipped: int  # malformed lines skipped (skip_bad=True only)
    first_skipped: str  # "line N: problem" of the first skipped line, "" when none


# Problems the kernel can find on a line (0 = none).
_E_FIELDS = 1
_E_CLICK = 2
_E_PRICE = 3
_E_PCTR = 4
_E_PCTR_RANGE = 5

# Float conversion outcomes.
_EXACT = 0  # the value is the correctly rounded double
_SLOW = 1  # syntax is fine; let float() convert it
_NOT_A_NUMBER = 2

_MAX_DIGITS = 18  # significant digits kept in an int64 mantissa (< 2**63)
_MAX_PRICE_DIGITS = 9  # fits int32
_POW10 = np.array([10.0**k for k in range(23)])  # exactly representable powers of ten


@njit(cache=True)
def _two_prod_nb(a, b):
    """a * b = p + err exactly (Dekker's product; numba does not contract into FMA)."""
    p = a * b
    c = 134217729.0 * a  # 2**27 + 1: Veltkamp split into 26-bit halves
    ah = c - (c - a)
    al = a - ah
    c = 134217729.0 * b
    bh = c - (c - b)
    bl = b - bh
    err = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, err


@njit(cache=True)
def _decimal_to_f8_nb(mant, exp10):
    """The double nearest mant * 10**exp10 (mant: 0 < int64 < 10**18), or _SLOW if unproven.

    Clinger's fast path when both factors are exact doubles; otherwise, for negative
    exponents, a double-double quotient q1 + q2 within about 2**-103 of the value,
    accepted only when everything within 2**-100 of it rounds to the same double.
    """
    if mant < 9007199254740992 and -22 <= exp10 <= 22:  # mant < 2**53
        if exp10 >= 0:
            return float(mant) * _POW10[exp10], _EXACT
        return float(mant) / _POW10[-exp10], _EXACT
    if exp10 >= 0 or exp10 < -22:
        return 0.0, _SLOW
    d = _POW10[-exp10]
    wh = float(mant)
    wl = float(mant - np.int64(wh))  # mant = wh + wl exactly
    q1 = wh / d
    p, pe = _two_prod_nb(q1, d)
    r = (wh - p) - pe  # exact remainder wh - q1*d (Sterbenz, then a representable result)
    q2 = (r + wl) / d
    s = q1 + q2
    t = q2 - (s - q1)  # s + t = q1 + q2 exactly
    margin = s * 7.888609052210118e-31  # 2**-100: exact scaling
    if s + (t + margin) != s or s + (t - margin) != s:
        return 0.0, _SLOW  # too close to a midpoint between two doubles
    return s, _EXACT


@njit(cache=True)
def _parse_float_nb(buf, s, e):
    """(value, status, end) of the decimal number ([+-]digits[.digits][e[+-]digits]) at s.

    Reads no further than e; `end` is where the number stops, so the caller can
    check that the field stops there too.
    """
    i = s
    neg = False
    if i < e and (buf[i] == 43 or buf[i] == 45):
        neg = buf[i] == 45
        i += 1
    # Separate loops for leading zeros, kept digits and dropped digits keep each loop's
    # body short and free of branches. (An 8-digits-at-once SWAR variant of the kept
    # digits loop measured only 6 % faster over the whole parse: not worth its code.)
    mant = 0
    nd = 0  # significant digits in mant
    exp10 = 0
    truncated = False  # nonzero digits beyond _MAX_DIGITS were dropped
    start = i
    while i < e and buf[i] == 48:
        i += 1
    while i < e and nd < _MAX_DIGITS and 48 <= buf[i] <= 57:
        mant = mant * 10 + (np.int64(buf[i]) - 48)
        nd += 1
        i += 1
    while i < e and 48 <= buf[i] <= 57:
        exp10 += 1
        truncated |= buf[i] != 48
        i += 1
    digits = i - start
    if i < e and buf[i] == 46:
        i += 1
        start = i
        if nd == 0:
            while i < e and buf[i] == 48:
                i += 1
            exp10 -= i - start
        while i < e and nd < _MAX_DIGITS and 48 <= buf[i] <= 57:
            mant = mant * 10 + (np.int64(buf[i]) - 48)
            nd += 1
            exp10 -= 1
            i += 1
        while i < e and 48 <= buf[i] <= 57:
            truncated |= buf[i] != 48
            i += 1
        digits += i - start
    if digits == 0:
        return 0.0, _NOT_A_NUMBER, i
    if i < e and (buf[i] == 101 or buf[i] == 69):
        i += 1
        eneg = False
        if i < e and (buf[i] == 43 or buf[i] == 45):
            eneg = buf[i] == 45
            i += 1
        if i == e or not 48 <= buf[i] <= 57:
            return 0.0, _NOT_A_NUMBER, i
        ev = 0
        while i < e and 48 <= buf[i] <= 57:
            if ev < 100000:  # far beyond any double; stops overflow
                ev = ev * 10 + (np.int64(buf[i]) - 48)
            i += 1
        exp10 += -ev if eneg else ev
    if mant == 0:
        return -0.0 if neg else 0.0, _EXACT, i
    if truncated:
        # The value lies strictly between mant and mant + 1 (times 10**exp10): when both
        # ends round to the same double, so does the value (rounding is monotonic).
        lo, st_lo = _decimal_to_f8_nb(mant, exp10)
        hi, st_hi = _decimal_to_f8_nb(mant + 1, exp10)
        if st_lo != _EXACT or st_hi != _EXACT or lo != hi:
            return 0.0, _SLOW, i
        v = lo
    else:
        v, st = _decimal_to_f8_nb(mant, exp10)
        if st != _EXACT:
            return 0.0, _SLOW, i
    return -v if neg else v, _EXACT, i


@njit(cache=True)
def _parse_uint_nb(buf, s, e, max_digits):
    """(value, end) of the plain digits at s, read no further than e; value -1 when
    there are none or more than max_digits."""
    v = 0
    i = s
    while i < e and 48 <= buf[i] <= 57:
        if i - s < max_digits:
            v = v * 10 + (np.int64(buf[i]) - 48)
        i += 1
    if i == s or i - s > max_digits:
        return -1, i
    return v, i


@njit(cache=True)
def _line_end_nb(buf, pos):
    """Index of the first newline at or after pos (buf.size when there is none)."""
    for i in range(pos, buf.shape[0]):
        if buf[i] == 10:
            return i
    return buf.shape[0]


@njit(cache=True)
def _count_lines_nb(buf, pos):
    n = 1
    for i in range(pos, buf.shape[0]):
        if buf[i] == 10:  # a branch: LLVM vectorises this, not `n += buf[i] == 10`
            n += 1
    return n


@njit(cache=True)
def _parse_nb(buf, pos, first_line, tab_only, n_fields, col_click, col_price, col_pctr, skip_bad):
    """Parse the lines of buf from byte `pos` on into click, price and pCTR arrays.

    One pass over the bytes. Fields are runs of bytes other than space, tab and CR
    (theta), or tab-separated and possibly empty (tab_only, where a CR before the
    newline ends the last field). col_pctr < 0 means no pCTR column. Returns the
    arrays, `slow` (rows [row, line, start, end] whose pCTR token float() must
    convert), the skipped count and the first problem: (code, line, fields found,
    token start, token end). Without skip_bad, parsing stops at the first problem.
    """
    n_max = _count_lines_nb(buf, pos)
    click = np.empty(n_max, np.bool_)
    price = np.empty(n_max, np.int32)
    pctr = np.empty(n_max, np.float64)
    slow = np.empty((16, 4), np.int64)
    n_slow = 0
    row = 0
    skipped = 0
    err_code = 0
    err_line = 0
    err_fields = 0
    err_s = 0
    err_e = 0
    n = buf.shape[0]
    line = first_line
    i = pos
    while i < n:
        f = 0
        code = 0
        bad_s = 0
        bad_e = 0
        c_click = False
        c_price = 0
        c_pctr = 0.0
        v = 0
        st = _EXACT
        is_slow = False
        while True:  # the fields of one line; leaves i at its newline or at n
            if not tab_only:
                while i < n and (buf[i] == 32 or buf[i] == 9 or buf[i] == 13):
                    i += 1
                if i == n or buf[i] == 10:
                    break
            s = i
            # Parse a wanted field from its first byte, then scan on to the field's
            # end: one pass over its bytes; the field is valid when both stop together.
            stop = -1
            if f == col_click:
                v, stop = _parse_uint_nb(buf, s, n, 1)
                c_click = v == 1
            elif f == col_price:
                v, stop = _parse_uint_nb(buf, s, n, _MAX_PRICE_DIGITS)
                c_price = v
            elif f == col_pctr:
                c_pctr, st, stop = _parse_float_nb(buf, s, n)
            i = max(stop, s)
            if tab_only:
                while i < n and buf[i] != 9 and buf[i] != 10:
                    i += 1
                e = i
                if e > s and buf[e - 1] == 13 and (i == n or buf[i] == 10):
                    e -= 1
                if f == 0 and e == s and (i == n or buf[i] == 10):
                    break  # an empty line
            else:
                while i < n and buf[i] != 32 and buf[i] != 9 and buf[i] != 13 and buf[i] != 10:
                    i += 1
                e = i
            if code == 0 and stop >= 0:
                if f == col_pctr:
                    if st == _NOT_A_NUMBER or stop != e:
                        code, bad_s, bad_e = _E_PCTR, s, e
                    elif st == _SLOW:
                        is_slow = True
                        bad_s, bad_e = s, e
                    elif not (0.0 <= c_pctr <= 1.0):
                        code, bad_s, bad_e = _E_PCTR_RANGE, s, e
                elif f == col_click:
                    if v < 0 or v > 1 or stop != e:
                        code, bad_s, bad_e = _E_CLICK, s, e
                elif v < 0 or stop != e:
                    code, bad_s, bad_e = _E_PRICE, s, e
            f += 1
            if tab_only:
                if i == n or buf[i] == 10:
                    break
                i += 1  # past the tab
        if f > 0:
            if f != n_fields:
                code = _E_FIELDS
            if code != 0:
                if err_code == 0:
                    err_code, err_line, err_fields, err_s, err_e = code, line, f, bad_s, bad_e
                    if not skip_bad:
                        break
                skipped += 1
            else:
                click[row] = c_click
                price[row] = c_price
                pctr[row] = c_pctr
                if is_slow:
                    if n_slow == slow.shape[0]:
                        grown = np.empty((2 * n_slow, 4), np.int64)
                        grown[:n_slow] = slow
                        slow = grown
                    slow[n_slow, 0] = row
                    slow[n_slow, 1] = line
                    slow[n_slow, 2] = bad_s
                    slow[n_slow, 3] = bad_e
                    n_slow += 1
                row += 1
        i += 1  # past the newline
        line += 1
    return (click[:row], price[:row], pctr[:row], slow[:n_slow], skipped,
            err_code, err_line, err_fields, err_s, err_e)


def read_bidlog(
    path: str | Path,
    fmt: str = "ipinyou-theta",
    *,
    skip_bad: bool = False,
    pctr_column: str = "pctr",
    pctr: float | None = None,
) -> BidLog:
    """Read a bid log into arrays.

    Args:
        path: the log file.
        fmt: "ipinyou-theta" or "ipinyou-log" (see the module docstring).
        skip_bad: count and skip malformed lines instead of failing on the first.
        pctr_column: ipinyou-log only: the header column holding pCTRs.
        pctr: ipinyou-log only: one pCTR for every request, instead of a column.

    Raises:
        InputError: the file cannot be read, has no requests, or (without skip_bad)
            has a malformed line; the message names the line and the problem.
    """
    name = str(path)
    if fmt not in FORMATS:
        raise InputError.single(name, "--format",
                                f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if pctr is not None and fmt != "ipinyou-log":
        raise InputError.single(name, "--pctr", "a constant pCTR applies to --format ipinyou-log only")
    if pctr is not None and not (0.0 <= pctr <= 1.0):
        raise InputError.single(name, "--pctr", f"must be in [0, 1], got {pctr}")
    try:
        # A regular file only (a FIFO or /dev/zero would never end); no size limit:
        # real logs are gigabytes.
        with open_regular(path) as f:
            buf = np.fromfile(f, dtype=np.uint8)
    except OSError as exc:
        raise InputError.single(name, "", f"cannot read: {exc.strerror or exc}") from None

    if fmt == "ipinyou-theta":
        names = THETA_FIELDS
        pos, first_line, tab_only = 0, 1, False
        col_click, col_price, col_pctr = 0, 1, 2
    else:
        names, pos = _log_header(name, buf)
        first_line, tab_only = 2, True
        col_click = names.index(LOG_CLICK_COLUMN)
        col_price = names.index(LOG_PRICE_COLUMN)
        if pctr is not None:
            col_pctr = -1
        elif pctr_column in names:
            col_pctr = names.index(pctr_column)
        else:
            raise InputError.single(
                name, "line 1",
                f"no {pctr_column!r} column in the header; name the pCTR column with "
                "--pctr-column or give one pCTR for every request with --pctr")

    (click, price, pctr_arr, slow, skipped, err_code, err_line, err_fields, err_s,
     err_e) = _parse_nb(buf, pos, first_line, tab_only, len(names), col_click, col_price,
                        col_pctr, skip_bad)
    problems = [(err_line, _problem(err_code, err_fields, names, buf[err_s:err_e]))] if err_code else []
    if slow.shape[0]:
        rows = slow[:, 0]
        pctr_arr[rows] = [float(buf[s:e].tobytes()) for s, e in slow[:, 2:]]
        out = ~((pctr_arr[rows] >= 0.0) & (pctr_arr[rows] <= 1.0))
        if out.any():
            line, s, e = (int(x) for x in slow[int(np.argmax(out)), 1:])
            problems.append((line, _problem(_E_PCTR_RANGE, len(names), names, buf[s:e])))
            keep = np.ones(click.shape[0], np.bool_)
            keep[rows[out]] = False
            click, price, pctr_arr = click[keep], price[keep], pctr_arr[keep]
            skipped += int(out.sum())
    # Without skip_bad the kernel stopped at its first problem, but a pCTR that float()
    # found out of range may sit on an earlier line: report the earliest.
    first_bad = min(problems, default=None)
    if first_bad and not skip_bad:
        raise InputError.single(name, f"line {first_bad[0]}", first_bad[1])
    if pctr is not None:
        pctr_arr[:] = pctr
    if click.shape[0] == 0:
        raise InputError.single(name, "", "no bid requests in the log"
                                + (f" ({skipped} malformed lines skipped)" if skipped else ""))
    first = f"line {first_bad[0]}: {first_bad[1]}" if first_bad else ""
    return BidLog(click, price, pctr_arr, int(skipped), first)


def _log_header(name: str, buf: np.ndarray) -> tuple[list[str], int]:
    """Column names of a make-ipinyou-data log and the byte offset of its first request."""
    end = _line_end_nb(buf, 0)
    names = buf[:end].tobytes().decode("utf-8", errors="replace").rstrip("\r").split("\t")
    missing = [c for c in (LOG_CLICK_COLUMN, LOG_PRICE_COLUMN) if c not in names]
    if missing:
        raise InputError.single(
            name, "line 1",
            f"header has no {' or '.join(repr(c) for c in missing)} column; expected the "
            "make-ipinyou-data header (click, weekday, hour, bidid, ..., payprice, ...)")
    return names, min(end + 1, buf.shape[0])


def _problem(code: int, fields: int, names: tuple[str, ...] | list[str], token: np.ndarray) -> str:
    """The message for a problem code found by the kernel."""
    text = token.tobytes().decode("utf-8", errors="replace")
    shown = repr(text if len(text) <= 40 else text[:40] + "...")
    if code == _E_FIELDS:
        expected = f"{len(names)} fields" + (f" ({' '.join(names)})" if len(names) <= 3 else "")
        return f"expected {expected}, found {fields}"
    if code == _E_CLICK:
        return f"click must be 0 or 1, got {shown}"
    if code == _E_PRICE:
        return (f"market price must be a non-negative integer of at most {_MAX_PRICE_DIGITS} digits, "
                f"got {shown}")
    if code == _E_PCTR:
        return f"pctr must be a decimal number, got {shown}"
    return f"pctr must be in [0, 1], got {shown}"
