"""People behind the ids: exposures, caps and cap leakage counted per real person.

The kernel sees ids only (caps, reach, attribution are per id), which is what an ad
platform shows. This book is the simulator's truth beside it: every won impression is
also counted against the person who saw it, with the person-level twin of every cap
the kernel enforces per id (the same calendar windows, aligned to UTC epoch time as
the kernel's CapBook; rolling caps as the person's last `limit` impression times), so
the report can say how many impressions went beyond a cap per person (cap leakage)
when one person shows up under several ids.

Memory per person: one u1 exposure counter per campaign and per advertiser, plus u1
counters only for the campaigns and advertisers with a calendar cap and f8 times
only for rolling caps' rings. Nothing in the kernel reads this book.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from rtb.books import exposures_in_use
from rtb.prefetch import PREFETCH_AHEAD, prefetch_cell
from rtb.types import CAP_CALENDAR, CAP_ROLLING

HISTOGRAM_BINS = 10  # people reached 1, 2, ..., 9, and 10 or more times


class PeopleBook(NamedTuple):
    """Per-person counters a run updates (record_people); index = person."""

    exposures: np.ndarray  # u1[n_people, nc]: impressions per (person, campaign), saturating at 255
    adv_exposures: np.ndarray  # u1[n_people, n_adv]: per (person, advertiser), saturating at 255
    cap_kind: np.ndarray  # i1[nc]: the campaign's cap kind (CAP_NONE / CALENDAR / ROLLING)
    cap_limit: np.ndarray  # i4[nc]
    cap_window_s: np.ndarray  # f8[nc]
    cap_col: np.ndarray  # i4[nc]: calendar caps: column in counts; rolling: first column in times
    window_end_s: np.ndarray  # f8[nc]: calendar caps: end of the current window; inf otherwise
    counts: np.ndarray  # u1[n_people, n_calendar]: impressions in the current window (saturating)
    times: np.ndarray  # f8[n_people, n_ring]: rolling caps: the person's last `limit` times
    advertiser: np.ndarray  # i4[nc]
    adv_limit: np.ndarray  # i4[n_adv]: the advertiser's calendar cap; 0 = none
    adv_window_s: np.ndarray  # f8[n_adv]
    adv_col: np.ndarray  # i4[n_adv]: column in adv_counts; -1 without a cap
    adv_window_end_s: np.ndarray  # f8[n_adv]; inf without a cap
    adv_counts: np.ndarray  # u1[n_people, n_adv_capped]
    leakage: np.ndarray  # i8[nc]: impressions to a person already at the campaign's cap
    adv_leakage: np.ndarray  # i8[n_adv]: impressions to a person already at the advertiser's cap


def n_people(market) -> int:
    """People in the market's audience (one per device-user without dmp.identity)."""
    return int(market.audience.n_people)


def n_ids(market) -> int:
    """The ids the run's audience shows up under (no-id rows not counted)."""
    return int(market.audience.identity.no_id_row)


def _first_window_ends(start, window_s: np.ndarray, used: np.ndarray) -> np.ndarray:
    # The kernel's calendar windows end at multiples of the window in UTC epoch time
    # (rtb/state.py _window_ends); the same rule here keeps the twin's windows aligned.
    offset = start.timestamp()
    return np.array([w - (offset % w) if on else np.inf for w, on in zip(window_s, used)],
                    dtype=np.float64)


