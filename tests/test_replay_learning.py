"""rtb replay with strategies that learn: chunks, observe(), custom classes (docs/replay.md,
"Strategies that learn"), on a synthetic log built here and the shared 2997 log if present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dsp.strategies import learns
from rtb import replay as rp
from rtb.bidlog import BidLog, read_bidlog
from rtb.errors import InputError, StrategyError
from rtb.seeding import stream

INFO = rp.CampaignInfo(imp_train=10_000, clk_train=80, cost_train=600_000)  # CPM 60, CTR 0.8 %


def synthetic_log(n: int = 5003, seed: int = 7) -> BidLog:
    """Market prices 0..300 (some above every capped bid), clicks, pCTRs around 1 %."""
    rng = np.random.default_rng(seed)
    price = np.minimum(rng.gamma(2.0, 35.0, n), 320).astype(np.int32)
    pctr = rng.beta(1.0, 99.0, n)
    click = rng.random(n) < pctr * 3
    return BidLog(click, price, pctr, 0, "")


LOG = synthetic_log()


class Observing:
    """A stateless strategy made to look like one that learns: observe() does nothing, so
    replay() takes the chunked loop; its bids must be the one-shot replay's."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = 0

    def bid(self, view):
        return self.inner.bid(view)

    def observe(self, feedback) -> None:
        self.calls += 1


class LowerAfterWin:
    """Bids one CPM for every request; lowers it by `step` for each impression won and
    raises it by `step` after a chunk without any. Records what it saw."""

    def __init__(self, start: float = 90.0, step: float = 0.5):
        self.level, self.step = start, step
        self.views: list = []
        self.feedback: list = []

    def bid(self, view):
        self.views.append(view)
        return np.full(len(view.floor_cpm), self.level)

    def observe(self, feedback) -> None:
        self.feedback.append(feedback)
        won = feedback.won.size
        self.level = max(0.0, self.level - self.step * won) if won else self.level + self.step


def expected_feedback(log: BidLog, start: float, step: float, episode: int, chunk: int,
                      budget: int, tail_budget: int):
    """The replay rule written out in plain Python for LowerAfterWin: per chunk, (requests
    left, budget left, won rows, prices, clicks) and the totals."""
    n = len(log.market_price)
    level = start
    out = []
    for ep_start in range(0, n, episode):
        stop = min(ep_start + episode, n)
        full = stop - ep_start == episode
        if not full and tail_budget < 0:
            break
        left = budget if full else tail_budget
        for a in range(ep_start, stop, chunk):
            b = min(a + chunk, stop)
            bid = min(int(np.floor(level)), rp.MAX_BID)  # the chunk's one bid, made first
            rows, prices, clicks = [], [], []
            left_before = left
            for i in range(a, b):
                price = int(log.market_price[i])
                if min(bid, left) >= price:
                    left -= price
                    rows.append(i - a)
                    prices.append(price)
                    clicks.append(bool(log.click[i]))
            out.append((stop - a, left_before, rows, prices, clicks))
            level = max(0.0, level - step * len(rows)) if rows else level + step
    return out


def one_shot(spec_text: str, log: BidLog = LOG, **kw) -> rp.ReplayResult:
    return rp.replay(log, INFO, rp.strategy_for_replay(spec_text), **kw)


def chunked(spec_text: str, log: BidLog = LOG, info: rp.CampaignInfo = INFO, **kw) -> rp.ReplayResult:
    spec = rp.strategy_for_replay(spec_text)
    strategy = Observing(rp.build_strategy(spec, info))
    result = rp.replay(log, info, spec, strategy=strategy, **kw)
    assert result.chunk is not None and strategy.calls > 0
    return result


def totals(r: rp.ReplayResult) -> list:
    return [r.episode_auctions.tolist(), r.episode_impressions.tolist(), r.episode_clicks.tolist(),
            r.episode_spend.tolist(), r.budget, r.tail_budget]


SPECS = ["fixed:bid_cpm=70", "linear:base_cpm=80", "mcpc", "ortb:c=50,lam=5e-6", "random:max_cpm=150"]


