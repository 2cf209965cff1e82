"""Fuzzing the scenario validator: whatever a file holds, parse_scenario returns a Scenario
or raises InputError, and what it accepts runs to the end.

The quickstart and a tiny scenario are mutated at random paths with hostile values
(huge, tiny, negative, NaN/inf, wrong types, long strings, control characters, deep
nesting, empty lists, duplicates). Every crasher found so far is an explicit case in
tests/test_hostile_scenarios.py.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile_base import HOSTILE_FLOATS, HOSTILE_TEXT, PLAUSIBLE, apply, nested, paths, tiny_scenario
from rtb.errors import InputError
from rtb.scenario import Scenario, parse_scenario, worst_case_requests

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = tomllib.loads((REPO / "scenarios" / "quickstart.toml").read_text())
BASES = {"quickstart": QUICKSTART, "tiny": tiny_scenario()}
BASE_PATHS = {name: paths(data) for name, data in BASES.items()}
OPS = ("set", "set", "set", "delete", "extra", "duplicate", "append")

scalars = st.one_of(
    st.sampled_from(HOSTILE_FLOATS),
    st.sampled_from(HOSTILE_TEXT),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=30),
    st.booleans(),
    st.none(),
)
hostile = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(st.text(max_size=8), scalars, max_size=3),
    st.builds(nested, st.integers(min_value=1, max_value=200), scalars),  # files: 64 at most
    # containers built afresh for each example: a mutation may append to them
    st.sampled_from([lambda: [], dict, lambda: [[]], lambda: [{}], lambda: {"": None}]).map(
        lambda make: make()),
)


def check(data: dict, base_dir: Path = REPO / "scenarios") -> Scenario | None:
    """parse_scenario's contract: a Scenario or an InputError whose lines are printable."""
    try:
        return parse_scenario(data, "fuzz.toml", base_dir=base_dir)
    except InputError as exc:
        for line in exc.lines():
            assert isinstance(line, str)
            assert not any(ord(ch) < 32 or 0x7f <= ord(ch) < 0xa0 for ch in line), repr(line)
        return None


@settings(max_examples=2_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(base=st.sampled_from(sorted(BASES)), data=st.data())
def test_parse_returns_a_scenario_or_an_input_error(base, data):
    scenario = copy.deepcopy(BASES[base])
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        options = paths(scenario) or [("name",)]
        path = data.draw(st.sampled_from(options))
        apply(scenario, path, data.draw(st.sampled_from(OPS)), data.draw(hostile))
    check(scenario)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(BASE_PATHS["tiny"]), value=st.sampled_from(PLAUSIBLE + HOSTILE_FLOATS))
def test_top_level_shapes(path, value):
    check(apply(tiny_scenario(), path, "set", copy.deepcopy(value)))


# ---- mutants that validate, simulated to the end under a time limit ------------------------

N_SIMULATED = 30
RUN_MUTANTS = """
import json, sys
from rtb.engine import simulate
from rtb.scenario import parse_scenario
for i, data in enumerate(json.load(open(sys.argv[1]))):
    report = simulate(parse_scenario(data, f"mutant-{i}")).to_dict()
    ledger = report["ledger"]
    assert ledger["imbalance_micros"] == 0, (i, ledger)
    assert all(0 <= v < 9.2e12 for k, v in ledger.items() if k != "imbalance_micros"), (i, ledger)
    print(i, report["exchange"]["requests"], flush=True)
"""


def small_enough(spec: Scenario) -> bool:
    """A mutant the batch may simulate: a few seconds at most."""
    return (spec.simulation.duration <= 2 * 3600 and spec.simulation.duration / spec.simulation.tick <= 2_000
            and worst_case_requests(spec) <= 50_000 and spec.dmp.users <= 10_000)


def valid_mutants(n: int, seed: int = 20261127) -> list[dict]:
    """The first n mutants of the tiny scenario (1 to 3 mutations at the bounds) that validate."""
    rng = np.random.default_rng(seed)
    values = PLAUSIBLE + HOSTILE_FLOATS
    found = []
    for _ in range(20_000):
        data = tiny_scenario()
        for _ in range(rng.integers(1, 4)):
            where = paths(data)
            apply(data, where[rng.integers(len(where))], OPS[rng.integers(len(OPS))],
                  copy.deepcopy(values[rng.integers(len(values))]))
        spec = check(data)
        if spec is not None and small_enough(spec) and data != tiny_scenario():
            found.append(data)
            if len(found) == n:
                break
    return found


def test_valid_mutants_run_to_the_end(tmp_path):
    mutants = valid_mutants(N_SIMULATED)
    assert len(mutants) == N_SIMULATED
    batch = tmp_path / "mutants.json"
    batch.write_text(json.dumps(mutants))
    # A subprocess with a timeout: a hang fails the test instead of stalling the suite.
    proc = subprocess.run([sys.executable, "-c", RUN_MUTANTS, str(batch)], capture_output=True,
                          text=True, timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stdout.split("\n")) > N_SIMULATED