def new_people_book(market, people: int | None = None) -> PeopleBook:
    """An empty book for the market's people (or `people` of them: tests that group
    ids themselves) and its campaigns' and advertisers' caps."""
    table = market.campaigns
    n = n_people(market) if people is None else people
    nc = len(table.ids)
    kind = np.asarray(table.cap_kind, dtype=np.int8)
    limit = np.asarray(table.cap_limit, dtype=np.int32)
    window_s = np.asarray(table.cap_window_s, dtype=np.float64)
    calendar = kind == CAP_CALENDAR
    rolling = kind == CAP_ROLLING
    col = np.full(nc, -1, dtype=np.int32)
    col[calendar] = np.arange(int(calendar.sum()), dtype=np.int32)
    ring = np.concatenate([[0], np.cumsum(limit[rolling])]).astype(np.int32)
    col[rolling] = ring[:-1]
    adv_limit = np.asarray(market.advertiser_cap_impressions, dtype=np.int32)
    adv_window_s = np.asarray(market.advertiser_cap_window_s, dtype=np.float64)
    adv_capped = adv_limit > 0
    adv_col = np.full(adv_limit.size, -1, dtype=np.int32)
    adv_col[adv_capped] = np.arange(int(adv_capped.sum()), dtype=np.int32)
    return PeopleBook(
        exposures=np.zeros((n, nc), dtype=np.uint8),
        adv_exposures=np.zeros((n, adv_limit.size), dtype=np.uint8),
        cap_kind=kind,
        cap_limit=limit,
        cap_window_s=window_s,
        cap_col=col,
        window_end_s=_first_window_ends(market.start, window_s, calendar),
        counts=np.zeros((n, int(calendar.sum())), dtype=np.uint8),
        times=np.full((n, int(ring[-1])), -np.inf),  # -inf: never shown, older than any window
        advertiser=np.asarray(table.advertiser, dtype=np.int32),
        adv_limit=adv_limit,
        adv_window_s=adv_window_s,
        adv_col=adv_col,
        adv_window_end_s=_first_window_ends(market.start, adv_window_s, adv_capped),
        adv_counts=np.zeros((n, int(adv_capped.sum())), dtype=np.uint8),
        leakage=np.zeros(nc, dtype=np.int64),
        adv_leakage=np.zeros(adv_limit.size, dtype=np.int64),
    )


@njit(cache=True, nogil=True)
def _roll_windows_nb(window_end_s, window_s, counts, col, t):
    """Start the window containing t for every calendar cap whose window has ended by t:
    their columns cleared for every person in one pass over the rows.

    As the kernel does, a window moves at the first impression after its boundary;
    counts only matter at impressions, so moving another column's window here, before
    its own next impression, gives the same counts. col: i4 per entry, the column in
    counts (-1: no calendar cap).
    """
    ended = np.zeros(window_end_s.size, dtype=np.bool_)
    for k in range(window_end_s.size):
        if col[k] >= 0 and t >= window_end_s[k]:
            ended[k] = True
            end = window_end_s[k]
            while t >= end:
                after = end + window_s[k]
                end = after if after > end else np.nextafter(t, np.inf)
            window_end_s[k] = end
    columns = col[ended]
    for p in range(counts.shape[0]):
        for k in columns:
            counts[p, k] = 0


@njit(cache=True, nogil=True)
def _bump_nb(value):
    return value + (value < 255)


@njit(cache=True, nogil=True)
def record_people_nb(time_s, person, campaign, exposures, adv_exposures, cap_kind, cap_limit,
                     cap_window_s, cap_col, window_end_s, counts, times, advertiser, adv_limit,
                     adv_window_s, adv_col, adv_window_end_s, adv_counts, leakage, adv_leakage):
    n = time_s.size
    calendar_col = np.where(cap_kind == CAP_CALENDAR, cap_col, -1)
    for i in range(n):
        j = i + PREFETCH_AHEAD
        if j < n and person[j] >= 0:
            q, d = person[j], campaign[j]
            prefetch_cell(exposures, q, d)
            prefetch_cell(adv_exposures, q, advertiser[d])
            if cap_kind[d] == CAP_CALENDAR:
                prefetch_cell(counts, q, cap_col[d])
            elif cap_kind[d] == CAP_ROLLING:
                prefetch_cell(times, q, cap_col[d])
                prefetch_cell(times, q, cap_col[d] + cap_limit[d] - 1)
            if adv_col[advertiser[d]] >= 0:
                prefetch_cell(adv_counts, q, adv_col[advertiser[d]])
        p = person[i]
        c = campaign[i]
        t = time_s[i]
        if p < 0:
            continue
        a = advertiser[c]
        exposures[p, c] = _bump_nb(exposures[p, c])
        adv_exposures[p, a] = _bump_nb(adv_exposures[p, a])
        kind = cap_kind[c]
        if kind == CAP_CALENDAR:
            col = cap_col[c]
            if t >= window_end_s[c]:
                _roll_windows_nb(window_end_s, cap_window_s, counts, calendar_col, t)
            if counts[p, col] >= cap_limit[c]:
                leakage[c] += 1
            counts[p, col] = _bump_nb(counts[p, col])
        elif kind == CAP_ROLLING:
            # At the cap when even the oldest of the last `limit` times is in the window
            # (the kernel's test); then this impression replaces the oldest.
            first = cap_col[c]
            oldest = first
            for r in range(first + 1, first + cap_limit[c]):
                if times[p, r] < times[p, oldest]:
                    oldest = r
            if times[p, oldest] > t - cap_window_s[c]:
                leakage[c] += 1
            times[p, oldest] = t
        col = adv_col[a]
        if col >= 0:
            if t >= adv_window_end_s[a]:
                _roll_windows_nb(adv_window_end_s, adv_window_s, adv_counts, adv_col, t)
            if adv_counts[p, col] >= adv_limit[a]:
                adv_leakage[a] += 1
            adv_counts[p, col] = _bump_nb(adv_counts[p, col])