class TestStatelessIsUnchanged:
    @pytest.mark.parametrize("spec", SPECS)
    @pytest.mark.parametrize(("episode", "chunk", "partial"), [
        (1000, 1000, "proportional"), (1000, 7, "full"), (333, None, "drop"), (500, 1, "proportional"),
        (10_000, 999, "proportional")])
    def test_chunked_loop_gives_the_one_shot_numbers(self, spec, episode, chunk, partial) -> None:
        kw = dict(episode=episode, budget_fraction=1 / 8, partial=partial, seed=3)
        assert totals(chunked(spec, chunk=chunk, **kw)) == totals(one_shot(spec, **kw))

    @pytest.mark.parametrize("spec", SPECS)
    def test_a_stateless_strategy_ignores_chunk(self, spec) -> None:
        kw = dict(episode=1000, budget_fraction=1 / 8)
        plain, with_chunk = one_shot(spec, **kw), one_shot(spec, chunk=3, **kw)
        assert with_chunk.chunk is None and with_chunk.to_dict() == plain.to_dict()
        assert list(plain.to_dict()) == list(rp.RESULT_KEYS)

    def test_builtins_do_not_learn(self) -> None:
        for spec in SPECS:
            assert not learns(rp.build_strategy(rp.strategy_for_replay(spec), INFO))


class TestLearning:
    @pytest.mark.parametrize(("episode", "chunk", "partial"), [
        (1000, 100, "proportional"), (1000, None, "full"), (700, 64, "drop"), (250, 1, "proportional")])
    def test_observe_gets_the_wins_of_the_replay_rule(self, episode, chunk, partial) -> None:
        strategy = LowerAfterWin(start=90.0, step=0.5)
        spec = rp.strategy_for_replay("fixed:bid_cpm=0")  # names the run; the object bids
        r = rp.replay(LOG, INFO, spec, episode=episode, budget_fraction=1 / 8, partial=partial,
                      chunk=chunk, strategy=strategy)
        used = min(chunk or rp.DEFAULT_CHUNK, episode)
        assert r.chunk == used
        expected = expected_feedback(LOG, 90.0, 0.5, episode, used, r.budget, r.tail_budget)
        assert len(strategy.feedback) == len(strategy.views) == len(expected)
        offset = 0
        for view, fb, (requests_left, left, rows, prices, clicks) in zip(
                strategy.views, strategy.feedback, expected, strict=True):
            assert view.requests_left == requests_left
            assert view.budget_left == left / 1000  # fen, as the report's cost
            assert not view.pctr.flags.writeable  # the log's own array, read-only
            assert fb.won.tolist() == rows
            assert fb.price_cpm.tolist() == prices  # the log's unit, fen CPM
            assert fb.clicked.tolist() == clicks
            assert fb.cost.tolist() == [p / 1000 for p in prices]
            assert fb.spend_micros == sum(prices) * 1000
            offset += len(view.pctr)
        assert offset == r.auctions
        assert r.impressions == sum(len(e[2]) for e in expected)
        assert r.clicks == sum(sum(e[4]) for e in expected)
        assert r.spend == sum(sum(e[3]) for e in expected)
        n_full = LOG.market_price.size // episode
        assert (r.episode_spend[:n_full] <= r.budget).all() and (r.episode_spend[n_full:] <= r.tail_budget).all()

    def test_the_view_holds_the_log_s_pctr_and_the_episode_s_money(self) -> None:
        strategy = LowerAfterWin()
        r = rp.replay(LOG, INFO, rp.strategy_for_replay("mcpc"), episode=1000, budget_fraction=1 / 8,
                      chunk=400, strategy=strategy, seed=5)
        uniform = stream(5, "replay/rand").random(LOG.pctr.size)
        first, second, third = strategy.views[:3]
        assert np.array_equal(first.pctr, LOG.pctr[:400]) and np.array_equal(third.pctr, LOG.pctr[800:1000])
        assert np.array_equal(second.uniform, uniform[400:800])
        assert not first.floor_cpm.any() and not first.pcvr.any()  # a theta log has no floor
        assert (first.spend, first.budget_left, first.requests_left) == (0.0, r.budget / 1000, 1000)
        spent = sum(int(p) for fb in strategy.feedback[:2] for p in fb.price_cpm)
        assert third.spend == spent / 1000 and third.budget_left == (r.budget - spent) / 1000
        assert strategy.views[3].requests_left == 1000 and strategy.views[3].budget_left == r.budget / 1000
        assert first.time_s is None  # a theta log has no time

    def test_a_learner_s_result_carries_its_chunk(self) -> None:
        r = rp.replay(LOG, INFO, rp.strategy_for_replay("mcpc"), episode=1000, budget_fraction=1 / 8,
                      strategy=LowerAfterWin())
        assert r.chunk == 1000 and list(r.to_dict()) == [*rp.RESULT_KEYS, "chunk"]

    def test_bad_chunk(self) -> None:
        with pytest.raises(InputError, match="--chunk: must be in"):
            rp.replay(LOG, INFO, rp.strategy_for_replay("mcpc"), episode=10, budget_fraction=1, chunk=0)

    def test_bids_of_an_object_are_checked(self) -> None:
        class Negative(LowerAfterWin):
            def bid(self, view):
                return -np.ones(len(view.floor_cpm))

        with pytest.raises(StrategyError, match=r"Negative.bid\(\) returned .* negative"):
            rp.replay(LOG, INFO, rp.strategy_for_replay("mcpc"), episode=10, budget_fraction=1,
                      strategy=Negative())


