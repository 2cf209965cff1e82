"""Output files written atomically: a temporary file beside the target, renamed onto it when done.

Every file the project writes (reports, summaries, logs, pictures) goes through here,
so an interrupted or failed run never leaves a half-written file under the name asked
for, and every finished file gets the mode a plain open() would have given it.

A temporary file is named `.NAME.rtbtmp-PID-RANDOM`: a run killed with SIGKILL (or a
power cut) cannot remove its own, so each command, before writing, removes those beside
its outputs whose PID is no longer a running process (remove_leftovers).
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Self


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import, before any thread could create files meanwhile.
FILE_MODE = 0o666 & ~_current_umask()


TMP_MARK = ".rtbtmp-"
_LEFTOVER = re.compile(r"^\..+\.rtbtmp-(\d+)-[A-Za-z0-9_]+$")


def temp_prefix(path: Path) -> str:
    """The start of a temporary file's name for `path`; mkstemp adds the random part."""
    return f".{path.name}{TMP_MARK}{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Remove the temporary files of dead rtb processes from `folder`; return them.

    A PID reused by an unrelated process keeps its file until that process ends:
    never a live run's file removed. Files that cannot be removed are left alone.
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = _LEFTOVER.match(name)
        if match and not _alive(int(match.group(1))):
            path = Path(folder) / name
            with suppress(OSError):
                os.unlink(path)
                removed.append(path)
    return removed


class AtomicFile:
    """A binary file that appears under `path` only when commit() succeeds.

    It is written as a hidden temporary file in the same folder (so the rename is
    atomic); abort() removes it. mkstemp makes it 0600: it gets FILE_MODE (0666 less
    the umask), so a finished file is as readable as any other. As a context manager,
    it commits when the block ends normally and aborts when it raises.
    """

    def __init__(self, path: str | Path, buffering: int = -1):
        self.path = Path(path)
        if self.path.is_dir():  # else found only by the rename, after all the work
            raise IsADirectoryError(21, "Is a directory", str(self.path))
        fd, self.tmp = tempfile.mkstemp(prefix=temp_prefix(self.path), dir=self.path.parent)
        try:
            os.fchmod(fd, FILE_MODE)
            self.file = os.fdopen(fd, "wb", buffering=buffering)
        except BaseException:
            os.close(fd)
            os.unlink(self.tmp)
            raise

    def commit(self) -> None:
        """Flush to disk and rename into place."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Remove the temporary file; the target is left as it was.

        Never raises: it runs while another error (a full disk, Ctrl-C) is on its way
        up, and that one is the one to report. Closing may fail flushing to a full
        disk; a file that cannot be removed is left for remove_leftovers().
        """
        with suppress(OSError):
            self.file.close()
        with suppress(OSError):
            os.unlink(self.tmp)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through an AtomicFile: never a half-written file."""
    with AtomicFile(path) as out:
        out.file.write(data)
