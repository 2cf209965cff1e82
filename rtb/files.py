"""Input files read so that no file can hang or crash a parser: regular files only, sizes and nesting bounded.

Every refusal is an InputError naming the file (exit code 2). An OSError of the open
itself (no such file, permission denied) is left to the caller, which words it.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path
from typing import BinaryIO

from rtb.errors import InputError

# Scenarios, market histograms and iPinYou info files are kilobytes; the largest
# histogram one could sensibly write (a million bins) is about 10 MB of JSON. 64 MiB
# is far above any real one and far below what would exhaust a machine's memory.
MAX_INPUT_BYTES = 64 << 20
# A scenario nests about 5 levels deep. Python's parsers recurse per level (tomllib
# in Python, json in C): thousands of '[' end in RecursionError or worse, so deeper
# input is refused before a parser sees it.
MAX_NESTING = 64

class DamagedFile(UserWarning):
    """A file the project wrote earlier does not parse; it is removed and made again
    (a sweep's run report: rtb.sweep)."""


_KIND = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a pipe (FIFO)", stat.S_IFCHR: "a device",
         stat.S_IFBLK: "a device", stat.S_IFSOCK: "a socket"}


def open_regular(path: str | Path) -> BinaryIO:
    """Open `path` for reading if it is a regular file (a symlink to one is fine).

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer;
    fstat on the open descriptor then decides, so the file checked is the file read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KIND.get(stat.S_IFMT(mode), "not a regular file")
            raise InputError.single(str(path), "", f"is {kind}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input(path: str | Path, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; InputError otherwise."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise InputError.single(str(path), "", _too_large(size, limit))
        data = f.read(limit + 1)  # the file may have grown since fstat
    if len(data) > limit:
        raise InputError.single(str(path), "", _too_large(len(data), limit))
    return data


def _too_large(size: int, limit: int) -> str:
    return f"is too large ({size:,} bytes; the limit is {limit >> 20} MiB)"


def check_nesting(raw: bytes, file: str, limit: int = MAX_NESTING) -> None:
    """Refuse JSON or TOML text whose brackets and braces nest deeper than `limit`.

    A cheap over-estimate: brackets inside strings count too, so only text with
    dozens of unclosed brackets in its strings could be refused wrongly (closing ones
    there only lower the count, and the callers still catch RecursionError). Text with
    few opening brackets (every real scenario) is passed by two bytes.count(); other
    text is scanned in 1 MiB chunks, about 0.6 s for 64 MiB.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    import numpy as np  # only here: rtb.files is imported by commands that start fast

    step_of = np.zeros(256, np.int8)
    step_of[[ord("["), ord("{")]] = 1
    step_of[[ord("]"), ord("}")]] = -1
    depth = 0
    for start in range(0, len(raw), _CHUNK):
        b = np.frombuffer(raw, np.uint8, count=min(_CHUNK, len(raw) - start), offset=start)
        step = step_of[b]
        running = np.cumsum(step, dtype=np.int64) + depth
        if int(running.max()) > limit:
            raise InputError.single(file, "", f"nested more than {limit} levels deep")
        depth = int(running[-1])


_CHUNK = 1 << 20


def read_document(path: str | Path) -> object:
    """A TOML file (JSON if it ends in .json) decoded, read as read_input() reads: every
    problem, a missing file included, an InputError naming the file."""
    path = Path(path)
    file = str(path)
    try:
        raw = read_input(path)
    except FileNotFoundError:
        raise InputError.single(file, "", "no such file") from None
    except OSError as exc:
        raise InputError.single(file, "", f"cannot read: {exc.strerror}") from None
    check_nesting(raw, file)
    try:
        if path.suffix.lower() == ".json":
            return json.loads(raw)
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError.single(file, "", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError.single(file, "", f"invalid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError.single(file, "", f"invalid JSON: {exc.msg} at line {exc.lineno}"
                                f" column {exc.colno}") from None
    except RecursionError:  # check_nesting over-estimates depth: a backstop only
        raise InputError.single(file, "", "nested too deep") from None
