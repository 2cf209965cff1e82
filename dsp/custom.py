"""Strategies users write: a class named "module:Class", imported, checked, built per run.

A scenario names the class (rtb.strategy_spec.PythonStrategySpec); the module is looked
for in the scenario file's folder first, then on the Python path. Reading the scenario
imports it and builds one instance, so every mistake a user can make before a run (no
such module, an import error, no such class, no bid or observe, params the constructor
refuses) is reported then, with the field's path. Every run builds its own instance, so
runs (seeds, sweeps, workers) never share a strategy's state. Every tick the bids are
checked: an array of one finite, non-negative CPM (or NaN, no bid) per request.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

import numpy as np

from rtb.errors import StrategyError

# The source each module imported from a scenario's folder had then, by file: a module
# whose file changed since (or one of the same name from another folder) is imported again.
_imported: dict[str, str] = {}


class ClassProblem(ValueError):
    """The class a spec names cannot be used; the message says why (read-time check)."""


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _forget(top: str) -> None:
    for key in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
        del sys.modules[key]


def _is_current(module, folder: str) -> bool:
    file = getattr(module, "__file__", None)
    if file is None or not Path(file).resolve().is_relative_to(folder):
        return False
    try:
        return _imported.get(file) == file_sha256(file)
    except OSError:
        return False


def import_module(name: str, folder: str | None):
    """The module `name`, from `folder` if it is there, else from the Python path.

    From the folder, the module is imported again when its file changed since it was
    last imported or a module of the same name came from elsewhere; the folder is added
    to the end of sys.path so that the module's own imports of files beside it work
    (in a sweep's worker processes too: they build the strategy through here).
    """
    top = name.partition(".")[0]
    spec = None
    if folder is not None:
        importlib.invalidate_caches()  # a file created since the last look
        spec = importlib.machinery.PathFinder.find_spec(top, [folder])
    if spec is not None:
        if folder not in sys.path:
            sys.path.append(folder)
        cached = sys.modules.get(name)
        if cached is not None and not _is_current(cached, folder):
            _forget(top)
        if top not in sys.modules:
            module = importlib.util.module_from_spec(spec)
            sys.modules[top] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                _forget(top)
                raise
    module = importlib.import_module(name)
    file = getattr(module, "__file__", None)
    if spec is not None and file is not None:
        _imported[file] = file_sha256(file)
    return module


def load_class(ref: str, folder: str | None) -> type:
    """The class `ref` ("module:Class") names; ClassProblem says what is wrong."""
    module_name, _, class_name = ref.partition(":")
    try:
        module = import_module(module_name, folder)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            where = f"in {folder} or" if folder is not None else "on"
            raise ClassProblem(f"no module {module_name!r} {where} the Python path") from None
        raise ClassProblem(f"importing {module_name!r} failed: ModuleNotFoundError: {exc}") from None
    except Exception as exc:  # a user's module may raise anything while it loads
        raise ClassProblem(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    try:
        cls = getattr(module, class_name)
    except AttributeError:
        raise ClassProblem(f"module {module_name!r} ({getattr(module, '__file__', None)}) has no"
                           f" {class_name!r}") from None
    if not isinstance(cls, type):
        raise ClassProblem(f"{ref} is a {type(cls).__name__}, not a class")
    missing = [name for name in ("bid", "observe") if not callable(getattr(cls, name, None))]
    if missing:
        raise ClassProblem(f"class {ref} has no {' and no '.join(missing)} method; a strategy"
                           " needs bid(view) and observe(feedback)")
    return cls


def construct(cls: type, ref: str, params: dict) -> object:
    """cls(**params); ClassProblem when the constructor refuses them."""
    try:
        return cls(**params)
    except Exception as exc:  # a TypeError for an unknown or missing parameter, or the class's own
        raise ClassProblem(f"{ref}(**params) failed: {type(exc).__name__}: {exc}") from None


def source_sha256(ref: str, folder: str | None) -> str | None:
    """SHA-256 of the file of the module that defines `ref`'s class (None if it has none)."""
    try:
        module = import_module(ref.partition(":")[0], folder)
    except Exception as exc:  # the file changed since the scenario was read
        raise StrategyError(f"{ref}: importing its module failed: {type(exc).__name__}: {exc}") from None
    file = getattr(module, "__file__", None)
    return None if file is None else file_sha256(file)


def build(ref: str, params: dict, folder: str | None) -> "Checked":
    """A fresh instance of the class, its bids checked every tick."""
    try:
        return Checked(construct(load_class(ref, folder), ref, params), ref)
    except ClassProblem as exc:  # the file changed since the scenario was read
        raise StrategyError(str(exc)) from None


def check_protocol(strategy: object, name: str) -> None:
    """TypeError unless `strategy` has bid() and observe() (rtb.simulate's strategies=)."""
    missing = [m for m in ("bid", "observe") if not callable(getattr(strategy, m, None))]
    if missing:
        raise TypeError(f"strategies[{name!r}]: {type(strategy).__name__} has no"
                        f" {' and no '.join(missing)} method; a strategy needs bid(view) and"
                        " observe(feedback)")


class Checked:
    """A user's strategy, its bids checked: f8[n] of CPMs >= 0, finite or NaN (no bid).

    Has no formula(), so the exchange always calls bid() (dsp.bidding)."""

    __slots__ = ("strategy", "name")

    def __init__(self, strategy: object, name: str):
        self.strategy, self.name = strategy, name

    def bid(self, view) -> np.ndarray:
        return checked_bids(self.strategy.bid(view), len(view.floor_cpm), self.name)

    def observe(self, feedback) -> None:
        self.strategy.observe(feedback)


def checked_bids(bids: object, n: int, name: str) -> np.ndarray:
    """bids as f8[n]; StrategyError naming the class and the problem otherwise."""
    if not isinstance(bids, np.ndarray):
        raise StrategyError(f"{name}.bid() returned a {type(bids).__name__}, not a numpy array"
                            f" of {n} CPM bids")
    if bids.shape != (n,):
        raise StrategyError(f"{name}.bid() returned an array of shape {bids.shape} for {n}"
                            f" requests; expected ({n},)")
    if bids.dtype.kind not in "fiu":
        raise StrategyError(f"{name}.bid() returned an array of {bids.dtype}; expected float CPMs")
    bids = bids.astype(np.float64, copy=False)
    bad = np.isinf(bids) | (bids < 0)
    if bad.any():
        first = int(np.argmax(bad))
        raise StrategyError(f"{name}.bid() returned {int(bad.sum())} bid(s) that are negative or"
                            f" infinite (request {first}: {float(bids[first])!r}); a bid is a"
                            " CPM >= 0, or NaN for no bid")
    return bids
