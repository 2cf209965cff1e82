"""Strategies that learn, against theory: first-price shading and the budget-constrained
value bidder (dsp/adaptive.py).

One market throughout, as in tests/test_pacing.py: a day of one slot (60,000
requests), a competing market bid on every request (lognormal, median 1, sigma 0.5),
no floor and no fees. The campaign wins when its bid is above the market's, so the
distribution of the competing bid is known: F(b) = P(market < b). A request's value
is v = pCTR x pCVR x value per conversion x 1000 (CPM), recorded here per request.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dsp.adaptive import GRID_POINTS, BudgetOrtbBid, Learners, ShadedBid, monotone_fit, value_cpm
from dsp.strategies import BidView, Feedback, from_spec
from rtb import simulate
from rtb.compare import with_strategy
from rtb.engine import Run
from rtb.errors import InputError
from rtb.market import build_market
from rtb.scenario import parse_scenario
from markets import ONE_SLOT_DAILY_REQUESTS, ONE_SLOT_MEDIAN_CPM, ONE_SLOT_SIGMA, one_slot_market
from rtb.strategy_spec import BudgetOrtbSpec, ShadedBidSpec, parse_strategy, short_form

DAILY_REQUESTS, MEDIAN_CPM, SIGMA = ONE_SLOT_DAILY_REQUESTS, ONE_SLOT_MEDIAN_CPM, ONE_SLOT_SIGMA
VALUE_PER_CONVERSION = 50.0
BUDGET = 20.0  # binding: bidding v on everything would spend about three times as much


def scenario(strategy: dict, auction: str, budget: float, duration: str = "1d") -> dict:
    return one_slot_market({"id": "c", "advertiser": "adv", "dsp": "dsp", "budget": budget,
                            "pacing": "asap", "strategy": strategy},
                           auction=auction, duration=duration, name="adaptive-theory",
                           value_per_conversion=VALUE_PER_CONVERSION)


class Recorder:
    """Wraps a strategy (an object, or a function of the view): records every request's
    value and each won impression's value and price."""

    def __init__(self, inner):
        self.inner, self.values, self.won_value, self.price = inner, [], [], []
        self._v = None

    def bid(self, view):
        self._v = value_cpm(view, VALUE_PER_CONVERSION)
        self.values.append(self._v)
        return self.inner(view) if callable(self.inner) else self.inner.bid(view)

    def observe(self, feedback):
        if self._v is not None and feedback.won is not None:
            self.won_value.append(self._v[feedback.won])
            self.price.append(feedback.price_cpm)
        self._v = None
        if not callable(self.inner):
            self.inner.observe(feedback)

    def totals(self) -> tuple[float, float]:
        """(value, cost) of the impressions won, currency units."""
        return (float(np.concatenate(self.won_value).sum()) / 1000,
                float(np.concatenate(self.price).sum()) / 1000)


def run(data: dict, strategy) -> tuple[dict, Recorder]:
    recorder = Recorder(strategy)
    report = simulate(parse_scenario(data, "adaptive.toml"), strategies={"c": recorder}).to_dict()
    return report, recorder


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def win_probability(b: np.ndarray) -> np.ndarray:
    """F(b): the lognormal market bid is below b."""
    return _normal_cdf((np.log(b) - math.log(MEDIAN_CPM)) / SIGMA)


def optimal_surplus(values: np.ndarray) -> float:
    """Sum over requests of max_b (v - b) F(b), currency units: the most any bidder who
    knows F can expect in first price, maximised on a grid of 0.2 % steps (the best b is
    below v; the surplus is flat at its maximum, so the grid loses about 1e-6 of it)."""
    grid = np.exp(np.linspace(math.log(1e-3), math.log(values.max()), 6_000))
    f = win_probability(grid)
    unique, counts = np.unique(np.round(values, 6), return_counts=True)
    best = np.empty(unique.size)
    for start in range(0, unique.size, 500):  # (v - b) F(b) over the grid, a block of values
        v = unique[start:start + 500, None]
        best[start:start + 500] = np.max((v - grid) * f, axis=1)
    return float((best * counts).sum()) / 1000


# ---- shading in first price ---------------------------------------------------------------

@pytest.fixture(scope="module")
def first_price_runs():
    data = scenario({"kind": "value"}, "first", budget=1e6)
    shaded = run(data, ShadedBid(VALUE_PER_CONVERSION, "first"))
    truthful = run(data, lambda view: value_cpm(view, VALUE_PER_CONVERSION))
    return shaded, truthful


