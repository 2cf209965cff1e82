"""Per-campaign metrics, ROMI (attributed and incremental): the JSON report and its CSV table."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from dsp.campaigns import anonymous_slots
from rtb.atomic import write_atomic
from rtb.books import bid_bin_edges
from rtb.people import n_ids, n_people, people_counts, people_figures, people_reached
from rtb.types import CAP_CALENDAR, CAP_NONE, FIRST_SUBMITTED, OUTCOME_NAMES, WON

REPORT_VERSION = 1
# The CSV table (rtb run --csv): one row per campaign, the report's per-campaign scalars
# in its order, then bid_outcomes flattened as pandas.json_normalize names them. No
# totals row, so the rows sum and group like any table; the totals are in the JSON, and
# so is frequency_histogram (a list).
CSV_FIELDS = ("id", "advertiser", "dsp", "budget", "spend", "media_cost", "data_cost", "fees",
              "impressions", "reach", "frequency", "reach_people", "frequency_people",
              "cap_leakage", "clicks", "ctr", "conversions", "revenue",
              "roas", "romi", "incremental_conversions", "incremental_revenue",
              "incremental_romi", "ecpm", "cpc", "cpa", "bids", "wins", "win_rate")
CSV_COLUMNS = CSV_FIELDS + tuple(f"bid_outcomes.{name}" for name in OUTCOME_NAMES)


def _ratio(num: float, den: float, digits: int = 6) -> float | None:
    """num / den rounded for a stable, readable report; None (null) when den is 0."""
    return round(float(num) / float(den), digits) if den else None


def _money(micros: int | np.integer) -> float:
    return int(micros) / 1e6


def _total(micros: np.ndarray) -> int:
    """Exact sum of int64 micros as a Python int (numpy's int64 sum could wrap)."""
    return sum(map(int, micros))


def campaign_metrics(*, impressions: int, reach: int, clicks: int, conversions: int,
                     incremental_conversions: int, spend_micros: int, media_micros: int,
                     value: float, margin: float) -> dict:
    """The derived metrics of one campaign (or a total); formulas are in the README."""
    spend = _money(spend_micros)
    revenue = conversions * value
    incremental_revenue = incremental_conversions * value
    return {
        "impressions": impressions,
        "reach": reach,
        "frequency": _ratio(impressions, reach),
        "clicks": clicks,
        "ctr": _ratio(clicks, impressions),
        "conversions": conversions,
        "revenue": round(revenue, 6),
        "roas": _ratio(revenue, spend),
        "romi": _ratio(revenue * margin - spend, spend),
        "incremental_conversions": incremental_conversions,
        "incremental_revenue": round(incremental_revenue, 6),
        "incremental_romi": _ratio(incremental_revenue * margin - spend, spend),
        "ecpm": _ratio(_money(media_micros) * 1000, impressions),
        "cpc": _ratio(spend, clicks),
        "cpa": _ratio(spend, conversions),
    }


@dataclass(frozen=True)
class Report:
    """The result of one run; to_dict() is the documented JSON report."""

    data: dict

    def to_dict(self) -> dict:
        return self.data

    def to_json(self) -> bytes:
        return orjson.dumps(self.data, option=orjson.OPT_INDENT_2) + b"\n"

    def write(self, path: str | Path) -> None:
        write_atomic(path, self.to_json())

    def to_csv(self) -> bytes:
        """The campaigns as CSV: a header (CSV_COLUMNS), then one row per campaign with
        the JSON's values (money in currency units; a null is an empty cell)."""
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for c in self.data["campaigns"]:
            writer.writerow([*(c[key] for key in CSV_FIELDS),
                             *(c["bid_outcomes"][name] for name in OUTCOME_NAMES)])
        return text.getvalue().encode()

    def write_csv(self, path: str | Path) -> None:
        write_atomic(path, self.to_csv())


def _frequency_cap(table, c: int) -> dict | None:
    kind = int(table.cap_kind[c])
    if kind == CAP_NONE:
        return None
    return {"impressions": int(table.cap_limit[c]), "window_seconds": float(table.cap_window_s[c]),
            "kind": "calendar" if kind == CAP_CALENDAR else "rolling"}


def _after(metrics: dict, key: str, extra: dict) -> dict:
    """metrics with extra's keys inserted right after key (reach in ids, then in people)."""
    out = {}
    for k, v in metrics.items():
        out[k] = v
        if k == key:
            out.update(extra)
    return out


def _sells_anonymously(m) -> np.ndarray:
    """bool[n_pub]: publishers with requests sold anonymously (an anonymous publisher, or
    a slot with an anonymous deal)."""
    inv = m.inventory
    out = np.zeros(inv.hourly.shape[0], dtype=np.bool_)
    out[inv.slot_publisher[anonymous_slots(m.campaigns)]] = True
    return out


def _anonymity(m, sellers, p: int, anonymous_requests: int) -> dict:
    """What selling anonymously did at publisher p, as counted in the run (the exact cost,
    revenue with and without, is the paired run with anonymous = false: docs/planning.md)."""
    excluded = m.campaigns.publisher_excluded[p]
    return {
        "requests": anonymous_requests,
        "domain_targeting_bids_lost": int(sellers.hidden_bids[p].sum()),
        "impressions_past_domain_blocks": int(sellers.wins[p, excluded].sum()),
        "spend_past_domain_blocks": _money(_total(sellers.media_micros[p, excluded])),
    }


def _median_cpm(bins: np.ndarray) -> float | None:
    """The median bid of a row of bid bins (rtb.books): the middle bid's bin's middle (the
    mean of the two middle bids' for an even count), to within 0.4 %; 0 when it falls in
    bin 0 (bids under 2**-20 CPM). Six significant digits."""
    n = int(bins.sum())
    if n == 0:
        return None
    cumulative = np.cumsum(bins)

    def value(rank: int) -> float:  # the rank-th smallest bid's bin, 1-based
        k = int(np.searchsorted(cumulative, rank))
        if k == 0:
            return 0.0
        lower, upper = bid_bin_edges(k)
        return (float(lower) + float(upper)) / 2

    median = (value((n + 1) // 2) + value(n // 2 + 1)) / 2
    return float(f"{median:.6g}")


def _advertisers(m, sellers, bid_book, p: int) -> list[dict]:
    """Publisher p's buyers among the scenario's advertisers, sorted by advertiser id: each
    one that bought there, with the impressions and the media paid for them; with
    report.advertiser_bids (bid_book), each one that bid there, with the bids received,
    their mean and median CPM and the win rate too."""
    labels, advertiser = m.labels, m.campaigns.advertiser
    n_adv = len(labels.advertisers)
    rows = []
    for a in np.unique(advertiser):
        mine = advertiser == a
        wins = int(sellers.wins[p, mine].sum())
        spend = _money(_total(sellers.media_micros[p, mine]))
        if bid_book is None:
            if wins:
                rows.append({"advertiser": labels.advertisers[a], "wins": wins, "spend": spend})
            continue
        bids = int(bid_book.bids[p, mine].sum())
        if bids == 0:
            continue
        rows.append({
            "advertiser": labels.advertisers[a],
            "bids": bids,
            "mean_bid_cpm": _ratio(float(bid_book.bid_sum_cpm[p, mine].sum()), bids),
            "median_bid_cpm": _median_cpm(bid_book.bins[p * n_adv + a]),
            "wins": wins,
            "spend": spend,
            "win_rate": _ratio(wins, bids),
        })
    return sorted(rows, key=lambda row: row["advertiser"])


def build_report(market, state) -> Report:
    """The report of a finished run: the market's labels and the run state's books."""
    m, table, book, tally, labels = market, market.campaigns, state.book, state.tally, market.labels
    ledger = tally.ledger
    ledger.close(_total(book.media_micros), _total(book.fee_micros), _total(book.data_cost_micros))
    # One numba pass over each exposure array serves the people figures and the totals.
    counts = people_counts(m, state)
    people, advertisers = people_figures(m, state, counts)
    campaigns = []
    for c, cid in enumerate(table.ids):
        a = int(table.advertiser[c])
        spend = int(book.media_micros[c] + book.fee_micros[c] + book.data_cost_micros[c])
        bids = int(book.outcomes[c, FIRST_SUBMITTED:].sum())
        wins = int(book.outcomes[c, WON])
        campaigns.append({
            "id": cid,
            "advertiser": labels.advertisers[a],
            "dsp": labels.dsps[int(table.dsp[c])],
            "budget": _money(table.budget_micros[c]),
            "spend": _money(spend),
            "media_cost": _money(book.media_micros[c]),
            "data_cost": _money(book.data_cost_micros[c]),
            "fees": _money(book.fee_micros[c]),
            **_after(campaign_metrics(
                impressions=wins, reach=int(book.reach[c]), clicks=int(tally.clicks[c]),
                conversions=int(tally.attributed_conversions[c]),
                incremental_conversions=int(tally.ad_conversions[c]), spend_micros=spend,
                media_micros=int(book.media_micros[c]), value=float(m.advertiser_value[a]),
                margin=float(m.advertiser_margin[a])), "frequency", people[c]),
            "bids": bids,
            "wins": wins,
            "win_rate": _ratio(wins, bids),
            "frequency_cap": _frequency_cap(table, c),
            "bid_outcomes": {name: int(book.outcomes[c, k]) for k, name in enumerate(OUTCOME_NAMES)},
        })

    value = m.advertiser_value[table.advertiser]
    margin = m.advertiser_margin[table.advertiser]
    spend_total = _total(book.media_micros) + _total(book.fee_micros) + _total(book.data_cost_micros)
    revenue = float((tally.attributed_conversions * value).sum())
    gross = float((tally.attributed_conversions * value * margin).sum())
    inc_revenue = float((tally.ad_conversions * value).sum())
    inc_gross = float((tally.ad_conversions * value * margin).sum())
    total_spend = _money(spend_total)
    impressions = int(book.outcomes[:, WON].sum())
    # Impressions without an id count as one id each, as in the campaigns' reach.
    reach = counts.ids.rows + _total(counts.no_id)
    reach_people = people_reached(state, counts)
    reach_people = reach if reach_people is None else reach_people
    total = {
        "budget": _money(_total(table.budget_micros)),
        "spend": total_spend,
        "media_cost": _money(_total(book.media_micros)),
        "data_cost": _money(_total(book.data_cost_micros)),
        "fees": _money(_total(book.fee_micros)),
        **_after(campaign_metrics(
            impressions=impressions, reach=reach,
            clicks=int(tally.clicks.sum()), conversions=int(tally.attributed_conversions.sum()),
            incremental_conversions=int(tally.ad_conversions.sum()), spend_micros=spend_total,
            media_micros=_total(book.media_micros), value=0.0, margin=0.0), "frequency",
            {"reach_people": reach_people, "frequency_people": _ratio(impressions, reach_people)}),
    }
    # Advertisers differ in value and margin: totals sum each campaign's own.
    total.update({
        "revenue": round(revenue, 6),
        "roas": _ratio(revenue, total_spend),
        "romi": _ratio(gross - total_spend, total_spend),
        "incremental_revenue": round(inc_revenue, 6),
        "incremental_romi": _ratio(inc_gross - total_spend, total_spend),
    })

    inv = m.inventory
    publishers = []
    sells_anonymously = _sells_anonymously(m)
    for p, pub_id in enumerate(labels.publishers):
        requests, imps = int(tally.pub_requests[p]), int(tally.pub_impressions[p])
        anonymous = int(tally.pub_anonymous_requests[p])
        publishers.append({
            "id": pub_id,
            "ssp": labels.ssps[int(inv.publisher_ssp[p])],
            "requests": requests,
            "impressions": imps,
            "fill_rate": _ratio(imps, requests),
            "revenue": _money(tally.pub_revenue_micros[p]),
            "avg_floor_cpm": _ratio(tally.pub_floor_sum[p], requests),
            "avg_price_cpm": _ratio(tally.pub_price_sum[p], imps),
            "deal_share": _ratio(tally.pub_deal_impressions[p], imps),
            "floor_hits": int(tally.pub_floor_hits[p]),
            "anonymous": _ratio(anonymous, requests),
            "anonymity": (_anonymity(m, state.sellers, p, anonymous)
                          if sells_anonymously[p] else None),
            "advertisers": _advertisers(m, state.sellers, state.bid_book, p),
        })

    sold = tally.impressions_to_campaigns + tally.impressions_to_market
    data = {
        "report_version": REPORT_VERSION,
        "scenario": {
            "name": labels.scenario,
            "currency": labels.currency,
            "seed": m.seed,
            "start": labels.start,
            "duration": m.duration_s,
            "tick": m.tick_s,
            "auction": labels.auction,
            "budget_scale": m.budget_scale,
        },
        "attribution": {
            "model": "last-touch",
            "window_seconds": m.behaviour.attribution_window_s,
            "conversions": "attributed: last touch within the window (what an ad platform reports)",
            "incremental_conversions": "caused by the campaign's ads (known exactly in simulation)",
        },
        "identity": {
            "reach": "distinct ids reached: cookies, device ids, logins (what an ad platform "
                     "reports; a request without consent carries no id and counts as one more)",
            "reach_people": "distinct people reached (known exactly in simulation)",
            "frequency": "impressions per id reached",
            "frequency_people": "impressions per person reached",
            "frequency_histogram": "people reached 1, 2, ..., 9 and 10 or more times",
            "cap_leakage": "impressions a person received while already at the cap in its "
                           "window, summed over people (caps are enforced per id)",
        },
        "campaigns": campaigns,
        "advertisers": advertisers,
        "totals": total,
        "publishers": publishers,
        "exchange": {
            "requests": tally.requests,
            "impressions_to_campaigns": tally.impressions_to_campaigns,
            "impressions_to_market": tally.impressions_to_market,
            "unsold": tally.requests - sold,
            "fees": _money(ledger.exchange_fees),
        },
        "audience": {
            "users": m.n_device_users,
            "ids": n_ids(m),
            "people": n_people(m),
            "organic_conversions": tally.organic_conversions,
        },
        "ledger": ledger.to_dict(),
    }
    if state.bidders is not None:
        data["bidders"] = state.bidders.to_report(m.wire)
    return Report(data)