def record_people(book: PeopleBook, market, time_s: np.ndarray, person: np.ndarray,
                  campaign: np.ndarray) -> None:
    """Count one tick's won impressions (in time order) against the people who saw them.

    time_s f8 (seconds since the start), person i8 (-1: skipped), campaign i4: one row
    per impression a campaign won. `market` is accepted for the interface; the book
    already holds what it needs.
    """
    if time_s.size == 0:
        return
    b = book
    record_people_nb(np.ascontiguousarray(time_s, dtype=np.float64),
                     np.ascontiguousarray(person, dtype=np.int64),
                     np.ascontiguousarray(campaign, dtype=np.int64),
                     b.exposures, b.adv_exposures, b.cap_kind, b.cap_limit, b.cap_window_s,
                     b.cap_col, b.window_end_s, b.counts, b.times, b.advertiser, b.adv_limit,
                     b.adv_window_s, b.adv_col, b.adv_window_end_s, b.adv_counts, b.leakage,
                     b.adv_leakage)


class ExposureCounts(NamedTuple):
    """What the report reads from an exposure array, counted in one pass over its rows."""

    histogram: np.ndarray  # i8[width, HISTOGRAM_BINS + 1]: rows at k = 1 .. 9 exposures of
    # each column, and at 10 or more (column 0 unused: rows never exposed are not counted)
    group_histogram: np.ndarray  # i8[n_group, HISTOGRAM_BINS + 1]: the same over each row's sum
    # of its group's columns (an advertiser's campaigns)
    rows: int  # rows with any exposure


@njit(cache=True)
def _exposure_counts_nb(exposures, width, group, n_group, bins):
    """One pass over the rows; per row only its nonzero cells cost more than a read,
    and only the groups they touch are binned."""
    hist = np.zeros((width, bins + 1), dtype=np.int64)
    group_hist = np.zeros((n_group, bins + 1), dtype=np.int64)
    total = np.zeros(n_group, dtype=np.int64)
    touched = np.empty(width, dtype=np.int64)
    rows = 0
    for i in range(exposures.shape[0]):
        n_touched = 0
        for c in range(width):
            v = exposures[i, c]
            if v != 0:
                hist[c, min(v, bins)] += 1
                g = group[c]
                if total[g] == 0:
                    touched[n_touched] = g
                    n_touched += 1
                total[g] += v
        if n_touched:
            rows += 1
            for k in range(n_touched):
                g = touched[k]
                group_hist[g, min(total[g], bins)] += 1
                total[g] = 0
    return hist, group_hist, rows


def exposure_counts(exposures: np.ndarray, width: int, group: np.ndarray | None = None,
                    n_group: int = 0) -> ExposureCounts:
    """Count exposures[:, :width] (u1, any row stride) and, if given, its columns summed by
    group (i8[width]: the group of each column) in one numba pass: no temporaries."""
    if group is None:
        # One group of every column: its histogram is unused, its rows are the rows reached.
        group, n_group = np.zeros(width, dtype=np.int64), 1
    hist, group_hist, rows = _exposure_counts_nb(exposures, width,
                                                 np.asarray(group, dtype=np.int64), n_group,
                                                 HISTOGRAM_BINS)
    return ExposureCounts(hist, group_hist, int(rows))


class PeopleCounts(NamedTuple):
    """The counts behind the people figures: of the ids' exposures (the kernel's book) and
    of the people's (the people book; the ids' again when there is none)."""

    ids: ExposureCounts  # per campaign, per advertiser (its campaigns' sum), rows reached
    people: ExposureCounts  # per campaign (and per advertiser without a people book)
    people_advertisers: ExposureCounts | None  # the people book's advertiser columns, or None
    no_id: np.ndarray  # i8[nc]: impressions on requests without an id, per campaign


