"""rtb.replay and `rtb replay`: the iPinYou protocol on logs small enough to work out by hand."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rtb import replay as rp
from rtb.bidlog import BidLog, read_bidlog
from rtb.errors import InputError
from rtb.seeding import stream
from rtb.strategy_spec import (AnyStrategySpec, DeprecatedSpelling, LinearBidSpec, McpcBidSpec,
                               OrtbBidSpec, RandomBidSpec, short_form)

# cost_train / imp_train = 40 and c0 = 1/4: 10 per request, so an episode of 3 gets 30.
INFO = {"imp_train": 1000, "clk_train": 125, "cost_train": 40_000}  # avg CTR 1/8
C0 = 0.25
# (click, market price, pctr); episodes of 3: two full ones and a tail of one.
ROWS = [(1, 10, 0.5), (0, 25, 0.5), (1, 5, 0.5),
        (0, 30, 0.5), (1, 20, 0.5), (0, 0, 0.5),
        (1, 15, 0.5)]


def theta_text(rows: list[tuple[int, int, float]]) -> str:
    return "".join(f"{c} {p} {q!r}\n" for c, p, q in rows)


def make_log(rows: list[tuple[int, int, float]]) -> BidLog:
    click, price, pctr = zip(*rows)
    return BidLog(np.array(click, np.bool_), np.array(price, np.int32), np.array(pctr, np.float64), 0, "")


def run(spec: str, rows=ROWS, info=INFO, episode: int = 3, c0: float = C0, **kw) -> rp.ReplayResult:
    return rp.replay(make_log(rows), rp.CampaignInfo(**info), rp.strategy_for_replay(spec),
                     episode=episode, budget_fraction=c0, **kw)


def replay_py(bids, price, click, episode, budget, tail_budget, max_bid=rp.MAX_BID):
    """Plain-Python twin of replay_nb, written as rlb-dp's loop: per-episode totals."""
    out = []
    n = len(bids)
    for start in range(0, n, episode):
        stop = min(start + episode, n)
        if stop - start < episode and tail_budget < 0:
            break
        left = budget if stop - start == episode else tail_budget
        won = clk = paid = 0
        for i in range(start, stop):
            a = min(min(int(bids[i]), max_bid), left)
            if a >= price[i]:
                left -= int(price[i])
                paid += int(price[i])
                won += 1
                clk += int(click[i])
        out.append((stop - start, won, clk, paid))
    return out


