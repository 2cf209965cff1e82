"""Benchmark of the simulation tick kernel clear_tick_nb against a bare top-two loop on the same bids.

Run (from the repository root): python -m pytest benchmarks/bench_tick_kernel.py --benchmark-only -s

One batch per campaign count: 200,000 requests in one UTC day (no midnight or window
boundary inside), 100,000 users, floors, the rest of the market, a deal on 10 % of the
requests, calendar caps per campaign and per advertiser, budgets that never run out,
second price. Every campaign targets every request, so the kernel visits every bid the
bare loop scans (no brand-safety blocks: slot_blocked_words is all zeros). Per-user
books are laid out as the simulation lays them out (rtb.state.new_user_rows: one row per
user, rtb/layout.py, as a long run lays it out: a counter per cap, touches with a high
part; rows handed out in order of first appearance). The
kernel updates its books in
place: each timed round starts from a fresh copy, made outside the timing. Every
function is compiled (called once) first.

A third loop, the bare one plus one prefetched read of the request's user's cap row,
shows how much of the kernel's distance from the bare loop is memory: little.

Two more loops bound what any kernel with these rules can reach: the least work
that floors, caps and budgets take (least_capped_nb), without and with the per-user
books a report needs. At 8 campaigns the first stays near a third of the bare loop's
speed; with the books, the second reaches about half only at 128 (docs/auction.md).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from rtb import types as T
from numba import njit

from rtb.books import (NO_ID_NONE, CampaignBook, CapBook, Deals, Targeting, UserBook,
                       campaign_words, encode_touch, new_result, new_seller_book)
from rtb.kernel import clear_tick_nb
from rtb.prefetch import PREFETCH_AHEAD, prefetch_row
from rtb.layout import row_layout
from rtb.shards import Clearing
from rtb.state import assign_user_rows_nb, new_user_rows, user_rows
from rtb.types import RequestBatch

from bench_auction import bare_top2_nb  # the same bare loop as the clear() benchmark

N_REQ = 200_000
N_USERS = 100_000
N_SLOTS = 1_000
CAMPAIGNS = (8, 32, 128)
NAN_SHARE = 0.10
DEAL_SHARE = 0.10
ROUNDS = 9
RATIO_REPEATS = 9
THREADS_TARGET = 1.8  # the kernel on two threads against one, on the same batch
ROWS: dict[int, dict[str, float]] = {}  # ratio results per campaign count, for the table


@njit(cache=True)
def bare_top2_user_row_nb(bids, user, counts, best_out, second_out):
    """bare_top2_nb plus the least per-user work a capped auction does: one read of the
    request's user's cap counters, prefetched as the kernel prefetches them."""
    n_req, n_bidders = bids.shape
    for i in range(n_req):
        if i + PREFETCH_AHEAD < n_req:
            prefetch_row(counts, user[i + PREFETCH_AHEAD])
        best = -np.inf
        second = -np.inf
        for j in range(n_bidders):
            b = bids[i, j]
            gt = b > best
            lo = best if gt else b
            second = lo if lo > second else second
            best = b if gt else best
        best_out[i] = best + counts[user[i], 0]
        second_out[i] = second


@njit(cache=True)
def least_capped_nb(bids, floor_cpm, time_s, user, books, last_touch, n_adv,
                    limit, advertiser, adv_limit, remaining, n_candidates, won, reach, user_books,
                    winner, price_out):
    """The least work a kernel with floors, frequency caps and budgets does per request.

    The bare scan, also keeping the top bid's column; one count per bid (the report's
    loss reasons need every bid's fate); the user's cap counter for the top bid and its
    campaign's budget; on a sale, the books. With user_books, also what a report needs:
    the advertiser's cap, the user's exposures (reach) and last touch (attribution:
    its exact time and campaign, as the kernel writes them). A user's books are one row
    of `books`, the fastest layout measured: without user_books its cap counters alone;
    with them [last touches i8 x n_adv (time and campaign packed, as the kernel keeps
    them) | cap counters | advertiser cap counters | exposures] (`last_touch` is the
    int64 view of the same rows). Left out,
    although a full kernel
    has them: deals, targeting, pacing, flights, the walk past a top bid that is capped
    or cannot pay (here the request goes unsold), and the other loss reasons. So a full
    kernel can hardly do better than this loop's share of the bare loop's speed.
    """
    n, nc = bids.shape
    counts0 = 8 * n_adv if user_books else 0
    adv0 = counts0 + nc
    exp0 = adv0 + n_adv
    for i in range(n):
        if i + PREFETCH_AHEAD < n:
            prefetch_row(books, user[i + PREFETCH_AHEAD])
        floor = floor_cpm[i]
        best = -np.inf
        second = -np.inf
        leader = 0
        for j in range(nc):
            b = bids[i, j]
            n_candidates[j] += b >= floor
            gt = b > best
            lo = best if gt else b
            second = lo if lo > second else second
            leader = j if gt else leader
            best = b if gt else best
        u = user[i]
        a = advertiser[leader]
        price = second if second > floor else floor
        micros = np.int64(price * T.MICROS_PER_CPM + 0.5)
        sold = (best >= floor and books[u, counts0 + leader] < limit[leader]
                and micros <= remaining[leader])
        if user_books:
            sold = sold and books[u, adv0 + a] < adv_limit[a]
        if not sold:
            winner[i] = T.UNSOLD
            price_out[i] = 0.0
            continue
        remaining[leader] -= micros
        books[u, counts0 + leader] += 1
        won[leader] += 1
        winner[i] = leader
        price_out[i] = price
        if user_books:
            books[u, adv0 + a] += 1
            seen = books[u, exp0 + leader]
            reach[leader] += seen == 0
            books[u, exp0 + leader] = seen + (seen < 255)
            last_touch[u, a] = encode_touch(time_s[i], leader)


def _copy(a: np.ndarray, rows, work_rows) -> np.ndarray:
    """A copy; a per-user column a view of the working rows (the simulation's layout)."""
    if not isinstance(a, np.ndarray):
        return a  # a scalar field (UserBook.no_id_row)
    for name, column in rows._asdict().items():
        if column is a:
            return getattr(work_rows, name)
    return np.array(a, copy=True)


def _fresh(nt, rows, work_rows):
    return type(nt)(*(_copy(a, rows, work_rows) for a in nt))


class TickBatch:
    """One tick's requests, bids and books, compiled and ready to be timed."""

    def __init__(self, nc: int) -> None:
        rng = np.random.default_rng([20_261_201, nc])
        n = N_REQ
        n_adv = max(1, nc // 4)
        self.nc = nc
        # One row per request, as the exchange hands bids to the kernel.
        self.bids = rng.uniform(0.0, 5.0, (n, nc))
        self.bids[rng.random((n, nc)) < NAN_SHARE] = np.nan
        deal = np.where(rng.random(n) < DEAL_SHARE, rng.integers(0, 4, n), -1).astype(np.int32)
        # The kernel reads time, user, slot, floor, market, pacing uniform and deal (drawn
        # in this order, as before the RequestBatch: the same batch); the other fields
        # are typed placeholders.
        time_s = T.on_clock(np.sort(rng.uniform(0.0, T.SECONDS_PER_DAY, n)))  # as a run makes them
        user = rng.integers(0, N_USERS, n)
        slot = rng.integers(0, N_SLOTS, n)
        floor_cpm = rng.uniform(0.0, 2.5, n)
        market_cpm = np.where(rng.random(n) < 0.7, rng.lognormal(np.log(1.5), 0.5, n), np.nan)
        # The row of a long run (compact=False: a counter per cap, touches with a high
        # part), the widest; rows handed out as the run hands them out.
        day = T.SECONDS_PER_DAY
        layout = row_layout(nc, n_adv, 0.0, day, ["calendar"] * nc, [2] * nc, [day] * nc, n_adv,
                            -(-nc // n_adv), compact=False)
        self.rows = rows = new_user_rows(N_USERS, layout)
        user_row = assign_user_rows_nb(rows.row_of, rows.rows_in_use, user, NO_ID_NONE)
        self.req = RequestBatch(
            time_s=time_s, slot=slot, target_row=slot, publisher=np.zeros(n, np.int32),
            format=np.zeros(n, np.uint8), deal=deal, market_cpm=market_cpm,
            floor_cpm=floor_cpm, user=user, user_row=user_row, device_user=user, person=user,
            geo=np.zeros(n, np.uint8),
            user_ctr=np.ones(n, np.float32), user_segments=np.zeros(n, np.uint64),
            u_pace=rng.random(n), u_click=np.zeros(n), u_convert=np.zeros(n),
            u_delay=np.zeros(n))
        self.targeting = Targeting(
            campaign_words(np.ones((N_SLOTS, nc), bool)), campaign_words(np.zeros((N_SLOTS, nc), bool)),
            campaign_words(np.zeros((N_SLOTS, nc), bool)),
            campaign_words(np.ones((N_USERS, nc), bool)),
            np.zeros(nc), np.full(nc, 7 * T.SECONDS_PER_DAY), np.ones(nc), rng.random(nc))
        # Four deals: open and private, floor and fixed price, each open to a quarter of
        # the campaigns.
        self.deals = Deals(np.array([2.0, 2.5, 1.5, 3.0]), np.array([False, False, True, True]),
                           np.array([False, True, False, True]), rng.random((4, nc)) < 0.25)
        self.book = CampaignBook(
            advertiser=(np.arange(nc) % n_adv).astype(np.int32),
            dsp_fee_ppm=np.full(nc, 150_000, np.int64),
            data_micros=np.full(nc, 100, np.int64),
            remaining_total=np.full(nc, 10**11, np.int64),  # 100,000 units: never runs out
            remaining_daily=np.full(nc, 10**10, np.int64),
            daily_budget=np.full(nc, 10**10, np.int64),
            day_end_s=np.full(nc, day),
            media_micros=np.zeros(nc, np.int64), fee_micros=np.zeros(nc, np.int64),
            data_cost_micros=np.zeros(nc, np.int64),
            outcomes=np.zeros((nc, T.N_OUTCOMES), np.int64), reach=np.zeros(nc, np.int64))
        self.caps = CapBook(
            kind=np.full(nc, T.CAP_CALENDAR, np.int8), limit=np.full(nc, 2, np.int32),
            window_s=np.full(nc, day), calendar_limit=np.full(nc, 2, np.int32),
            window_end_s=np.full(nc, day), ring_start=np.zeros(nc, np.int32),
            counts=rows.counts, ring_low=rows.ring_low, ring_high=rows.ring_high,
            adv_kind=np.full(n_adv, T.CAP_CALENDAR, np.int8), adv_limit=np.full(n_adv, 4, np.int32),
            adv_window_s=np.full(n_adv, day), adv_window_end_s=np.full(n_adv, day),
            adv_counts=rows.adv_counts, cal_col=np.arange(nc, dtype=np.int32),
            adv_col=np.arange(n_adv, dtype=np.int32), rows_in_use=rows.rows_in_use)
        # Campaign c is advertiser c % n_adv's (c // n_adv)-th: two bits of rank.
        self.users = UserBook(
            rows.exposures, rows.touch_low, rows.touch_high, rows.row_of, rows.rows_in_use,
            touch_bits=2, touch_rank=(np.arange(nc) // n_adv).astype(np.int32),
            touch_campaign=(np.arange(4)[None, :] * n_adv + np.arange(n_adv)[:, None]).astype(np.int32))
        self.sellers = new_seller_book(1, nc)
        # Working copies the kernel mutates, restored before every timed call.
        self.work_rows = work_rows = new_user_rows(N_USERS, layout)
        self.work = [_fresh(part, rows, work_rows)
                     for part in (self.book, self.caps, self.users, self.sellers)]
        self.result = new_result(n)
        self.best = np.empty(n)
        self.second = np.empty(n)
        # least_capped_nb's state: one row per user, the caps alone or all the books
        # in whole cache lines.
        row_bytes = -(-(8 * n_adv + 2 * nc + n_adv) // 64) * 64
        self.least_caps = user_rows(N_USERS, nc, np.uint8, 0)
        self.least_books = user_rows(N_USERS, row_bytes, np.uint8, 0)
        self.least_state = [np.zeros(nc, np.int64) for _ in range(4)]  # remaining, candidates, won, reach
        self.bare()
        self.bare_user_row()
        self.reset_least()
        self.least(False)
        self.reset_least()
        self.least(True)
        self.reset()
        self.kernel()
        self.reset()

    def reset(self) -> None:
        """Copy the pristine books into the working ones (in place: no page faults later)."""
        np.copyto(self.work_rows.buffer, self.rows.buffer)
        for pristine, work in zip((self.book, self.caps, self.users, self.sellers), self.work):
            for a, b in zip(pristine, work):
                if isinstance(b, np.ndarray) and b.base is None:
                    np.copyto(b, a)

    def reset_least(self) -> None:
        """Fresh books for least_capped_nb, written just before it as reset's are for the kernel."""
        self.least_caps.fill(0)
        self.least_books.fill(0)
        remaining, *counters = self.least_state
        np.copyto(remaining, self.book.remaining_total)
        for a in counters:
            a.fill(0)

    def bare(self) -> None:
        bare_top2_nb(self.bids, self.best, self.second)

    def bare_user_row(self) -> None:
        bare_top2_user_row_nb(self.bids, self.req.user, self.work[1].counts, self.best, self.second)

    def least(self, user_books: bool) -> None:
        caps, book = self.caps, self.book
        remaining, candidates, won, reach = self.least_state
        books = self.least_books if user_books else self.least_caps
        least_capped_nb(self.bids, self.req.floor_cpm, self.req.time_s, self.req.user,
                        books, self.least_books.view(np.int64), caps.adv_limit.size,
                        caps.calendar_limit, book.advertiser, caps.adv_limit, remaining,
                        candidates, won, reach, user_books, self.result.winner, self.result.price_cpm)

    def kernel(self) -> None:
        book, caps, users, sellers = self.work
        clear_tick_nb(self.req, self.bids, T.MECHANISM_SECOND, self.targeting, self.deals,
                      book, caps, users, sellers, None, self.result)


@pytest.fixture(scope="module", params=CAMPAIGNS, ids=lambda n: f"{n}campaigns")
def batch(request) -> TickBatch:
    return TickBatch(request.param)


@pytest.fixture(scope="module", autouse=True)
def _print_table(request):
    yield
    if not ROWS:
        return
    lines = ["", "tick kernel vs bare top-two loop (best of "
             f"{RATIO_REPEATS}, {N_REQ:,} requests, M auctions/s):",
             "| campaigns | bare top-two | + user row | least: floors, caps, budgets"
             " | least + user books | clear_tick_nb | kernel / bare |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for nc, row in sorted(ROWS.items()):
        share = {name: f"{rate / 1e6:.1f} ({rate / row['bare']:.0%})" for name, rate in row.items()}
        lines.append(f"| {nc} | {row['bare'] / 1e6:.1f} | {share['bare_user_row']} | {share['least']} |"
                     f" {share['least_books']} | {row['kernel'] / 1e6:.2f} |"
                     f" {row['kernel'] / row['bare']:.1%} |")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n".join(lines))


def _record_rate(benchmark, batch: TickBatch) -> None:
    info = benchmark.extra_info
    info["n_req"] = N_REQ
    info["n_campaigns"] = batch.nc
    info["auctions_per_s"] = N_REQ / benchmark.stats.stats.median
    # The best round too: on a shared 2-core machine the median carries other jobs' noise.
    info["auctions_per_s_best"] = N_REQ / benchmark.stats.stats.min


def test_bare_top2(benchmark, batch):
    benchmark.pedantic(batch.bare, rounds=ROUNDS, iterations=1)
    _record_rate(benchmark, batch)


def test_tick_kernel(benchmark, batch):
    benchmark.pedantic(batch.kernel, setup=batch.reset, rounds=ROUNDS, iterations=1)
    _record_rate(benchmark, batch)
    # What was timed must be a real clearing of this batch: everything sold that could
    # be, no budget ran out, no boundary was crossed.
    book, caps, _, _ = batch.work
    assert book.outcomes[:, T.LOSS_OUT_OF_BUDGET].sum() == 0
    assert book.outcomes[:, T.OUTCOME_BLOCKED].sum() == 0
    assert book.outcomes[:, T.WON].sum() == np.count_nonzero(batch.result.winner >= 0)
    assert book.outcomes[:, T.LOSS_FREQUENCY_CAPPED].sum() > 0
    assert batch.result.deal_won.any()
    assert np.all(caps.window_end_s == T.SECONDS_PER_DAY)
    assert np.count_nonzero(batch.result.winner == T.UNSOLD) < N_REQ // 5


def _ratio_run(batch: TickBatch) -> dict[str, float]:
    """Best-of-N seconds for each contender, interleaved so that drift hits all alike.

    Each contender's books are written fresh just before it runs, outside the timing."""
    fns = {"bare": (batch.reset, batch.bare), "bare_user_row": (batch.reset, batch.bare_user_row),
           "least": (batch.reset_least, lambda: batch.least(False)),
           "least_books": (batch.reset_least, lambda: batch.least(True)),
           "kernel": (batch.reset, batch.kernel)}
    best = dict.fromkeys(fns, np.inf)
    for _ in range(RATIO_REPEATS):
        for name, (setup, fn) in fns.items():
            setup()
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def test_kernel_vs_bare_ratio(benchmark, batch, capsys):
    """clear_tick_nb throughput as a share of the bare loop's, both timed in this one run."""
    seconds = benchmark.pedantic(_ratio_run, args=(batch,), rounds=1, iterations=1)
    rates = {name: N_REQ / s for name, s in seconds.items()}
    ROWS[batch.nc] = rates
    info = benchmark.extra_info
    info["n_campaigns"] = batch.nc
    info["bare_auctions_per_s"] = rates["bare"]
    info["kernel_auctions_per_s"] = rates["kernel"]
    info["kernel_over_bare"] = rates["kernel"] / rates["bare"]
    info["bare_user_row_over_bare"] = rates["bare_user_row"] / rates["bare"]
    info["least_over_bare"] = rates["least"] / rates["bare"]
    info["least_books_over_bare"] = rates["least_books"] / rates["bare"]
    # The least loops' last round was a real clearing: sales, and caps that bit.
    _, _, won, reach = batch.least_state
    assert 0 < won.sum() < N_REQ and 0 < reach.sum() < won.sum()
    with capsys.disabled():
        print(f"\n{batch.nc:4d} campaigns: bare {rates['bare'] / 1e6:7.1f} M/s,"
              f" bare + user row {rates['bare_user_row'] / 1e6:7.1f} M/s"
              f" ({info['bare_user_row_over_bare']:.0%}),"
              f" least {info['least_over_bare']:.0%}, least + books {info['least_books_over_bare']:.0%},"
              f" clear_tick_nb {rates['kernel'] / 1e6:6.2f} M/s,"
              f" kernel/bare {info['kernel_over_bare']:.1%}")


def _threads_run(batch: TickBatch) -> dict[int, float]:
    """Best-of-N seconds of the batch cleared on one thread and on two (rtb.shards),
    alternately, each from fresh books; checks that both leave the same books."""
    clearings = {threads: Clearing(threads) for threads in (1, 2)}
    best = dict.fromkeys(clearings, np.inf)
    books = {}
    try:
        for _ in range(RATIO_REPEATS):
            for threads, clearing in clearings.items():
                batch.reset()
                t0 = time.perf_counter()
                result = clearing.clear(batch.req, batch.bids, T.MECHANISM_SECOND, batch.targeting,
                                        batch.deals, *batch.work)
                best[threads] = min(best[threads], time.perf_counter() - t0)
                books[threads] = (result, [[np.array(a, copy=True) for a in part]
                                           for part in batch.work])
    finally:
        for clearing in clearings.values():
            clearing.close()
    assert clearings[2].sharded_ticks == RATIO_REPEATS and clearings[2].undone_ticks == 0
    (one, one_books), (two, two_books) = books[1], books[2]
    np.testing.assert_array_equal(one.winner, two.winner)
    np.testing.assert_array_equal(one.price_cpm, two.price_cpm)
    for a, b in zip(one_books, two_books):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    return best


def test_kernel_two_threads_vs_one(benchmark, batch, capsys):
    """The tick kernel sharded over two threads against one thread, in this one run."""
    seconds = benchmark.pedantic(_threads_run, args=(batch,), rounds=1, iterations=1)
    speedup = seconds[1] / seconds[2]
    info = benchmark.extra_info
    info.update({"n_campaigns": batch.nc, "one_thread_auctions_per_s": N_REQ / seconds[1],
                 "two_threads_auctions_per_s": N_REQ / seconds[2], "speedup": speedup})
    with capsys.disabled():
        print(f"\n{batch.nc:4d} campaigns: one thread {N_REQ / seconds[1] / 1e6:6.2f} M/s,"
              f" two {N_REQ / seconds[2] / 1e6:6.2f} M/s, speed-up {speedup:.2f}x"
              f" (target >= {THREADS_TARGET}x)")
    assert speedup >= THREADS_TARGET


def test_two_independent_kernels_at_once(benchmark, batch, capsys):
    """What this machine's two cores give a one-thread kernel: the same batch cleared
    by two kernels at once, each on its own copy of the books (nothing shared), against
    one alone. Sharding cannot beat this throughput ratio."""
    other = TickBatch(batch.nc)
    pool = ThreadPoolExecutor(max_workers=1)

    def run() -> tuple[float, float]:
        alone = together = np.inf
        for _ in range(RATIO_REPEATS):
            batch.reset()
            t0 = time.perf_counter()
            batch.kernel()
            alone = min(alone, time.perf_counter() - t0)
            batch.reset()
            other.reset()
            t0 = time.perf_counter()
            future = pool.submit(other.kernel)
            batch.kernel()
            future.result()
            together = min(together, time.perf_counter() - t0)
        return alone, together

    try:
        alone, together = benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        pool.shutdown()
    ratio = 2 * alone / together
    benchmark.extra_info.update({"n_campaigns": batch.nc, "alone_s": alone, "together_s": together,
                                 "throughput_ratio": ratio})
    with capsys.disabled():
        print(f"\n{batch.nc:4d} campaigns: one kernel alone {alone * 1e3:.1f} ms, two at once"
              f" {together * 1e3:.1f} ms: {ratio:.2f}x the throughput of one")