def people_counts(market, state) -> PeopleCounts:
    """One numba pass over each exposure array a run keeps (ids; people and their
    advertisers' columns with a people book)."""
    table = market.campaigns
    nc = len(table.ids)
    n_adv = market.advertiser_value.size
    advertiser = np.asarray(table.advertiser, dtype=np.int64)
    ids = exposure_counts(exposures_in_use(state.users), nc, advertiser, n_adv)
    # The kernel counts each impression without an id as one more id reached and writes
    # no exposure row for it: those are the campaign's reach less the ids with a row.
    no_id = state.book.reach - ids.histogram[:, 1:].sum(axis=1)
    book: PeopleBook | None = state.people
    if book is None:
        return PeopleCounts(ids, ids, None, no_id)
    return PeopleCounts(ids, exposure_counts(book.exposures, nc),
                        exposure_counts(book.adv_exposures, n_adv), no_id)


def _ratio(num: int, den: int) -> float | None:
    """As the report's ratios: rounded to 6 digits, None (null) when den is 0."""
    return round(num / den, 6) if den else None


def people_figures(market, state, counts: PeopleCounts | None = None
                   ) -> tuple[list[dict], list[dict]]:
    """Per campaign and per advertiser (de-duplicated over its campaigns): reach and
    frequency in ids (what an ad platform shows) and in people (the truth), the
    frequency histogram over people, and cap leakage per person. `counts`: people_counts
    of the same state, if the caller has them."""
    from rtb.types import WON

    counts = people_counts(market, state) if counts is None else counts
    book: PeopleBook | None = state.people
    table = market.campaigns
    nc = len(table.ids)
    n_adv = market.advertiser_value.size
    won = state.book.outcomes[:, WON]
    if book is None:
        # No people book: every id is its own person, and nothing leaks past a cap.
        leakage = np.zeros(nc, dtype=np.int64)
        adv_leakage = np.zeros(n_adv, dtype=np.int64)
        adv_people = counts.ids.group_histogram
    else:
        leakage, adv_leakage = book.leakage, book.adv_leakage
        adv_people = counts.people_advertisers.histogram
    people = counts.people.histogram
    per_campaign = []
    for c in range(nc):
        histogram = people[c, 1:].tolist()
        reach_people = sum(histogram)
        impressions = int(won[c])
        per_campaign.append({
            "reach_people": reach_people,
            "frequency_people": _ratio(impressions, reach_people),
            "frequency_histogram": histogram,
            "cap_leakage": int(leakage[c]) if table.cap_kind[c] else 0,
        })
    advertisers = []
    for a in range(n_adv):
        mine = np.flatnonzero(table.advertiser == a)
        impressions = int(won[mine].sum())
        reach_ids = int(counts.ids.group_histogram[a, 1:].sum()) + int(counts.no_id[mine].sum())
        histogram = adv_people[a, 1:].tolist()
        reach_people = sum(histogram)
        capped = market.advertiser_cap_impressions[a] > 0
        advertisers.append({
            "id": market.labels.advertisers[a],
            "impressions": impressions,
            "reach": reach_ids,
            "reach_people": reach_people,
            "frequency": _ratio(impressions, reach_ids),
            "frequency_people": _ratio(impressions, reach_people),
            "frequency_histogram": histogram,
            "cap_leakage": int(adv_leakage[a]) if capped else None,
        })
    return per_campaign, advertisers


def no_id_impressions(state, counts: PeopleCounts | None = None) -> np.ndarray:
    """i8[nc]: each campaign's impressions on requests without an id (no consent).

    The kernel counts each as one more id reached and writes no exposure row for them,
    so they are the campaign's reach less the ids with an exposure."""
    if counts is not None:
        return counts.no_id
    nc = state.book.reach.size
    return state.book.reach - exposure_counts(exposures_in_use(state.users), nc).histogram[:, 1:].sum(axis=1)


def people_reached(state, counts: PeopleCounts | None = None) -> int | None:
    """Distinct people reached by any campaign; None without a people book (then every
    id is its own person and the ids' count is the answer)."""
    book: PeopleBook | None = state.people
    if book is None:
        return None
    if counts is not None:
        return counts.people_advertisers.rows
    return exposure_counts(book.adv_exposures, book.adv_exposures.shape[1]).rows
