"""Named random streams from one root seed: a stream's draws depend only on its name."""

from __future__ import annotations

import hashlib

import numpy as np


def name_key(name: str) -> int:
    """Stable 64-bit key of a stream name (never Python's salted hash())."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def stream(root_seed: int, name: str) -> np.random.Generator:
    """The generator for `name` under `root_seed`; adding other streams never moves it."""
    seq = np.random.SeedSequence(entropy=root_seed, spawn_key=(name_key(name),))
    return np.random.Generator(np.random.PCG64(seq))


def unit_fraction(name: str) -> float:
    """A fixed number in [0, 1) derived from a name, e.g. to decorrelate shared uniforms."""
    return name_key(name) / 2.0**64