class TestProtocolByHand:
    def test_const_bid_budget_cap_and_tie(self) -> None:
        # Episode 1 (B=30): 20>=10 wins (left 20); 20<25 loses; 20>=5 wins (left 15).
        # Episode 2 (B=30): 20<30 loses; 20>=20 wins, a tie (left 10); min(20,10)>=0 wins.
        # Tail (proportional: int(40*0.25*1)=10): min(20,10)=10<15 loses.
        r = run("fixed:bid_cpm=20")
        assert (r.budget, r.tail_budget) == (30, 10)
        assert r.episode_impressions.tolist() == [2, 2, 0]
        assert r.episode_clicks.tolist() == [2, 1, 0]
        assert r.episode_spend.tolist() == [15, 20, 0]
        assert (r.auctions, r.impressions, r.clicks, r.spend) == (7, 4, 3, 35)
        assert r.cost == 0.035
        assert r.win_rate == 4 / 7
        assert r.cpm == 0.035 / 4 * 1000
        assert r.ecpc == 0.035 / 3

    def test_remaining_budget_caps_a_high_bid(self) -> None:
        # bid 300: the second request would win at 25 but only 20 of 30 is left.
        r = run("fixed:bid_cpm=300")
        assert r.episode_impressions.tolist()[0] == 2
        assert r.episode_spend.tolist()[0] == 15

    @pytest.mark.parametrize(("partial", "tail_budget", "auctions", "impressions", "clicks", "spend"), [
        ("proportional", 10, 7, 4, 3, 35),
        ("full", 30, 7, 5, 4, 50),  # the tail has 30: 20 >= 15 wins
        ("drop", -1, 6, 4, 3, 35),
    ])
    def test_partial_episode_rules(self, partial, tail_budget, auctions, impressions, clicks, spend) -> None:
        r = run("fixed:bid_cpm=20", partial=partial)
        assert r.tail_budget == tail_budget
        assert (r.auctions, r.impressions, r.clicks, r.spend) == (auctions, impressions, clicks, spend)

    def test_no_tail_when_the_log_divides(self) -> None:
        r = run("fixed:bid_cpm=20", rows=ROWS[:6])
        assert r.tail_budget == -1 and r.episode_auctions.tolist() == [3, 3]

    def test_bid_cap_is_300(self) -> None:
        rows = [(0, 300, 0.5), (0, 301, 0.5)]
        r = run("fixed:bid_cpm=1000", rows=rows, episode=2, c0=100.0)  # budget 8000: never binds
        assert r.episode_impressions.tolist() == [1]

    def test_linear_bid_is_floored(self) -> None:
        # bid = base_cpm * pctr / avg_ctr = 10 * pctr * 8: pctr 5/32 -> 12.5 -> 12.
        rows = [(0, 12, 5 / 32), (0, 13, 5 / 32), (1, 20, 0.25), (0, 21, 0.25)]
        r = run("linear:base_cpm=10", rows=rows, episode=4, c0=100.0)
        assert (r.impressions, r.clicks, r.spend) == (2, 1, 32)

    def test_mcpc_bids_pctr_times_training_cpc(self) -> None:
        info = {"imp_train": 1000, "clk_train": 4, "cost_train": 2000}  # CPC 500 in CPM units
        rows = [(0, 31, 1 / 16), (0, 32, 1 / 16)]  # bid 31.25 -> 31
        r = run("mcpc", rows=rows, info=info, episode=2, c0=1000.0)
        assert r.episode_impressions.tolist() == [1]

    def test_ortb_formula(self) -> None:
        # sqrt(c / lambda * pctr + c^2) - c = sqrt(10 * 128 * 0.625 + 100) - 10 = 20.
        rows = [(0, 20, 0.625), (0, 21, 0.625)]
        r = run("ortb:c=10,lam=0.0078125", rows=rows, episode=2, c0=100.0)
        assert r.episode_impressions.tolist() == [1]

    def test_random_uses_its_named_stream(self) -> None:
        rng = np.random.default_rng(3)
        rows = [(int(c), int(p), 0.5) for c, p in zip(rng.random(500) < 0.2, rng.integers(0, 100, 500))]
        r = run("random:max_cpm=120", rows=rows, episode=50, c0=1.0, seed=9)
        bids = np.floor(stream(9, "replay/rand").random(500) * 120)
        want = replay_py(bids, [p for _, p, _ in rows], [c for c, _, _ in rows], 50,
                         rp.episode_budget(rp.CampaignInfo(**INFO), 1.0, 50), -1)
        assert r.episode_impressions.tolist() == [w[1] for w in want]
        assert r.episode_clicks.tolist() == [w[2] for w in want]
        assert run("random:max_cpm=120", rows=rows, episode=50, c0=1.0, seed=9).spend == r.spend
        assert run("random:max_cpm=120", rows=rows, episode=50, c0=1.0, seed=10).spend != r.spend

    def test_zero_denominators_are_null(self, tmp_path: Path) -> None:
        r = run("fixed:bid_cpm=0", rows=[(0, 5, 0.5), (0, 7, 0.5)], episode=2)
        d = r.to_dict()
        assert list(d) == list(rp.RESULT_KEYS)
        assert (d["impressions"], d["cost"], d["cpm"], d["ecpc"]) == (0, 0.0, None, None)
        assert d["win_rate"] == 0.0
        r.write_json(tmp_path / "r.json")
        assert json.loads((tmp_path / "r.json").read_text()) == d


