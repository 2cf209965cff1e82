"""The rules every run obeys, on 200 tiny random markets (tests/markets.py).

Each market is a few hours of a few hundred users and five campaigns, with budgets,
daily budgets across UTC midnight, calendar and rolling caps, flights, targeting, floors
and first or second price drawn at random; a run takes about a tenth of a second. From
each run's report and impression log: spend within the total and every UTC day's budget
to the micro, no user over a cap in any window (calendar and rolling), prices at or
above floors and at most the bid (second price), the ledger balanced to the micro, the
counts and derived metrics consistent. Every tenth market runs twice: the same bytes.
"""

from __future__ import annotations

import pytest
from markets import check_all, random_scenario, run_scenario

from rtb import simulate
from rtb.scenario import parse_scenario

N_MARKETS = 200
SEED_BASE = 10_000  # away from test_simulation's seeds 0-4
SAME_BYTES_EVERY = 10


@pytest.mark.parametrize("seed", range(SEED_BASE, SEED_BASE + N_MARKETS))
def test_every_rule_holds_on_a_random_market(seed, tmp_path):
    spec = parse_scenario(random_scenario(seed, small=True), f"random-{seed}.toml")
    run = run_scenario(spec, tmp_path / "impressions.csv")
    check_all(run)
    if seed % SAME_BYTES_EVERY == 0:
        again = simulate(spec, log_path=tmp_path / "again.csv")
        assert again.to_dict() == run.report
        assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "impressions.csv").read_bytes()


def test_the_markets_bind_budgets_caps_and_floors():
    """The rules above are exercised: across a sample of the markets, campaigns run out
    of budget, meet caps and floors and lose to the market."""
    bound = {"out_of_budget": 0, "frequency_capped": 0, "below_floor": 0, "lost_to_market": 0}
    for seed in range(SEED_BASE, SEED_BASE + 12):
        report = simulate(parse_scenario(random_scenario(seed, small=True), "r.toml")).to_dict()
        for c in report["campaigns"]:
            for k in bound:
                bound[k] += c["bid_outcomes"][k]
    assert all(v > 0 for v in bound.values()), bound
