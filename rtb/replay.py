"""Bid-log replay under the standard iPinYou protocol: episodes, budgets, integer bids, one kernel.

The protocol (Zhang et al. 2014; Cai et al. 2017, as in han-cai/rlb-dp): the log is cut
into consecutive episodes of N requests; each episode gets the budget
B = int(cost_train / imp_train * c0 * N); the strategy's bid, rounded down to an
integer, is capped at 300 and at the episode's remaining budget; a bid wins when it
is >= the market price (so ties win) and pays the market price. The strategies are
the ones in dsp.strategies, the same code the simulation bids with; only the integer
rounding and the caps are the protocol's. Money stays in integer sums of market
prices (the log's CPM unit) until the report divides by 1000.

A strategy that learns (dsp.strategies.learns: its observe() may do something, e.g. a
user's class) is fed in chunks of at most `chunk` requests, never across an episode's
end; after each chunk observe() gets what it won there (docs/replay.md, "Strategies that
learn"). A stateless one bids on the whole log at once: chunking could not change a bid.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import orjson
from numba import njit

from dsp.strategies import BidView, Feedback, Strategy, from_spec, learns
from rtb.atomic import write_atomic
from rtb.bidlog import BidLog
from rtb.errors import InputError
from rtb.files import check_nesting, read_input
from rtb.seeding import stream
from rtb.strategy_spec import (KINDS, PARAM_ALIASES, AnyStrategySpec, DeprecatedSpelling,
                               LinearBidSpec, McpcBidSpec, PythonStrategySpec, RandomBidSpec,
                               parse_strategy, short_form, strategy_data)

MAX_BID = 300  # the protocol's bid cap: the highest iPinYou market price, fen CPM
NO_BID = -1  # an integer bid that wins nothing (every market price is >= 0)
# Bounds that keep the kernel's int64 arithmetic exact (`--episode 1e18` or a c0 of
# 1e18 used to overflow inside numba): an episode longer than any log, c0 far above
# the protocol's 1/2 to 1/32, a budget far above MAX_BID times the longest episode.
MAX_EPISODE = 1 << 40
MAX_BUDGET_FRACTION = 1e6
MAX_EPISODE_BUDGET = 10**18
PARTIAL_EPISODES = ("proportional", "drop", "full")
RESULT_KEYS = ("auctions", "impressions", "clicks", "cost", "win_rate", "cpm", "ecpc",
               "strategy", "episode", "budget_fraction")
DEFAULT_CHUNK = 1000  # requests per chunk for a strategy that learns (at most the episode)
MAX_CHUNK = MAX_EPISODE

TUNABLE: dict[str, tuple[str, ...]] = {"linear": ("base_cpm",)}  # what --tune can search, per kind
SPEC_FIELD = "--strategy"


@dataclass(frozen=True)
class CampaignInfo:
    """The training-period totals the protocol derives budgets and strategy parameters from."""

    imp_train: int
    clk_train: int
    cost_train: int  # sum of market prices of the training impressions, fen CPM

    @property
    def cpm(self) -> float:
        """Average market price per impression (the budget's base), in the log's CPM unit."""
        return self.cost_train / self.imp_train

    @property
    def avg_ctr(self) -> float:
        return self.clk_train / self.imp_train

    @property
    def cpc(self) -> float:
        """Training cost per click in the log's CPM unit (i.e. 1000 x the money per click)."""
        return self.cost_train / self.clk_train


def load_info(path: str | Path) -> CampaignInfo:
    """Read imp_train, clk_train and cost_train from an iPinYou `<campaign>.info.json`."""
    name = str(path)
    try:
        raw = read_input(path)  # a regular file of at most 64 MiB (rtb.files)
        check_nesting(raw, name)  # orjson stops at 1024 levels itself; this is sooner
        data = orjson.loads(raw)
    except OSError as exc:
        raise InputError.single(name, "", f"cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise InputError.single(name, "", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError.single(name, "", "expected a JSON object")
    problems: list[tuple[str, str]] = []
    values: dict[str, int] = {}
    for key in ("imp_train", "clk_train", "cost_train"):
        value = data.get(key)
        if value is None:
            problems.append((key, "missing"))
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append((key, f"must be a non-negative integer, got {value!r}"))
        else:
            values[key] = value
    if not problems and values["imp_train"] == 0:
        problems.append(("imp_train", "must be > 0"))
    if problems:
        raise InputError(name, problems)
    return CampaignInfo(**values)


def strategy_for_replay(text: str, *, tune: str | None = None,
                        base_dir: str | Path | None = None) -> AnyStrategySpec:
    """`--strategy`, in either form of rtb.strategy_spec, for a replay (and `--tune`).

    Linear's avg_ctr and mcpc's target_cpc may be left out: the replay derives them from
    the info file. A tuned parameter must be left out; the spec holds 0 for it until
    tune() chooses. A user's class (kind "python") is looked for in base_dir (default:
    the current folder; `folder`, if given, is relative to it) first, then on the Python
    path, and is imported and built once with its params: a problem is an InputError
    naming `--strategy.class` or `--strategy.params`, as a scenario's.
    """
    data = _strategy_fields(text)
    kind = data.get("kind")
    if tune is not None and kind in KINDS:  # (an unknown kind is parse_strategy's to report)
        parameter = tuned_parameter(kind, tune)
        if parameter != tune:
            warnings.warn(f"--tune {tune}: deprecated name (now {parameter}); it goes in the next"
                          " release", DeprecatedSpelling, stacklevel=2)
        if parameter in data:
            raise InputError.single("command line", f"{SPEC_FIELD}.{parameter}",
                                    "is tuned (--tune); leave it out of --strategy")
        data[parameter] = 0.0
    spec = parse_strategy(data, SPEC_FIELD, require_all=False)
    _check_replayable(spec)
    if isinstance(spec, PythonStrategySpec):
        from rtb.scenario import resolve_python_strategy

        spec, problems = resolve_python_strategy(spec, Path.cwd() if base_dir is None
                                                 else Path(base_dir), SPEC_FIELD)
        if problems:
            raise InputError("command line", problems)
    return spec


def tuned_parameter(kind: str, name: str) -> str:
    """The current name of a parameter `--tune` may search (b0 -> base_cpm), else InputError."""
    parameter = PARAM_ALIASES.get(kind, {}).get(name, name)
    if parameter not in TUNABLE.get(kind, ()):
        raise InputError.single("command line", "--tune", f"{name} cannot be tuned for {kind!r};"
                                " it tunes " + ", ".join(f"{k}'s {' '.join(v)}"
                                                        for k, v in TUNABLE.items()))
    return parameter


def _strategy_fields(text: str) -> dict[str, object]:
    try:
        return strategy_data(text)
    except ValueError as exc:
        raise InputError.single("command line", SPEC_FIELD, str(exc)) from None


def _check_replayable(spec: AnyStrategySpec) -> None:
    if spec.kind in ("value", "shaded", "budget_ortb"):  # they bid pCTR x pCVR x value
        raise InputError.single("command line", SPEC_FIELD, f"{spec.kind!r} cannot be replayed: an"
                                " iPinYou log has no value per conversion (nor pCVR); use linear,"
                                " mcpc, ortb, fixed or random")


def build_strategy(spec: AnyStrategySpec, info: CampaignInfo) -> Strategy:
    """The dsp strategy for a spec, with what it leaves out derived from the training data;
    prices in the log's CPM unit."""
    _check_replayable(spec)
    match spec:
        case LinearBidSpec(avg_ctr=None):
            _require_clicks(info, spec)
            spec = spec.model_copy(update={"avg_ctr": info.avg_ctr})
        case McpcBidSpec(target_cpc=None):
            _require_clicks(info, spec)
            # McpcBid bids target_cpc * pCTR * 1000 and the log's unit is CPM, so the
            # target is the training cost per click in money: cpc / 1000.
            spec = spec.model_copy(update={"target_cpc": info.cpc / 1000.0})
    return from_spec(spec)


def _require_clicks(info: CampaignInfo, spec: AnyStrategySpec) -> None:
    if info.clk_train == 0:
        derived = "avg_ctr" if spec.kind == "linear" else "target_cpc"
        raise InputError.single("--info", "clk_train", f"must be > 0 to derive {spec.kind}'s"
                                f" {derived} (or give {derived} in --strategy)")


def parse_budget_fraction(text: str) -> float:
    """c0 from "1/32" or "0.03125"; must be positive and finite."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise InputError.single("--budget-fraction", "", f"expected a fraction like 1/32 or a "
                                f"number like 0.03125, got {text!r}") from None
    if not (0.0 < value < math.inf):
        raise InputError.single("--budget-fraction", "", f"must be > 0, got {text!r}")
    if value > MAX_BUDGET_FRACTION:
        raise InputError.single("--budget-fraction", "",
                                f"must be <= {MAX_BUDGET_FRACTION:g}, got {text!r}")
    return value


def episode_budget(info: CampaignInfo, budget_fraction: float, n_requests: int) -> int:
    """int(cost_train / imp_train * c0 * n), in this order, as rlb-dp computes it."""
    return int(info.cost_train / info.imp_train * budget_fraction * n_requests)


def check_chunk(chunk: int | None) -> None:
    """--chunk must be None (the default) or in [1, MAX_CHUNK]; InputError otherwise."""
    if chunk is not None and not 1 <= chunk <= MAX_CHUNK:
        raise InputError.single("--chunk", "", f"must be in [1, {MAX_CHUNK}], got {chunk}")


def check_episode(episode: int) -> None:
    """N must be in [1, MAX_EPISODE]; InputError otherwise."""
    if episode < 1:
        raise InputError.single("--episode", "", f"must be >= 1, got {episode}")
    if episode > MAX_EPISODE:
        raise InputError.single("--episode", "", f"must be <= {MAX_EPISODE}, got {episode}")


def _bounded_budget(info: CampaignInfo, budget_fraction: float, n_requests: int) -> int:
    """episode_budget(), refused (exit 2) unless the kernel's int64 can hold it."""
    try:
        budget = episode_budget(info, budget_fraction, n_requests)
    except OverflowError:  # int(inf)
        budget = MAX_EPISODE_BUDGET + 1
    if budget > MAX_EPISODE_BUDGET:
        raise InputError.single("--budget-fraction", "", f"gives an episode budget over"
                                f" {MAX_EPISODE_BUDGET:.0e} (c0 = {budget_fraction:g}); use a smaller c0")
    return budget


def integer_bids(bids_cpm: np.ndarray) -> np.ndarray:
    """The strategy's float bids rounded down to integers, i4[n]; NaN (no bid) -> NO_BID.

    Bids above MAX_BID are clipped here only so the cast cannot overflow; the
    protocol's cap itself is applied in the kernel.
    """
    out = np.floor(np.clip(bids_cpm, NO_BID, MAX_BID + 1))
    out[np.isnan(out)] = NO_BID
    return out.astype(np.int32)


@njit(cache=True)
def episode_count(n, episode_len, tail_budget):
    """Full episodes, plus the trailing short one unless it is dropped (tail_budget < 0)."""
    return n // episode_len + (1 if n % episode_len != 0 and tail_budget >= 0 else 0)


@njit(cache=True)
def replay_nb(bid, price, click, episode_len, budget, tail_budget, max_bid):
    """Replay integer bids over the log, episode by episode.

    bid, price: i4[n]; click: bool[n]. Each full episode of episode_len requests starts
    with `budget`; a trailing partial episode starts with `tail_budget`, or is not
    replayed when tail_budget < 0. A bid is capped at max_bid and at the remaining
    budget, wins when >= the price and pays the price, so spend never exceeds the
    budget. Returns i8 arrays per episode: auctions, impressions, clicks, spend
    (sum of prices paid).
    """
    n = bid.shape[0]
    n_ep = episode_count(n, episode_len, tail_budget)
    auctions = np.zeros(n_ep, np.int64)
    imps = np.zeros(n_ep, np.int64)
    clicks = np.zeros(n_ep, np.int64)
    spend = np.zeros(n_ep, np.int64)
    for ep in range(n_ep):
        start = ep * episode_len
        stop = min(start + episode_len, n)
        left = budget if ep < n // episode_len else tail_budget
        won = 0
        clk = 0
        paid = 0
        for i in range(start, stop):
            p = price[i]
            # Branch-free: whether a bid wins is unpredictable, and a mispredicted branch
            # costs more than the arithmetic.
            w = np.int64(min(bid[i], max_bid, left) >= p)
            left -= w * p
            paid += w * p
            won += w
            clk += w & click[i]
        auctions[ep] = stop - start
        imps[ep] = won
        clicks[ep] = clk
        spend[ep] = paid
    return auctions, imps, clicks, spend


@njit(cache=True)
def replay_chunk_nb(bid, price, left, max_bid):
    """One chunk of an episode under the same rule as replay_nb: bid i4[m], price i4[m],
    left the episode's budget left. Returns (the winning requests' indices into the
    chunk, i8[k], in order; the budget left after them)."""
    m = bid.shape[0]
    won = np.empty(m, np.int64)
    k = 0
    for i in range(m):
        p = price[i]
        if min(bid[i], max_bid, left) >= p:
            left -= p
            won[k] = i
            k += 1
    return won[:k], left


@dataclass(frozen=True)
class ReplayResult:
    """Totals of one replay, plus per-episode arrays for checks and plots."""

    strategy: str  # canonical short form, e.g. "linear:base_cpm=80"
    episode: int  # N, requests per episode
    budget_fraction: float  # c0
    budget: int  # B of a full episode, sum of prices (the log's CPM unit)
    tail_budget: int  # budget of the trailing partial episode; -1 = dropped or none
    episode_auctions: np.ndarray  # i8[n_episodes]
    episode_impressions: np.ndarray
    episode_clicks: np.ndarray
    episode_spend: np.ndarray  # sum of market prices paid, the log's CPM unit
    chunk: int | None = None  # requests per chunk fed to a strategy that learns; None: one shot

    @property
    def auctions(self) -> int:
        return int(self.episode_auctions.sum())

    @property
    def impressions(self) -> int:
        return int(self.episode_impressions.sum())

    @property
    def clicks(self) -> int:
        return int(self.episode_clicks.sum())

    @property
    def spend(self) -> int:
        """Sum of market prices paid (fen CPM for iPinYou): exact, an integer."""
        return int(self.episode_spend.sum())

    @property
    def cost(self) -> float:
        """Money spent in the log's currency unit (fen for iPinYou): spend / 1000."""
        return self.spend / 1000

    @property
    def win_rate(self) -> float | None:
        return self.impressions / self.auctions if self.auctions else None

    @property
    def cpm(self) -> float | None:
        return self.cost / self.impressions * 1000 if self.impressions else None

    @property
    def ecpc(self) -> float | None:
        return self.cost / self.clicks if self.clicks else None

    def to_dict(self) -> dict[str, object]:
        """The report: exactly RESULT_KEYS (and `chunk` after them when the strategy learns,
        so fed in chunks); a ratio with a zero denominator is None (null)."""
        data = {key: getattr(self, key) for key in RESULT_KEYS}
        if self.chunk is not None:
            data["chunk"] = self.chunk
        return data

    def write_json(self, path: str | Path) -> None:
        """Write to_dict() as JSON atomically: a reader never sees a half-written file."""
        try:
            write_atomic(path, orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
        except OSError as exc:
            raise InputError.single(str(path), "", f"cannot write: {exc.strerror or exc}") from None


def replay(
    log: BidLog,
    info: CampaignInfo,
    spec: AnyStrategySpec,
    *,
    episode: int,
    budget_fraction: float,
    seed: int = 0,
    partial: str = "proportional",
    chunk: int | None = None,
    strategy: Strategy | None = None,
) -> ReplayResult:
    """Replay `log` with the strategy `spec` under the protocol.

    partial: what happens to a trailing episode shorter than `episode`:
        "proportional" replays it with int(cpm * c0 * its length), the same budget per
        request as a full one; "drop" leaves it out (auctions counts only full
        episodes); "full" gives it a full episode's budget, as rlb-dp's scripts do.
    chunk: requests per bid() call for a strategy that learns (default: DEFAULT_CHUNK,
        at most the episode); a chunk never crosses an episode's end. A stateless
        strategy bids once on the whole log whatever `chunk` is.
    strategy: bid with this object instead of the one `spec` describes (spec then only
        names it in the result); e.g. a learning object of your own, whose state
        carries over from one call to the next.
    """
    check_episode(episode)
    check_chunk(chunk)
    if partial not in PARTIAL_EPISODES:
        raise InputError.single("--partial-episode", "", f"expected one of "
                                f"{', '.join(PARTIAL_EPISODES)}, got {partial!r}")
    if strategy is None:
        strategy = build_strategy(spec, info)
    elif learns(strategy):  # an object of the caller's: its bids checked as a user's class's
        from dsp.custom import Checked, check_protocol

        check_protocol(strategy, "strategy")
        strategy = Checked(strategy, type(strategy).__name__)
    if learns(strategy):
        return _replay_learning(strategy, log, info, spec, episode, budget_fraction, seed, partial,
                                min(chunk or DEFAULT_CHUNK, episode))
    bids = integer_bids(strategy.bid(_bid_view(log, spec, seed)))
    budget, tail_budget = _budgets(info, budget_fraction, episode, log.market_price.shape[0], partial)
    auctions, imps, clicks, spend = replay_nb(bids, log.market_price, log.click, episode,
                                              budget, tail_budget, MAX_BID)
    return ReplayResult(short_form(spec), episode, budget_fraction, budget, tail_budget,
                        auctions, imps, clicks, spend)


def _budgets(info: CampaignInfo, budget_fraction: float, episode: int, n: int,
             partial: str) -> tuple[int, int]:
    budget = _bounded_budget(info, budget_fraction, episode)
    tail = n % episode
    if tail == 0 or partial == "drop":
        return budget, -1
    return budget, budget if partial == "full" else _bounded_budget(info, budget_fraction, tail)


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def _replay_learning(strategy: Strategy, log: BidLog, info: CampaignInfo, spec: AnyStrategySpec,
                     episode: int, budget_fraction: float, seed: int, partial: str,
                     chunk: int) -> ReplayResult:
    """The protocol, fed to `strategy` chunk by chunk with observe() after each one.

    The same rule as replay_nb, request by request: a chunk's bids are made before any of
    its auctions, so a stateless strategy gives the one-shot replay's numbers exactly.
    """
    n = log.market_price.shape[0]
    budget, tail_budget = _budgets(info, budget_fraction, episode, n, partial)
    n_ep = episode_count(n, episode, tail_budget)
    auctions = np.zeros(n_ep, np.int64)
    imps = np.zeros(n_ep, np.int64)
    clicks = np.zeros(n_ep, np.int64)
    spend = np.zeros(n_ep, np.int64)
    # The same uniforms as `random`'s one-shot replay: request i gets the i-th draw.
    pctr = _read_only(log.pctr)
    uniform = _read_only(stream(seed, "replay/rand").random(n))
    zeros = _read_only(np.zeros(chunk))
    price_all, click_all = log.market_price, log.click
    for ep in range(n_ep):
        start, stop = ep * episode, min(ep * episode + episode, n)
        ep_budget = budget if ep < n // episode else tail_budget
        left = ep_budget
        for a in range(start, stop, chunk):
            b = min(a + chunk, stop)
            view = BidView(pctr=pctr[a:b], pcvr=zeros[:b - a], floor_cpm=zeros[:b - a],
                           uniform=uniform[a:b], spend=(ep_budget - left) / 1000,
                           budget_left=left / 1000, requests_left=stop - a)
            price = price_all[a:b]
            won, left = replay_chunk_nb(integer_bids(strategy.bid(view)), price, left, MAX_BID)
            left = int(left)
            paid = price[won].astype(np.int64)
            clicked = click_all[a:b][won]
            total = int(paid.sum())
            imps[ep] += won.size
            clicks[ep] += int(np.count_nonzero(clicked))
            spend[ep] += total
            strategy.observe(Feedback(price_cpm=paid.astype(np.float64), clicked=clicked,
                                      spend_micros=total * 1000, won=won, cost=paid / 1000))
        auctions[ep] = stop - start
    return ReplayResult(short_form(spec), episode, budget_fraction, budget, tail_budget,
                        auctions, imps, clicks, spend, chunk)


def _bid_view(log: BidLog, spec: AnyStrategySpec, seed: int) -> BidView:
    """What the strategy sees: the log's pCTRs; no floors; uniforms only for `random`."""
    n = log.pctr.shape[0]
    zeros = np.zeros(n)
    # The uniforms come from their own named stream, so a replay with seed s draws the
    # same numbers whatever else runs. (The name predates the kind's new name, random.)
    uniform = stream(seed, "replay/rand").random(n) if isinstance(spec, RandomBidSpec) else zeros
    return BidView(pctr=log.pctr, pcvr=zeros, floor_cpm=zeros, uniform=uniform)


@dataclass(frozen=True)
class Tuning:
    """A grid search of one parameter: the chosen value and every value's clicks."""

    parameter: str
    chosen: float
    clicks: int  # clicks of the chosen value on the validation log
    grid: np.ndarray  # f8[k] values tried
    grid_clicks: np.ndarray  # i8[k]

    @property
    def at_edge(self) -> bool:
        """The best value is the grid's last: a wider grid might do better."""
        return self.grid.size > 1 and self.chosen == self.grid[-1]


def parse_grid(text: str) -> np.ndarray:
    """START:STOP:STEP, STOP included, e.g. "1:300:1"; values must be >= 0."""
    parts = text.split(":")
    try:
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise InputError.single("--tune-grid", "", f"expected START:STOP:STEP, got {text!r}") from None
    if not (0 <= start <= stop and step > 0 and math.isfinite(stop)):
        raise InputError.single("--tune-grid", "", f"need 0 <= START <= STOP and STEP > 0, got {text!r}")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    if count > 100_000:
        raise InputError.single("--tune-grid", "", f"{count} values is too many (at most 100000)")
    return start + step * np.arange(count)


def tune(
    validation: BidLog,
    info: CampaignInfo,
    spec: AnyStrategySpec,
    parameter: str,
    grid: np.ndarray,
    *,
    episode: int,
    budget_fraction: float,
    seed: int = 0,
    partial: str = "proportional",
    chunk: int | None = None,
) -> tuple[AnyStrategySpec, Tuning]:
    """Choose `parameter` from `grid` by clicks on the validation log (same protocol).

    Ties go to the smallest value. Returns the spec with the chosen value filled in.
    """
    parameter = tuned_parameter(spec.kind, parameter)
    # The grid's extremes must be values the model accepts; the values between then are.
    for value in {float(grid[0]), float(grid[-1])}:
        parse_strategy({**spec.model_dump(), parameter: value}, "--tune-grid", require_all=False)
    clicks = np.empty(grid.size, np.int64)
    for k, value in enumerate(grid):
        trial = spec.model_copy(update={parameter: float(value)})
        clicks[k] = replay(validation, info, trial, episode=episode, budget_fraction=budget_fraction,
                           seed=seed, partial=partial, chunk=chunk).clicks
    best = int(np.argmax(clicks))  # argmax returns the first maximum: the smallest value
    chosen = float(grid[best])
    return (spec.model_copy(update={parameter: chosen}),
            Tuning(parameter, chosen, int(clicks[best]), grid, clicks))