BIDDERS = '''
import numpy as np


class Lower:
    """Bid `start` CPM, `step` less for each impression won."""

    def __init__(self, start=60.0, step=1.0):
        self.level, self.step = start, step

    def bid(self, view):
        return np.full(len(view.floor_cpm), self.level)

    def observe(self, feedback):
        self.level = max(0.0, self.level - self.step * feedback.won.size)


class Linear:
    """linear:base_cpm=80 with avg_ctr = 0.008 written out, observing nothing."""

    def bid(self, view):
        return view.pctr * (80 / 0.008)

    def observe(self, feedback):
        pass


class WrongShape(Lower):
    def bid(self, view):
        return np.zeros(3)


class NoObserve:
    def bid(self, view):
        return np.zeros(len(view.pctr))
'''


def rtb(*args, cwd: Path):
    from test_cli import rtb_in_process  # tests/ is on sys.path under pytest

    return rtb_in_process("replay", *args, cwd=cwd)


class TestCli:
    @pytest.fixture
    def folder(self, tmp_path: Path) -> Path:
        (tmp_path / "replay_bidders.py").write_text(BIDDERS)
        (tmp_path / "log.txt").write_text("".join(
            f"{int(c)} {p} {float(q)!r}\n" for c, p, q in zip(LOG.click, LOG.market_price, LOG.pctr)))
        (tmp_path / "info.json").write_text(json.dumps(
            {"imp_train": INFO.imp_train, "clk_train": INFO.clk_train, "cost_train": INFO.cost_train}))
        return tmp_path

    def args(self, strategy: str, *more: str) -> list[str]:
        return ["log.txt", "--info", "info.json", "--strategy", strategy, "--episode", "1000",
                "--budget-fraction", "1/8", *more]

    def test_custom_class_from_the_current_folder(self, folder: Path) -> None:
        proc = rtb(*self.args("python:class=replay_bidders:Lower,start=60,step=0.5", "--chunk", "250",
                              "--out", "r.json"), cwd=folder)
        assert proc.returncode == 0, proc.stderr
        assert "chunks of 250" in proc.stdout
        data = json.loads((folder / "r.json").read_text())
        assert data["strategy"] == "python:class=replay_bidders:Lower,start=60,step=0.5"
        assert data["chunk"] == 250
        class Lower(LowerAfterWin):  # the file's class, written here
            def observe(self, feedback) -> None:
                self.level = max(0.0, self.level - self.step * feedback.won.size)

        strategy = Lower(start=60.0, step=0.5)
        r = rp.replay(LOG, INFO, rp.strategy_for_replay("fixed:bid_cpm=0"), episode=1000,
                      budget_fraction=1 / 8, chunk=250, strategy=strategy)
        assert (data["impressions"], data["clicks"], data["cost"]) == (r.impressions, r.clicks, r.cost)

    def test_table_form_and_a_stateless_class_gives_the_builtin_s_numbers(self, folder: Path) -> None:
        custom = rtb(*self.args('{ kind = "python", class = "replay_bidders:Linear" }', "--out", "c.json"),
                     cwd=folder)
        builtin = rtb(*self.args("linear:base_cpm=80,avg_ctr=0.008", "--out", "b.json"), cwd=folder)
        assert custom.returncode == builtin.returncode == 0, custom.stderr + builtin.stderr
        c, b = (json.loads((folder / name).read_text()) for name in ("c.json", "b.json"))
        keys = ("auctions", "impressions", "clicks", "cost")
        assert [c[k] for k in keys] == [b[k] for k in keys] and c["chunk"] == 1000 and "chunk" not in b

    @pytest.mark.parametrize(("strategy", "message"), [
        ("python:class=absent_module:X",
         "command line: --strategy.class: no module 'absent_module' in {folder} or the Python path"),
        ("python:class=replay_bidders:Absent", "command line: --strategy.class: module 'replay_bidders'"),
        ("python:class=replay_bidders:NoObserve",
         "command line: --strategy.class: class replay_bidders:NoObserve has no observe method"),
        ("python:class=replay_bidders:Lower,shade=1",
         "command line: --strategy.params: replay_bidders:Lower(**params) failed: TypeError"),
        ("python:class=nocolon", "command line: --strategy.class: 'nocolon' is not module:Class"),
    ])
    def test_load_time_problems_exit_2(self, folder: Path, strategy: str, message: str) -> None:
        proc = rtb(*self.args(strategy), cwd=folder)
        assert proc.returncode == 2
        assert message.format(folder=folder.resolve()) in proc.stderr
        assert "Traceback" not in proc.stderr

    @pytest.mark.parametrize(("args", "message"), [
        (["--strategy", "python:class=replay_bidders:WrongShape"],
         "error: replay_bidders:WrongShape.bid() returned an array of shape (3,) for 1000 requests"),
        (["--strategy", "python:class=replay_bidders:Lower", "--chunk", "0"], "--chunk: must be in [1,"),
        (["--strategy", "python:class=replay_bidders:Lower", "--tune", "base_cpm", "--validation",
          "log.txt"], "--tune: base_cpm cannot be tuned for 'python'"),
    ])
    def test_run_time_problems_exit_2(self, folder: Path, args, message: str) -> None:
        base = self.args("mcpc")
        base[base.index("--strategy"):base.index("--strategy") + 2] = []
        proc = rtb(*base, *args, cwd=folder)
        assert proc.returncode == 2
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr


