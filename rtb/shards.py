"""The tick kernel on several threads: a tick's requests sharded by user, exactly.

Caps, exposures and touches are per user, so the requests of different users may
clear in any order and on any thread; what couples them is money. Each shard clears
its users' requests in time order, on its own copies of the campaigns' budgets and
counters and into its own result rows (shards writing next to each other's rows
would fight over cache lines). Then, for each campaign:

- a budget check that failed in a shard fails on one thread too: one thread's budget
  left at that time is the shard's less what the other shards spent before it;
- one that passed passes on one thread too if the worst costs of all the checks that
  passed, in every shard, add up to at most its budget left at the tick's start
  (the least of total and daily): what it spent before a check is among the others.

When every campaign's passed checks fit, every answer, and so every decision, is the
one-thread run's; the shards' integer sums go to the books, bit for bit. Otherwise
the shards' per-user writes are undone (each win left in its result row what it
replaced) and the tick clears again on one thread. A tick in which a UTC midnight or
a calendar-cap boundary falls after its first request clears on one thread from the
start.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from rtb import types as T
from rtb.books import (
    BidBook,
    CampaignBook,
    CapBook,
    Deals,
    SellerBook,
    Targeting,
    TickResult,
    UserBook,
    new_result,
    touch_for_book,
    write_split,
)
from rtb.kernel import (
    clear_requests_nb,
    clear_tick,
    cross_boundaries_nb,
)
from rtb.types import RequestBatch

# Shards per thread; each thread takes the next shard left. More would let a thread
# slowed by another job take fewer, but a shard's requests are scattered over the
# tick: 8 shards of a 200,000-request batch, cleared one after another, took 1.3x
# the time of 2 (benchmarks/bench_tick_kernel.py's batch). Any number gives the same
# result.
SHARDS_PER_THREAD = 1
# User rows per block of a shard (2**ROW_BLOCK_SHIFT): rows are at least a byte, and
# 64 of them are whole cache lines (the buffer is aligned to one), so two shards never
# write the same line of the user rows (two cores writing one line pass it back and
# forth at each write).
ROW_BLOCK_SHIFT = 6
# Below this many requests a tick clears on one thread: handing work to another
# thread and adding up the shards costs tens of microseconds.
MIN_SHARDED_REQUESTS = 1_024


def default_threads() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@njit(cache=True)
def undo_wins_nb(order, user, user_row, result, book, caps, users):
    """Undo the per-user writes of the campaign wins of a shard (its requests `order`,
    in time order; result[k] is request order[k]'s), newest first."""
    advertiser, cap_kind, adv_kind = book.advertiser, caps.kind, caps.adv_kind
    for k in range(order.size - 1, -1, -1):
        c, r = result.winner[k], user_row[order[k]]
        if c < 0 or user[order[k]] >= users.no_id_row:
            continue
        a = advertiser[c]
        users.exposures[r, c] = result.prior_exposures[k]
        write_split(users.touch_low, users.touch_high, r, a,
                    touch_for_book(result.prior_touch[k], users.touch_bits, users.touch_rank))
        if cap_kind[c] == T.CAP_CALENDAR:
            caps.counts[r, caps.cal_col[c]] -= 1
        elif cap_kind[c] == T.CAP_ROLLING:
            write_split(caps.ring_low, caps.ring_high, r, result.replaced_slot[k],
                        result.replaced_value[k])
        if adv_kind[a] == T.CAP_CALENDAR:
            caps.adv_counts[r, caps.adv_col[a]] -= 1


@njit(cache=True, nogil=True)
def scatter_range_nb(order, rows, start, stop, result):
    """A shard's result rows (its requests `order`, in time order) for requests
    start..stop, into the tick's result. Each thread writes its own range of the
    result: the shards' requests are interleaved, and two threads writing one cache
    line pass it back and forth."""
    for r in range(np.searchsorted(order, start), np.searchsorted(order, stop)):
        i = order[r]
        result.winner[i] = rows.winner[r]
        result.price_cpm[i] = rows.price_cpm[r]
        result.prior_exposures[i] = rows.prior_exposures[r]
        result.deal_won[i] = rows.deal_won[r]
        result.open_auction[i] = rows.open_auction[r]
        result.floor_hit[i] = rows.floor_hit[r]
        result.prior_touch[i] = rows.prior_touch[r]
        result.replaced_slot[i] = rows.replaced_slot[r]
        result.replaced_value[i] = rows.replaced_value[r]


@njit(cache=True, nogil=True)
def shard_requests_nb(user, user_row, no_id_row, n_shards, block_shift, shard):
    """Shard `shard`'s requests, in time order. Users go to shards with their rows, in
    blocks of 2**block_shift rows (block b to shard b % n_shards); a request without an
    id (no row of its own) goes by its index."""
    order = np.empty(user.size, np.int64)
    n = 0
    # Without a branch (a request's shard is random) nor, for 2, 4, ... shards, a
    # division: each request is written, and kept if it is the shard's.
    mask = n_shards - 1
    power_of_two = n_shards & mask == 0
    for i in range(user.size):
        block = (user_row[i] >> block_shift) if user[i] < no_id_row else i
        k = (block & mask) if power_of_two else block % n_shards
        order[n] = i
        n += k == shard
    return order[:n]


def _private_book(book: CampaignBook) -> CampaignBook:
    """A shard's campaign book: the parameters shared, its own budgets left (copies of
    the tick's start) and zeroed counters."""
    nc = book.advertiser.size
    return book._replace(remaining_total=book.remaining_total.copy(),
                         remaining_daily=book.remaining_daily.copy(),
                         media_micros=np.zeros(nc, np.int64), fee_micros=np.zeros(nc, np.int64),
                         data_cost_micros=np.zeros(nc, np.int64),
                         outcomes=np.zeros_like(book.outcomes), reach=np.zeros(nc, np.int64))


@njit(cache=True)
def add_shard_nb(book, sellers, start_total, start_daily, shard, shard_sellers):
    """A shard's spend and counts added to the books (integer sums: any order is exact)."""
    for c in range(start_total.size):
        book.remaining_total[c] -= start_total[c] - shard.remaining_total[c]
        book.remaining_daily[c] -= start_daily[c] - shard.remaining_daily[c]
        book.media_micros[c] += shard.media_micros[c]
        book.fee_micros[c] += shard.fee_micros[c]
        book.data_cost_micros[c] += shard.data_cost_micros[c]
        book.reach[c] += shard.reach[c]
        for k in range(book.outcomes.shape[1]):
            book.outcomes[c, k] += shard.outcomes[c, k]
    for mine, theirs in ((sellers.wins, shard_sellers.wins),
                         (sellers.media_micros, shard_sellers.media_micros),
                         (sellers.hidden_bids, shard_sellers.hidden_bids)):
        mine += theirs


class Clearing:
    """Clears ticks with the tick kernel on `threads` threads (this one and a pool);
    the results are the same whatever the number."""

    def __init__(self, threads: int = 1):
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads
        self.row_block_shift = ROW_BLOCK_SHIFT  # tests set 0: their markets have a few users
        self._pool = (ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="rtb-shard")
                      if threads > 1 else None)
        # Ticks cleared; of them, in shards; and sharded, then undone and cleared on one thread.
        self.ticks = self.sharded_ticks = self.undone_ticks = 0

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def clear(self, requests: RequestBatch, bids: np.ndarray, mechanism: int,
              targeting: Targeting, deals: Deals, book: CampaignBook, caps: CapBook,
              users: UserBook, sellers: SellerBook, bid_book: BidBook | None = None) -> TickResult:
        """clear_tick's result and book updates, on several threads where exact."""
        n = requests.time_s.size
        self.ticks += 1
        # The bids each publisher received sum float bids, whose sum depends on the
        # order: with that book a tick clears on one thread.
        if self._pool is None or bid_book is not None or n < MIN_SHARDED_REQUESTS:
            return clear_tick(requests, bids, mechanism, targeting, deals, book, caps, users,
                              sellers, bid_book)
        bids = np.ascontiguousarray(bids, dtype=np.float64)
        # The boundaries up to the first request first, as the kernel would cross them.
        if cross_boundaries_nb(requests.time_s[0], book, caps) <= requests.time_s[-1]:
            return clear_tick(requests, bids, mechanism, targeting, deals, book, caps, users,
                              sellers, bid_book)
        n_shards = SHARDS_PER_THREAD * self.threads
        orders, books, seller_books, results, passed_worst = ([None] * n_shards for _ in range(5))

        def clear_shard(k: int) -> None:
            # Found and allocated by the thread that writes them: apart from the other
            # threads' (two cores writing one cache line pass it back and forth).
            orders[k] = shard_requests_nb(requests.user, requests.user_row, users.no_id_row,
                                          n_shards, self.row_block_shift, k)
            books[k] = _private_book(book)
            seller_books[k] = SellerBook(*(np.zeros_like(a) for a in sellers))
            results[k] = new_result(orders[k].size)
            passed_worst[k] = np.zeros(book.advertiser.size, np.int64)
            clear_requests_nb(orders[k], requests, bids, mechanism, targeting, deals, books[k],
                              caps, users, seller_books[k], None, results[k], passed_worst[k])

        self._on_all_threads(clear_shard, n_shards)
        budget_left = np.minimum(book.remaining_total, book.remaining_daily)
        if (np.sum(passed_worst, axis=0) > budget_left).any():
            # The order of some budget checks could have mattered: one thread decides.
            self.undone_ticks += 1
            for shard_order, shard_result in zip(orders, results):
                undo_wins_nb(shard_order, requests.user, requests.user_row, shard_result, book,
                             caps, users)
            return clear_tick(requests, bids, mechanism, targeting, deals, book, caps, users,
                              sellers, bid_book)
        self.sharded_ticks += 1
        start_total, start_daily = book.remaining_total.copy(), book.remaining_daily.copy()
        for shard, shard_sellers in zip(books, seller_books):
            add_shard_nb(book, sellers, start_total, start_daily, shard, shard_sellers)
        # The shards' rows back in request order: each thread a range of the tick's.
        result = TickResult(*(np.empty(n, a.dtype) for a in results[0]))
        cuts = np.linspace(0, n, self.threads + 1).astype(np.int64)

        def write_back(k: int) -> None:
            for shard_order, shard_result in zip(orders, results):
                scatter_range_nb(shard_order, shard_result, cuts[k], cuts[k + 1], result)

        self._on_all_threads(write_back, self.threads)
        return result

    def _on_all_threads(self, task, n_tasks: int) -> None:
        """task(0), ..., task(n_tasks - 1), each taken by the next free thread of this
        one and the pool's; returns when all are done."""
        tasks = itertools.count()  # shared by the threads: each takes the next task left

        def work() -> None:
            while (k := next(tasks)) < n_tasks:
                task(k)

        others = [self._pool.submit(work) for _ in range(self.threads - 1)]
        work()
        for future in others:
            future.result()