def test_shading_earns_close_to_the_optimal_surplus(first_price_runs):
    (_, shaded), (_, truthful) = first_price_runs
    values = np.concatenate(shaded.values)
    assert values.size > 0.95 * DAILY_REQUESTS
    optimum = optimal_surplus(values)
    value, cost = shaded.totals()
    surplus = value - cost
    # The optimum is an expectation; the realised surplus's noise is far below 10 %.
    assert surplus >= 0.9 * optimum, (surplus, optimum)
    assert surplus <= 1.05 * optimum, (surplus, optimum)
    # Truthful bidding in first price pays its value: no surplus at all.
    t_value, t_cost = truthful.totals()
    assert abs(t_value - t_cost) < 0.01 * optimum
    assert surplus > 20 * abs(t_value - t_cost) + 0.5 * optimum


def fast_run(data: dict) -> tuple[dict, Learners]:
    """The scenario as written: its learning built-in in the exchange's fast path."""
    run_ = Run(parse_scenario(data, "adaptive.toml"))
    assert run_.exchange._learning.tolist() == [0]  # not a Python strategy
    return run_.finish().to_dict(), run_.state.learners


def test_the_fast_path_shades_as_the_class(first_price_runs):
    """A scenario's `shaded` runs in the exchange's fast path (dsp.adaptive.Learners, the
    numba bid pass): the same run, bit for bit, as the class (the reference, run here as
    a Python strategy), so the theory checks above hold for both."""
    (reference, recorder), _ = first_price_runs
    report, learners = fast_run(scenario("shaded", "first", budget=1e6))
    assert report == reference
    strategy = recorder.inner
    np.testing.assert_array_equal(learners.bids[0], strategy.bids)
    np.testing.assert_array_equal(learners.wins[0], strategy.wins)
    np.testing.assert_array_equal(learners.win_rate[0], strategy.win_rate())
    assert learners.placed[0] == strategy.placed > 50_000


def test_shading_learns_the_win_curve(first_price_runs):
    (_, shaded), _ = first_price_runs
    strategy = shaded.inner
    fitted = strategy.win_rate()
    true = win_probability(strategy.grid)
    # Where it bid often (the points it settled on), its fit is the market's curve.
    often = strategy.bids >= 200
    assert often.sum() >= 10
    assert np.abs(fitted[often] - true[often]).max() < 0.08


def test_shading_bids_truthfully_in_second_price():
    rng = np.random.default_rng(1)
    view = BidView(pctr=rng.uniform(0, 0.01, 50), pcvr=np.full(50, 0.05),
                   floor_cpm=np.zeros(50), uniform=rng.random(50))
    strategy = from_spec(ShadedBidSpec(kind="shaded"), VALUE_PER_CONVERSION, "second")
    np.testing.assert_allclose(strategy.bid(view), value_cpm(view, VALUE_PER_CONVERSION))
    assert isinstance(from_spec(ShadedBidSpec(kind="shaded"), 1.0, "first"), ShadedBid)


def test_shading_observes_only_its_own_tick():
    """Feedback of a tick it did not bid in (conversions settled later) teaches nothing."""
    strategy = ShadedBid(VALUE_PER_CONVERSION, "first", warmup=0, explore=0.0)
    view = BidView(pctr=np.full(4, 0.004), pcvr=np.full(4, 0.05), floor_cpm=np.zeros(4),
                   uniform=np.full(4, 0.5), tick_start_s=0.0, tick_end_s=60.0)
    bids = strategy.bid(view)
    assert np.all(bids > 0) and np.all(bids < 10.0)  # below v = 10 CPM
    empty = np.empty(0)
    strategy.observe(Feedback(empty, empty.astype(bool), 0, won=np.empty(0, dtype=np.int64),
                              tick_start_s=60.0, tick_end_s=120.0))
    assert strategy.bids.sum() == 0
    strategy.bid(view)
    strategy.observe(Feedback(bids[:1], np.zeros(1, bool), 1, won=np.array([2]),
                              tick_start_s=0.0, tick_end_s=60.0))
    assert strategy.bids.sum() == 4 and strategy.wins.sum() == 1


def test_monotone_fit():
    fit = monotone_fit(np.array([3.0, 1.0, 2.0, 8.0]), np.array([4.0, 4.0, 4.0, 10.0]))
    np.testing.assert_allclose(fit, [0.5, 0.5, 0.5, 0.8])
    assert monotone_fit(np.ones(GRID_POINTS), np.ones(GRID_POINTS)).shape == (GRID_POINTS,)


# ---- the budget-constrained value bidder --------------------------------------------------

def _spend_per_request(bid: float) -> float:
    """Expected spend (CPM) per request of a fixed bid, second price: E[p; p <= bid]."""
    mu = math.log(MEDIAN_CPM)
    return math.exp(mu + SIGMA**2 / 2) * float(_normal_cdf(
        np.array([(math.log(bid) - mu - SIGMA**2) / SIGMA]))[0])


@pytest.fixture(scope="module")
def fixed_bid_run():
    """A fixed bid that spends the budget over the day (in expectation), with the
    budget left out so that it spends at its own rate."""
    lo, hi = 0.01, 100.0
    target = BUDGET * 1000 / DAILY_REQUESTS
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if _spend_per_request(mid) < target else (lo, mid)
    bid = math.sqrt(lo * hi)
    return run(scenario({"kind": "fixed", "bid_cpm": bid}, "second", budget=1e6),
               lambda view: np.full(view.pctr.shape, bid))


