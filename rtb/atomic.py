"""Output files written atomically: a temporary file beside the target, renamed onto it when done.

Every file the project writes (reports, summaries, logs, pictures) goes through here,
so an interrupted or failed run never leaves a half-written file under the name asked
for, and every finished file gets the mode a plain open() would have given it.
"""

from __future__ import annotations

import os
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


class AtomicFile:
    """A binary file that appears under `path` only when commit() succeeds.

    It is written as a hidden temporary file in the same folder (so the rename is
    atomic); abort() removes it. mkstemp makes it 0600: it gets FILE_MODE (0666 less
    the umask), so a finished file is as readable as any other. As a context manager,
    it commits when the block ends normally and aborts when it raises.
    """

    def __init__(self, path: str | Path, buffering: int = -1):
        self.path = Path(path)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
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
        """Remove the temporary file; the target is left as it was."""
        self.file.close()
        with suppress(FileNotFoundError):
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