class TestShared2997:
    @pytest.fixture
    def data(self, ipinyou_dir: Path) -> tuple[BidLog, rp.CampaignInfo]:
        return read_bidlog(ipinyou_dir / "2997.test.theta.txt"), rp.load_info(ipinyou_dir / "2997.info.json")

    @pytest.mark.parametrize(("spec", "impressions", "clicks", "spend"), [
        ("mcpc", 14_725, 48, 307_060), ("linear:base_cpm=80", 11_597, 40, 307_040),
        ("fixed:bid_cpm=30", 22_792, 61, 307_030)])
    def test_published_numbers_with_and_without_chunks(self, data, spec, impressions, clicks, spend) -> None:
        log, info = data
        kw = dict(episode=1000, budget_fraction=1 / 32)
        plain = rp.replay(log, info, rp.strategy_for_replay(spec), **kw)
        assert (plain.impressions, plain.clicks) == (impressions, clicks)
        assert abs(plain.spend - spend) < 10  # docs/replay.md rounds cost to 0.01 fen
        for chunk in (1000, 37):
            assert totals(chunked(spec, log, info, chunk=chunk, **kw)) == totals(plain)

    def test_a_learner_replays_the_log_quickly(self, data) -> None:
        import time

        log, info = data
        spec = rp.strategy_for_replay("fixed:bid_cpm=0")
        rp.replay(log._replace(**{k: getattr(log, k)[:2000] for k in ("click", "market_price", "pctr")}),
                  info, spec, episode=1000, budget_fraction=1 / 32, strategy=LowerAfterWin())  # compile
        start = time.perf_counter()
        r = rp.replay(log, info, spec, episode=1000, budget_fraction=1 / 32, strategy=LowerAfterWin(60, 0.05))
        assert r.auctions == 156_063
        assert time.perf_counter() - start < 1.0