@pytest.mark.parametrize("c", [None, 1.0])
def test_budget_ortb_spends_a_binding_budget_and_beats_a_fixed_bid(c, fixed_bid_run):
    report, recorder = run(scenario({"kind": "value"}, "second", BUDGET),
                           BudgetOrtbBid(VALUE_PER_CONVERSION, c=c))
    spend = report["campaigns"][0]["spend"]
    assert 0.98 * BUDGET <= spend <= BUDGET
    value, cost = recorder.totals()
    assert cost == pytest.approx(spend, abs=1e-4)
    # the scenario's budget_ortb (the exchange's fast path) runs as the class
    fast, learners = fast_run(scenario({"kind": "budget_ortb"} | ({} if c is None else {"c": c}),
                                       "second", BUDGET))
    assert fast == report
    assert learners.lam[0] == recorder.inner.lam
    # truthful bidding would spend far more: the budget binds
    values = np.concatenate(recorder.values)
    assert sum(map(_spend_per_request, values.tolist())) / 1000 > 1.5 * BUDGET
    _, fixed = fixed_bid_run
    fixed_value, fixed_cost = fixed.totals()
    assert fixed_cost == pytest.approx(BUDGET, rel=0.05)  # it spends the same
    assert value / cost > 1.1 * fixed_value / fixed_cost, (value / cost, fixed_value / fixed_cost)


def test_budget_ortb_lam_follows_the_spend():
    strategy = BudgetOrtbBid(VALUE_PER_CONVERSION, c=None, lam=1.0, step=0.5)
    view = BidView(pctr=np.full(3, 0.004), pcvr=np.full(3, 0.05), floor_cpm=np.zeros(3),
                   uniform=np.zeros(3), budget_left=10.0, daily_budget_left=math.inf,
                   day_left_s=86_400.0, flight_left_s=6000.0, tick_start_s=0.0, tick_end_s=60.0)
    np.testing.assert_allclose(strategy.bid(view), 10.0)  # v / lam, v = 10 CPM
    empty = np.empty(0)
    # target 10 x 60 / 6000 = 0.1: spending 0.4 (ahead) raises lam, nothing lowers it
    strategy.observe(Feedback(empty, empty.astype(bool), 400_000, won=np.empty(0, np.int64),
                              tick_start_s=0.0, tick_end_s=60.0))
    assert strategy.lam > 1.0
    high = strategy.lam
    for _ in range(30):  # spend and target are averages over 15 minutes: ticks of nothing
        strategy.bid(view)
        strategy.observe(Feedback(empty, empty.astype(bool), 0, won=np.empty(0, np.int64),
                                  tick_start_s=0.0, tick_end_s=60.0))
    assert strategy.lam < high


# ---- the vocabulary: scenarios, short form, rtb compare -------------------------------------

def test_specs_in_both_forms():
    spec = parse_strategy("shaded:explore=0.05,max_cpm=20", "strategy")
    assert spec == ShadedBidSpec(kind="shaded", explore=0.05, max_cpm=20.0)
    assert parse_strategy(short_form(spec), "strategy") == spec
    spec = parse_strategy('{ kind = "budget_ortb", c = 2.0 }', "strategy")
    assert spec == BudgetOrtbSpec(kind="budget_ortb", c=2.0)
    assert short_form(BudgetOrtbSpec(kind="budget_ortb")) == "budget_ortb:lam=1,step=0.5"
    with pytest.raises(InputError, match="unknown parameter of 'shaded'"):
        parse_strategy("shaded:shade=0.5", "strategy")
    with pytest.raises(InputError, match="explore"):
        parse_strategy("shaded:explore=2", "strategy")


def test_scenario_builds_them_with_the_exchanges_auction():
    for auction in ("first", "second"):
        market = build_market(parse_scenario(scenario("shaded", auction, 10.0), "a.toml"))
        strategy = market.campaigns.strategies[0]
        assert isinstance(strategy, ShadedBid) and strategy.first_price == (auction == "first")
    data = scenario("budget_ortb:c=1.5", "second", 10.0)
    strategy = build_market(parse_scenario(data, "a.toml")).campaigns.strategies[0]
    assert isinstance(strategy, BudgetOrtbBid) and strategy.c == 1.5


def test_usable_in_a_comparison():
    base = parse_scenario(scenario({"kind": "value"}, "first", 5.0, duration="3h"), "a.toml")
    spends = []
    for text in ("shaded", "budget_ortb", "value"):
        report = simulate(with_strategy(base, "c", text)).to_dict()
        spends.append(report["campaigns"][0]["spend"])
    assert all(s > 0 for s in spends) and len(set(spends)) == 3