class TestKernelTwin:
    @pytest.mark.parametrize("seed", range(6))
    def test_kernel_matches_python_and_never_overspends(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 400))
        episode = int(rng.integers(1, 60))
        budget = int(rng.integers(0, 3000))
        tail_budget = int(rng.choice([-1, 0, int(rng.integers(0, 3000))]))
        bids = rng.integers(-1, 400, n).astype(np.int32)
        price = rng.integers(0, 301, n).astype(np.int32)
        click = rng.random(n) < 0.3
        got = rp.replay_nb(bids, price, click, episode, budget, tail_budget, rp.MAX_BID)
        want = replay_py(bids, price, click, episode, budget, tail_budget)
        assert np.array_equal(np.stack(got, axis=1), np.array(want, np.int64).reshape(-1, 4))
        limits = [budget] * (n // episode) + ([tail_budget] if n % episode and tail_budget >= 0 else [])
        assert np.all(got[3] <= np.array(limits, np.int64))

    def test_integer_bids(self) -> None:
        got = rp.integer_bids(np.array([np.nan, -3.0, 0.0, 0.999, 12.5, 299.99, 300.0, 1e300, np.inf]))
        assert got.tolist() == [-1, -1, 0, 0, 12, 299, 300, 301, 301]


class TestSpecs:
    @pytest.mark.parametrize(("text", "spec", "canonical"), [
        # What replay derives from the info file may be left out (and stays out of the text).
        ("mcpc", McpcBidSpec(kind="mcpc"), "mcpc"),
        ("linear:base_cpm=80", LinearBidSpec(kind="linear", base_cpm=80), "linear:base_cpm=80"),
        ('{ kind = "linear", base_cpm = 80 }', LinearBidSpec(kind="linear", base_cpm=80),
         "linear:base_cpm=80"),
        ("linear: base_cpm = 12.5 ,avg_ctr=0.002",
         LinearBidSpec(kind="linear", base_cpm=12.5, avg_ctr=0.002),
         "linear:base_cpm=12.5,avg_ctr=0.002"),
        ("random:max_cpm=300", RandomBidSpec(kind="random", max_cpm=300), "random:max_cpm=300"),
        ("ortb:lam=5e-7,c=50", OrtbBidSpec(kind="ortb", c=50, lam=5e-7), "ortb:c=50,lam=5e-07"),
    ])
    def test_valid(self, text, spec, canonical) -> None:
        got = rp.strategy_for_replay(text)
        assert got == spec and short_form(got) == canonical
        assert rp.replay(make_log(ROWS), rp.CampaignInfo(**INFO), got, episode=3,
                         budget_fraction=C0).strategy == canonical

    @pytest.mark.parametrize(("old", "new"), [
        ("lin:b0=80", "linear:base_cpm=80"), ("lin: b0 = 12.5 ", "linear:base_cpm=12.5"),
        ("const:bid=0", "fixed:bid_cpm=0"), ("rand:max=300", "random:max_cpm=300"),
        ("ortb:lambda=5e-7,c=50", "ortb:c=50,lam=5e-07"),
    ])
    def test_old_spellings_are_deprecated_aliases(self, old, new) -> None:
        with pytest.warns(DeprecatedSpelling, match="deprecated names"):
            spec = rp.strategy_for_replay(old)
        assert spec == rp.strategy_for_replay(new) and short_form(spec) == new

    @pytest.mark.parametrize(("old", "new"), [
        ("const:bid=20", "fixed:bid_cpm=20"), ("lin:b0=10", "linear:base_cpm=10"),
        ("rand:max=120", "random:max_cpm=120"),
        ("ortb:c=10,lambda=0.0078125", "ortb:c=10,lam=0.0078125"),
    ])
    def test_old_spellings_replay_the_same(self, old, new) -> None:
        rows = [(c, p, q) for c, p, q in ROWS] * 3
        with pytest.warns(DeprecatedSpelling):
            before = run(old, rows=rows, seed=4).to_dict()
        assert before == run(new, rows=rows, seed=4).to_dict()

    @pytest.mark.parametrize(("text", "lines"), [
        ("lin2:b0=1", ["command line: --strategy: unknown strategy kind 'lin2'; expected one of fixed,"
                       " linear, value, mcpc, ortb, random, shaded, budget_ortb, python, written KIND:NAME=VALUE,... such as"
                       " linear:base_cpm=80,avg_ctr=0.001 or as a TOML inline table such as"
                       ' { kind = "linear", base_cpm = 80, avg_ctr = 0.001 }']),
        ("linear", ["command line: --strategy.base_cpm: Field required"]),
        ("linear:base_cpm=x", ["command line: --strategy.base_cpm: Input should be a valid number,"
                               " unable to parse string as a number"]),
        ("linear:base_cpm=-1", ["command line: --strategy.base_cpm: Input should be greater than or"
                                " equal to 0"]),
        ("linear:base_cpm", ["command line: --strategy: 'base_cpm': expected NAME=VALUE, as in"
                             " linear:base_cpm=80,avg_ctr=0.001"]),
        ("linear:base_cpm=1,base_cpm=2", ["command line: --strategy: base_cpm: given twice"]),
        ("mcpc:b0=1", ["command line: --strategy.b0: unknown parameter of 'mcpc'; it takes target_cpc"]),
        ("ortb:c=1", ["command line: --strategy.lam: Field required"]),
        ("value", ["command line: --strategy: 'value' cannot be replayed: an iPinYou log has no value"
                   " per conversion (nor pCVR); use linear, mcpc, ortb, fixed or random"]),
        ("shaded", ["command line: --strategy: 'shaded' cannot be replayed: an iPinYou log has no"
                    " value per conversion (nor pCVR); use linear, mcpc, ortb, fixed or random"]),
    ])
    def test_invalid(self, text, lines) -> None:
        with pytest.raises(InputError) as excinfo:
            rp.strategy_for_replay(text)
        assert excinfo.value.lines() == lines

    def test_tuning_rules(self) -> None:
        assert rp.strategy_for_replay("linear", tune="base_cpm").base_cpm == 0.0  # until tune() chooses
        with pytest.raises(InputError, match=r"--strategy\.base_cpm: is tuned"):
            rp.strategy_for_replay("linear:base_cpm=5", tune="base_cpm")
        with pytest.raises(InputError, match=r"--strategy\.base_cpm: is tuned"), \
                pytest.warns(DeprecatedSpelling):
            rp.strategy_for_replay("lin:b0=5", tune="b0")
        with pytest.raises(InputError) as excinfo:
            rp.strategy_for_replay("fixed:bid_cpm=5", tune="bid_cpm")
        assert excinfo.value.lines() == ["command line: --tune: bid_cpm cannot be tuned for 'fixed';"
                                         " it tunes linear's base_cpm"]

    def test_given_avg_ctr_is_used_instead_of_the_info_file_s(self) -> None:
        # INFO's avg CTR is 1/8; with avg_ctr = 1/16 every bid doubles.
        assert run("linear:base_cpm=10,avg_ctr=0.0625").to_dict() | {"strategy": ""} == \
            run("linear:base_cpm=20").to_dict() | {"strategy": ""}

    @pytest.mark.parametrize(("text", "value"), [("1/32", 0.03125), ("0.03125", 0.03125),
                                                 ("3.125e-2", 0.03125), (" 1/3 ", 1 / 3), ("2", 2.0)])
    def test_budget_fraction(self, text, value) -> None:
        assert rp.parse_budget_fraction(text) == value

    @pytest.mark.parametrize("text", ["0", "-1/2", "abc", "1/0", "", "1/32/2"])
    def test_bad_budget_fraction(self, text) -> None:
        with pytest.raises(InputError, match="^--budget-fraction: "):
            rp.parse_budget_fraction(text)

    def test_episode_budget_is_rlb_dp_s_expression(self) -> None:
        info = rp.CampaignInfo(imp_train=312437, clk_train=1386, cost_train=19689072)
        for c0 in (1 / 2, 1 / 8, 1 / 32, 1 / 64, 0.3):
            assert rp.episode_budget(info, c0, 1000) == int(19689072 / 312437 * c0 * 1000)
        assert rp.episode_budget(info, 1 / 32, 1000) == 1969

    def test_bad_episode_and_partial(self) -> None:
        with pytest.raises(InputError, match="--episode: must be >= 1"):
            run("mcpc", episode=0)
        with pytest.raises(InputError, match="--partial-episode: expected one of"):
            run("mcpc", partial="half")

    def test_info_problems(self, tmp_path: Path) -> None:
        path = tmp_path / "info.json"
        path.write_text(json.dumps({"imp_train": 0, "clk_train": "7"}))
        with pytest.raises(InputError) as excinfo:
            rp.load_info(path)
        assert excinfo.value.lines() == [f"{path}: clk_train: must be a non-negative integer, got '7'",
                                         f"{path}: cost_train: missing"]
        path.write_text("{")
        with pytest.raises(InputError, match="not valid JSON"):
            rp.load_info(path)
        path.write_text(json.dumps({"imp_train": 10, "clk_train": 0, "cost_train": 5}))
        with pytest.raises(InputError, match="clk_train: must be > 0 to derive mcpc's target_cpc"):
            run("mcpc", info=json.loads(path.read_text()))
        # Given in --strategy, nothing needs deriving.
        assert run("mcpc:target_cpc=0.5", info=json.loads(path.read_text())).auctions == len(ROWS)


class TestTuning:
    # avg CTR 1/8 and pctr 1/8: linear bids exactly base_cpm. One clicked request at price 50.
    ROWS = [(0, 10, 0.125), (1, 50, 0.125)]

    def tune(self, grid: str, parameter: str = "base_cpm") -> tuple[AnyStrategySpec, rp.Tuning]:
        spec = rp.strategy_for_replay("linear", tune=parameter)
        return rp.tune(make_log(self.ROWS), rp.CampaignInfo(**INFO), spec, parameter,
                       rp.parse_grid(grid), episode=2, budget_fraction=100.0)

    def test_chooses_the_smallest_best(self) -> None:
        spec, tuning = self.tune("10:100:10")
        assert tuning.grid_clicks.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
        assert (short_form(spec), tuning.parameter, tuning.chosen, tuning.clicks, tuning.at_edge) == (
            "linear:base_cpm=50", "base_cpm", 50.0, 1, False)

    def test_the_alias_b0_tunes_base_cpm(self) -> None:
        with pytest.warns(DeprecatedSpelling, match="--tune b0: deprecated name"):
            spec, tuning = self.tune("10:100:10", parameter="b0")
        assert (short_form(spec), tuning.parameter) == ("linear:base_cpm=50", "base_cpm")

    def test_a_grid_beyond_the_model_s_bounds_is_refused(self) -> None:
        with pytest.raises(InputError, match=r"--tune-grid\.base_cpm: Input should be less than"):
            self.tune("0:2e6:1e6")

    def test_no_clicks_anywhere_picks_the_first_and_edge_is_flagged(self) -> None:
        assert self.tune("10:40:10")[1].chosen == 10.0
        assert self.tune("10:50:10")[1].at_edge

    def test_grid(self) -> None:
        assert rp.parse_grid("1:300:1").tolist() == list(range(1, 301))
        assert rp.parse_grid("6:300:6")[-1] == 300.0
        assert rp.parse_grid("0.5:1.5:0.5").tolist() == [0.5, 1.0, 1.5]
        for bad in ("1:300", "a:b:c", "5:1:1", "1:5:0", "-1:5:1", "0:1e9:1"):
            with pytest.raises(InputError, match="^--tune-grid: "):
                rp.parse_grid(bad)


class TestShared2997:
    @pytest.fixture
    def data(self, ipinyou_dir: Path) -> tuple[BidLog, rp.CampaignInfo, dict]:
        info_path = ipinyou_dir / "2997.info.json"
        raw = json.loads(info_path.read_text())
        return read_bidlog(ipinyou_dir / "2997.test.theta.txt"), rp.load_info(info_path), raw

    def test_fraction_one_and_a_huge_bid_wins_everything(self, data) -> None:
        log, info, raw = data
        n = log.market_price.shape[0]
        # One episode spanning the log: its budget (63.02 per request) exceeds the test
        # period's cost (55.2 per request), so every request is won: the test totals.
        r = rp.replay(log, info, rp.strategy_for_replay("fixed:bid_cpm=1e6"), episode=n, budget_fraction=1.0)
        assert (r.auctions, r.impressions, r.clicks, r.spend) == (raw["imp_test"], raw["imp_test"],
                                                                  raw["clk_test"], raw["cost_test"])
        assert r.win_rate == 1.0
        # With N = 1000 an episode is won whole exactly when its prices fit its budget.
        r = rp.replay(log, info, rp.strategy_for_replay("fixed:bid_cpm=1e6"), episode=1000,
                      budget_fraction=1.0)
        sums = np.add.reduceat(log.market_price.astype(np.int64), np.arange(0, n, 1000))
        budgets = np.full(sums.size, r.budget)
        budgets[-1] = r.tail_budget
        assert np.array_equal(r.episode_impressions == r.episode_auctions, sums <= budgets)
        assert (sums > budgets).any()  # the budget does bind in some episodes

    def test_bid_zero_wins_only_free_requests(self, data) -> None:
        log, info, _ = data
        r = rp.replay(log, info, rp.strategy_for_replay("fixed:bid_cpm=0"), episode=1000,
                      budget_fraction=1 / 32)
        free = log.market_price == 0
        assert r.impressions == int(free.sum()) and r.spend == 0
        assert r.clicks == int(log.click[free].sum())

    @pytest.mark.parametrize("spec", ["mcpc", "linear:base_cpm=14", "linear:base_cpm=80",
                                      "linear:base_cpm=251"])
    def test_matches_rlb_dp_loop(self, data, spec: str) -> None:
        # rlb-dp's Mcpc/Lin_Bid.run, literally: int(theta * cpc), int(theta * b0 / theta_avg),
        # and its trailing partial episode keeps the full budget (partial="full").
        log, info, _ = data
        kind = rp.strategy_for_replay(spec)
        if kind.kind == "mcpc":
            bids = [int(t * info.cpc) for t in log.pctr.tolist()]
        else:
            b0 = kind.base_cpm
            bids = [int(t * b0 / info.avg_ctr) for t in log.pctr.tolist()]
        budget = rp.episode_budget(info, 1 / 32, 1000)
        want = np.array(replay_py(bids, log.market_price.tolist(), log.click.tolist(), 1000, budget, budget))
        r = rp.replay(log, info, kind, episode=1000, budget_fraction=1 / 32, partial="full")
        assert (r.auctions, r.impressions, r.clicks, r.spend) == tuple(want.sum(axis=0))

    def test_replay_takes_well_under_a_second(self, ipinyou_dir: Path, data) -> None:
        _, info, _ = data
        path = ipinyou_dir / "2997.test.theta.txt"
        spec = rp.strategy_for_replay("linear:base_cpm=80")
        run("linear:base_cpm=80")  # the replay kernel compiled (or loaded from numba's cache)
        start = time.perf_counter()
        r = rp.replay(read_bidlog(path), info, spec, episode=1000, budget_fraction=1 / 32)
        elapsed = time.perf_counter() - start
        assert r.auctions == 156_063
        assert elapsed < 0.5


def rtb_process(*args: str) -> subprocess.CompletedProcess[str]:
    """`rtb replay ARGS` in a process of its own."""
    return subprocess.run([sys.executable, "-m", "rtb.cli", "replay", *args],
                          capture_output=True, text=True, timeout=300)


def rtb(*args: str) -> subprocess.CompletedProcess[str]:
    """`rtb replay ARGS` run in this process (tests/test_cli.py: rtb_in_process, the same
    exit code, stdout and stderr as the command's own process, a second sooner)."""
    from test_cli import rtb_in_process  # tests/ is on sys.path under pytest

    return rtb_in_process("replay", *args)


class TestCli:
    @pytest.fixture
    def files(self, tmp_path: Path) -> tuple[Path, Path]:
        log = tmp_path / "log.txt"
        log.write_text(theta_text(ROWS))
        info = tmp_path / "info.json"
        info.write_text(json.dumps(INFO))
        return log, info

    def test_replay_writes_table_and_json(self, files, tmp_path: Path) -> None:
        log, info = files
        out = tmp_path / "replay.json"
        proc = rtb_process(str(log), "--format", "ipinyou-theta", "--info", str(info), "--strategy",
                           "fixed:bid_cpm=20", "--episode", "3", "--budget-fraction", "1/4",
                           "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        assert "auctions" in proc.stdout and "eCPC" in proc.stdout
        data = json.loads(out.read_text())
        assert list(data) == list(rp.RESULT_KEYS)
        assert data == {"auctions": 7, "impressions": 4, "clicks": 3, "cost": 0.035,
                        "win_rate": 4 / 7, "cpm": 8.75, "ecpc": 0.035 / 3,
                        "strategy": "fixed:bid_cpm=20", "episode": 3, "budget_fraction": 0.25}

    def test_tune_reports_the_chosen_value(self, tmp_path: Path) -> None:
        log = tmp_path / "valid.txt"
        log.write_text(theta_text(TestTuning.ROWS))
        info = tmp_path / "info.json"
        info.write_text(json.dumps(INFO))
        out = tmp_path / "r.json"
        proc = rtb(str(log), "--info", str(info), "--strategy", "linear", "--tune", "base_cpm",
                   "--validation", str(log), "--tune-grid", "10:100:10", "--episode", "2",
                   "--budget-fraction", "100", "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        assert "tuned base_cpm = 50" in proc.stdout
        assert json.loads(out.read_text())["strategy"] == "linear:base_cpm=50"
        assert proc.stderr == ""

    def test_old_spellings_still_work_and_warn(self, tmp_path: Path) -> None:
        log = tmp_path / "valid.txt"
        log.write_text(theta_text(TestTuning.ROWS))
        info = tmp_path / "info.json"
        info.write_text(json.dumps(INFO))
        out = tmp_path / "r.json"
        proc = rtb(str(log), "--info", str(info), "--strategy", "lin", "--tune", "b0", "--validation",
                   str(log), "--tune-grid", "10:100:10", "--episode", "2", "--budget-fraction", "100",
                   "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        assert "tuned base_cpm = 50" in proc.stdout
        assert json.loads(out.read_text())["strategy"] == "linear:base_cpm=50"
        assert proc.stderr.splitlines() == [
            "warning: strategy 'lin': deprecated names lin (now linear); they go in the next release",
            "warning: --tune b0: deprecated name (now base_cpm); it goes in the next release"]

    @pytest.mark.parametrize(("args", "message"), [
        (["--strategy", "linear:base_cpm=x", "--budget-fraction", "1/4"],
         "command line: --strategy.base_cpm: Input should be a valid number"),
        (["--strategy", "lin:b0=-1", "--budget-fraction", "1/4"],
         "command line: --strategy.base_cpm: Input should be greater than or equal to 0"),
        (["--strategy", '{ kind = "fixed", bid_cpm = -1 }', "--budget-fraction", "1/4"],
         "command line: --strategy.bid_cpm: Input should be greater than or equal to 0"),
        (["--strategy", "value:shading=0.5", "--budget-fraction", "1/4"],
         "command line: --strategy: 'value' cannot be replayed: an iPinYou log has no value per"
         " conversion"),
        (["--strategy", "fixed:bid_cpm=1", "--tune", "bid_cpm", "--budget-fraction", "1/4"],
         "command line: --tune: bid_cpm cannot be tuned for 'fixed'"),
        (["--strategy", "fixed:bid_cpm=1", "--budget-fraction", "0"], "--budget-fraction: must be > 0"),
        (["--strategy", "linear", "--tune", "base_cpm", "--budget-fraction", "1/4"],
         "--validation: --tune and --validation go together"),
        (["--strategy", "fixed:bid_cpm=1", "--budget-fraction", "1/4", "--format", "csv"],
         "unknown format 'csv'"),
        (["--strategy", "fixed:bid_cpm=1", "--budget-fraction", "1/4", "--episode", "0"],
         "--episode: must be >= 1, got 0"),
    ])
    def test_bad_input_exits_2_without_traceback(self, files, args, message) -> None:
        log, info = files
        proc = rtb(str(log), "--info", str(info), *args)
        assert proc.returncode == 2
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout

    def test_malformed_line_and_skip_bad(self, files) -> None:
        log, info = files
        log.write_text("0 1 0.5\n0 oops 0.5\n1 2 0.5\n")
        args = [str(log), "--info", str(info), "--strategy", "fixed:bid_cpm=5", "--budget-fraction", "1"]
        proc = rtb(*args)
        assert proc.returncode == 2
        assert proc.stderr.strip() == (f"{log}: line 2: market price must be a non-negative integer "
                                       "of at most 9 digits, got 'oops'")
        proc = rtb(*args, "--skip-bad")
        assert proc.returncode == 0, proc.stderr
        assert f"{log}: skipped 1 malformed lines (first: line 2:" in proc.stderr

    def test_missing_log_and_unwritable_out(self, files, tmp_path: Path) -> None:
        _, info = files
        proc = rtb(str(tmp_path / "absent.txt"), "--info", str(info), "--strategy", "mcpc",
                   "--budget-fraction", "1/32")
        assert proc.returncode == 2 and "absent.txt: cannot read" in proc.stderr
        proc = rtb(str(files[0]), "--info", str(info), "--strategy", "mcpc", "--budget-fraction", "1/32",
                   "--out", str(tmp_path / "no" / "r.json"))
        assert proc.returncode == 2 and "does not exist" in proc.stderr
        assert "Traceback" not in proc.stderr

    def test_original_ipinyou_log_with_constant_pctr(self, tmp_path: Path, files) -> None:
        from test_bidlog import LOG_HEADER, log_row  # tests/ is on sys.path under pytest

        _, info = files
        log = tmp_path / "test.log.txt"
        rows = [log_row(c, p) for c, p, _ in ROWS]
        log.write_text("\t".join(LOG_HEADER) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
        out = tmp_path / "r.json"
        proc = rtb(str(log), "--format", "ipinyou-log", "--pctr", "0.001", "--info", str(info),
                   "--strategy", "fixed:bid_cpm=20", "--episode", "3", "--budget-fraction", "1/4",
                   "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(out.read_text())["impressions"] == 4  # the same requests as ROWS

    def test_shared_2997(self, ipinyou_dir: Path, tmp_path: Path) -> None:
        out = tmp_path / "r.json"
        proc = rtb(str(ipinyou_dir / "2997.test.theta.txt"), "--format", "ipinyou-theta", "--info",
                   str(ipinyou_dir / "2997.info.json"), "--strategy", "fixed:bid_cpm=0", "--episode", "1000",
                   "--budget-fraction", "1/32", "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        data = json.loads(out.read_text())
        assert (data["auctions"], data["impressions"], data["cost"]) == (156_063, 1, 0.0)
        assert data["cpm"] == 0.0 and data["ecpc"] == 0.0  # the one free impression was clicked
