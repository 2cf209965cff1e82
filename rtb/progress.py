"""The progress bar of long commands: it comes up only for runs over a few seconds."""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from rtb.errors import printable

err = Console(stderr=True)


class LazyProgress:
    """A progress bar on stderr that appears only if a run lasts over a couple of seconds.

    Until the first tick reports, the bar says the run is being prepared: building the
    world and, on the first run after an install or upgrade, compiling the numba
    kernels (cached for later runs), which takes a while with no tick to show. A
    timer thread puts it up, so it shows while the main thread is still busy.
    """

    DELAY_S = 2.0
    PREPARING = "preparing (the first run also compiles the kernels)"

    def __init__(self, enabled: bool, description: str, console: Console | None = None):
        self.console = err if console is None else console
        self.enabled = enabled and self.console.is_terminal
        # Shown as written: a scenario name is neither markup nor control characters.
        self.description = escape(printable(description))
        self._started = time.monotonic()
        self._bar: Progress | None = None
        self._task = None
        self._closed = False
        self._lock = threading.Lock()  # the timer thread and the run's callbacks share the bar
        self._timer = threading.Timer(self.DELAY_S, self._on_delay)
        self._timer.daemon = True
        if self.enabled:
            self._timer.start()

    def _on_delay(self) -> None:
        with self._lock:
            self._show(self.PREPARING)

    def _show(self, description: str) -> None:
        """Put the bar up (the caller holds the lock), unless it is up or the run is over."""
        if self._bar is None and not self._closed:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TaskProgressColumn(), TimeRemainingColumn(),
                                 console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(description, total=1.0)

    def __call__(self, fraction: float) -> None:
        if not self.enabled:
            return
        with self._lock:
            if self._bar is None and time.monotonic() - self._started >= self.DELAY_S:
                self._show(self.description)
            if self._bar is not None:
                self._bar.update(self._task, completed=fraction, description=self.description)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._closed = True
            if self._bar is not None:
                self._bar.stop()
                self._bar = None
