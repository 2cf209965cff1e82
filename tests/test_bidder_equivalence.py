"""The same strategy in-process and over OpenRTB (the reference bidder, `rtb bidder`)
buys the same impressions at the same prices: the wire loses nothing a strategy reads.

The markets are tests/markets.py's random ones (budgets and daily budgets that run
out, caps, flights, pacing, first and second price); dsp-1 is made an external bidder
serving the strategy its campaigns bid with in-process. What may differ is only what
the exchange never sends or takes: a campaign's bids on requests it may not bid on
(counted as not_targeted in-process) and bids it could never pay (dropped before the
auction as over_budget over the wire; in-process they reach the auction, where they
count as out_of_budget, lost to a higher bid or to the market, and can show a floor
hit), so those counts.
"""

from __future__ import annotations

import orjson
import pytest

from rtb import load_scenario, simulate
from rtb.bidder_server import serve_in_thread
from tests.markets import random_scenario

# Everything a campaign bought and paid: compared to the micro.
DELIVERY = ("spend", "media_cost", "data_cost", "fees", "impressions", "reach", "clicks",
            "conversions", "incremental_conversions")

STRATEGIES = {
    "linear": ({"kind": "linear", "base_cpm": 2.5, "avg_ctr": 0.002}, "linear:base_cpm=2.5,avg_ctr=0.002"),
    "value": ({"kind": "value", "shading": 1.3}, "value:shading=1.3"),
    "python": ({"kind": "python", "class": "flat_share:ValueShare", "params": {"value": 90.0}},
               "python:class=flat_share:ValueShare,value=90.0"),
}

PYTHON_CLASS = '''
import numpy as np

class ValueShare:
    """The expected value at `value` per conversion, no bid under the floor; learns nothing."""
    def __init__(self, value):
        self.per_value = value * 1000.0
    def bid(self, view):
        bids = view.pctr * view.pcvr * self.per_value
        bids[bids < view.floor_cpm] = np.nan
        return bids
    def observe(self, feedback):
        pass
'''


def _scenarios(seed: int, strategy: dict, url: str, folder) -> tuple:
    data = random_scenario(seed, small=True)
    for camp in data["campaigns"]:
        if camp["dsp"] == "dsp-1":
            camp["strategy"] = strategy
    inside = folder / "inside.json"
    inside.write_bytes(orjson.dumps(data))
    for camp in data["campaigns"]:
        if camp["dsp"] == "dsp-1":
            del camp["strategy"]
    data["dsps"][1].update(endpoint=url, latency_spread=0.0)  # 20 ms always: no timeout
    outside = folder / "outside.json"
    outside.write_bytes(orjson.dumps(data))
    return load_scenario(inside), load_scenario(outside)


@pytest.mark.parametrize("kind", sorted(STRATEGIES))
@pytest.mark.parametrize("seed", [2, 5])
def test_the_reference_bidder_buys_what_the_strategy_buys_in_process(kind, seed, tmp_path):
    (tmp_path / "flat_share.py").write_text(PYTHON_CLASS)
    spec, text = STRATEGIES[kind]
    url, stop = serve_in_thread(text, base_dir=tmp_path)
    try:
        inside, outside = _scenarios(seed, spec, url, tmp_path)
        here, there = simulate(inside).to_dict(), simulate(outside).to_dict()
    finally:
        stop()
    bidder = there["bidders"][0]
    assert bidder["requests"] > 0 and bidder["bids"] > 0
    assert sum(n for name, n in bidder["faults"].items() if name != "over_budget") == 0
    external = {c["id"] for c in there["campaigns"] if c["dsp"] == "dsp-1"}
    assert any(c["impressions"] for c in there["campaigns"] if c["id"] in external)
    for a, b in zip(here["campaigns"], there["campaigns"]):
        assert {k: a[k] for k in DELIVERY} == {k: b[k] for k in DELIVERY}, a["id"]
        outcomes = set(a["bid_outcomes"]) - {"not_targeted", "out_of_budget", "lost_to_higher_bid",
                                             "lost_to_market"}
        if a["id"] in external:  # what the exchange sends is bid on alike
            assert {k: a["bid_outcomes"][k] for k in outcomes} == \
                   {k: b["bid_outcomes"][k] for k in outcomes}, a["id"]
        else:
            assert a == b
    for key in ("totals", "exchange", "ledger"):
        assert here[key] == there[key]
    # A bid dropped as over_budget no longer shows the floor a hit (in-process it does).
    drop = lambda pubs: [{k: v for k, v in p.items() if k != "floor_hits"} for p in pubs]  # noqa: E731
    assert drop(here["publishers"]) == drop(there["publishers"])
