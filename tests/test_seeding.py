"""Named random streams: a stream's draws depend only on the root seed and its name,
never on which other streams exist, their creation order, or Python's hash salt."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from rtb.seeding import name_key, stream, unit_fraction


def test_same_seed_and_name_same_draws():
    np.testing.assert_array_equal(stream(7, "ssp/traffic").random(100),
                                  stream(7, "ssp/traffic").random(100))


def test_names_and_seeds_separate_streams():
    a = stream(7, "ssp/traffic").random(100)
    assert not np.array_equal(a, stream(7, "ssp/market").random(100))
    assert not np.array_equal(a, stream(8, "ssp/traffic").random(100))
    # Not merely shifted copies of one another either.
    b = stream(7, "ssp/market").random(1000)
    assert abs(np.corrcoef(stream(7, "ssp/traffic").random(1000), b)[0, 1]) < 0.15


def test_independent_of_creation_order_and_other_streams():
    first = stream(3, "dmp/users")
    for name in ("a", "b", "campaign/x"):
        stream(3, name).random(10)
    late = stream(3, "dmp/users")
    np.testing.assert_array_equal(first.random(50), late.random(50))


def test_name_key_is_64_bit_and_distinct():
    keys = {name_key(f"campaign/{i}") for i in range(1000)}
    assert len(keys) == 1000
    assert all(0 <= k < 2**64 for k in keys)


def test_streams_do_not_depend_on_python_hash_seed():
    code = ("from rtb.seeding import name_key, stream; "
            "print(name_key('dmp/users'), stream(5, 'dmp/users').integers(0, 2**62))")
    outputs = set()
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, check=True)
        outputs.add(proc.stdout.strip())
    here = f"{name_key('dmp/users')} {stream(5, 'dmp/users').integers(0, 2**62)}"
    assert outputs == {here}


def test_unit_fraction():
    values = [unit_fraction(f"campaign/{i}") for i in range(2000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert unit_fraction("campaign/a") == unit_fraction("campaign/a")
    assert len(set(values)) == 2000
    # Spread over [0, 1): each tenth holds about a tenth (5 standard errors).
    counts = np.bincount((np.array(values) * 10).astype(int), minlength=10)
    assert (np.abs(counts - 200) <= 5 * np.sqrt(2000 * 0.1 * 0.9)).all()
