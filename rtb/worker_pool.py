"""The local worker processes of sweeps, plans and searches: one pool per process, kept
from one batch of runs to the next.

A fresh worker's first run ends about 1.5 s later than a warm one's: importing numba
and rtb (0.8-0.9 s), then loading the cached kernels (0.5-0.6 s). For a minute of runs
that is little, but a sweep of eight one-second runs on two cores loses a fifth of its
second core to it, and a session that runs sweep after sweep (a script of plans, a
notebook) would pay it every time. So the pool outlives the Runner block that started
it: the next block asking for as many workers gets the same processes, kernels loaded.
It ends when this process ends (concurrent.futures joins idle workers at exit), when a
block asks for another number of workers and no block is using it, or when a block
leaves by an exception (Ctrl-C, SIGTERM, a failed run): then the runs in progress are
terminated, not waited for, and the next block starts new workers.

Workers are fresh ("spawn") processes, not forks of this one: a fork would inherit the
locks of this process's threads (a progress bar's timer, a Dask client) and each run
needs a core and its own memory anyway. Nor forks of a forkserver that loaded the
kernels (docs/performance.md): with two workers its start costs what a worker's does,
and a process that has run a simulation has native threads beside the main one
(numpy's OpenBLAS and one the run starts). Workers never outlive this process: on
Linux the kernel kills a worker when its parent dies (PR_SET_PDEATHSIG), elsewhere a
watchdog thread in each worker exits when its parent changes.

A worker keeps no state from one run to the next that a run could read: every run
builds its world from the scenario and the seed, a user's strategy module is imported
again when its file changed (dsp.custom), and the kernels are pure. So a report does
not depend on which process ran it, nor on what that process ran before.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

WATCHDOG_INTERVAL_S = 0.5
_PR_SET_PDEATHSIG = 1

# The process's shared pool, its number of workers and the Runner blocks using it.
_lock = threading.Lock()
_shared: ProcessPoolExecutor | None = None
_shared_size = 0
_users = 0


def _die_with_parent(parent: int) -> None:
    """A worker's initializer: end this worker when the process `parent` ends.

    Killing a sweep with SIGKILL (or SIGTERM between its handlers) must not leave
    workers running a minute-long run for nobody. The kernel's PDEATHSIG acts at once
    but only on Linux; the watchdog is the portable backstop.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog remains

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCHDOG_INTERVAL_S)
        os._exit(1)

    if os.getppid() != parent:  # died before prctl took effect
        os._exit(1)
    threading.Thread(target=watch, name="rtb-parent-watchdog", daemon=True).start()


def _new_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with_parent, initargs=(os.getpid(),))


def _broken(pool: ProcessPoolExecutor) -> bool:
    # A worker that died (killed, out of memory) breaks the whole pool for good.
    return bool(getattr(pool, "_broken", False))


def _terminate(pool: ProcessPoolExecutor) -> None:
    """End the pool without waiting for its runs in progress. SIGTERM to this process
    alone reaches no worker, so they are terminated here (_processes: the pool has no
    public handle on them)."""
    for process in list((pool._processes or {}).values()):
        process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _take(workers: int) -> tuple[ProcessPoolExecutor, bool]:
    """The shared pool of `workers` processes (started if need be) and True; or, while
    blocks use a shared pool of another size, a pool of this block's own and False."""
    global _shared, _shared_size, _users
    with _lock:
        if _shared is not None and (_broken(_shared) or (_shared_size != workers and _users == 0)):
            _shared.shutdown(wait=True)
            _shared = None
        if _shared is None:
            _shared, _shared_size = _new_pool(workers), workers
        if _shared_size == workers:
            _users += 1
            return _shared, True
    return _new_pool(workers), False


def _give_back(pool: ProcessPoolExecutor, shared: bool, failed: bool) -> None:
    global _shared, _users
    if shared:
        with _lock:
            _users -= 1
            if failed and _shared is pool:
                _shared = None
    if failed:
        _terminate(pool)
    elif not shared:
        pool.shutdown(wait=True)


@contextmanager
def lease(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of `workers` processes for one Runner block: the process's shared pool,
    which stays up after the block for the next one. Leaving the block by an exception
    terminates the runs in progress and that pool with them."""
    pool, shared = _take(workers)
    try:
        yield pool
    except BaseException:
        _give_back(pool, shared, failed=True)
        raise
    _give_back(pool, shared, failed=False)


def shutdown() -> None:
    """End the shared pool now, once its runs are done (it would end with this process):
    for a long-lived process that will run no more sweeps and wants the memory back."""
    global _shared
    with _lock:
        pool, _shared = _shared, None
    if pool is not None:
        pool.shutdown(wait=True)
