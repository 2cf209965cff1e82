"""Leaf module: constants, enumerations and array aliases shared by every package."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Money: integer micros of the scenario's currency. One impression at CPM p costs
# p / 1000 units = p * 1000 micros.
MICROS_PER_UNIT = 1_000_000
MICROS_PER_CPM = 1_000  # micros paid for one impression per unit of CPM
PPM = 1_000_000  # fee rates are stored as parts per million, applied with floor division
# Bids above this CPM are treated as this CPM, so that a runaway strategy's bid (even
# inf) stays within int64 micros once fees and data are added.
MAX_BID_CPM = 1e9
# Bid bins (rtb.books.BidBook): 128 per power of two, log-spaced from the bid's float64
# bits (exponent and top 7 mantissa bits), so a bin's upper edge is at most 1 + 1/128
# times its lower one and its middle is within 1/256 (0.4 %) of any bid in it. Bin 0
# holds the bids below 2**-20 CPM (about 0.000001), zero included; the last bin ends
# above MAX_BID_CPM.
BID_BIN_SHIFT = 45  # 52 mantissa bits - 7
BID_BIN_BASE = (1023 - 20) << 7  # the bits >> BID_BIN_SHIFT of 2**-20
N_BID_BINS = ((1023 + 30) << 7) - BID_BIN_BASE + 1  # up to 2**30 > MAX_BID_CPM

SECONDS_PER_DAY = 86_400.0
SECONDS_PER_HOUR = 3_600.0

# The simulation clock: every event time (requests, conversions) is a whole number of
# 1/65536 s (about 15 microseconds), so the kernel can keep a touch's exact time with
# its campaign in one int64, and attribution compares times exactly. A power of two:
# scaling to and from clock units is exact in float64.
CLOCK_UNITS_PER_S = 65_536

# Auction mechanisms, as the numba kernels read them.
MECHANISM_FIRST = 0
MECHANISM_SECOND = 1
MECHANISMS = {"first": MECHANISM_FIRST, "second": MECHANISM_SECOND}

# Winner codes in a cleared batch (campaign winners are indices >= 0).
UNSOLD = -1
MARKET = -2

# Inventory vocabularies; the index of a name is its code in the arrays.
FORMATS = ("banner", "video", "native")
DEVICES = ("desktop", "mobile")

# Frequency-cap kinds.
CAP_NONE = 0
CAP_CALENDAR = 1  # at most N per calendar window (windows aligned to UTC midnight / the hour)
CAP_ROLLING = 2  # at most N in any sliding window of W seconds
CAP_KINDS = {"calendar": CAP_CALENDAR, "rolling": CAP_ROLLING}

# What became of each (request, campaign) for which the campaign's strategy had a bid;
# OpenRTB's loss-reason vocabulary where it has a word. The first of targeting, pacing
# and floor that fails is the reason; the bids left (candidates) are ranked, and those
# ranked above the winner that could not pay or were capped end out_of_budget or
# frequency_capped, the winner won, the rest lost to a higher bid or to the market.
OUTCOME_NOT_TARGETED = 0  # targeting, the flight or a private deal excludes it
OUTCOME_BLOCKED = 1  # targeted in every other way, but brand safety forbids the (slot, campaign) pair
OUTCOME_PACED = 2  # pacing skipped it to spread the budget
LOSS_BELOW_FLOOR = 3
LOSS_BELOW_DEAL_FLOOR = 4  # a private deal's floor (or fixed price) was not met
LOSS_OUT_OF_BUDGET = 5
LOSS_FREQUENCY_CAPPED = 6
LOSS_LOST_TO_BID = 7
LOSS_LOST_TO_MARKET = 8
WON = 9
N_OUTCOMES = 10
OUTCOME_NAMES = (
    "not_targeted",
    "blocked",
    "paced",
    "below_floor",
    "below_deal_floor",
    "out_of_budget",
    "frequency_capped",
    "lost_to_higher_bid",
    "lost_to_market",
    "won",
)
FIRST_SUBMITTED = LOSS_BELOW_FLOOR  # outcomes from here on are bids sent to the exchange

F8 = np.float64
I8 = np.int64
I4 = np.int32


def cpm_to_micros(cpm: np.ndarray | float) -> np.ndarray:
    """Price of one impression at CPM `cpm` >= 0, in integer micros, rounded half up.

    The auction kernels round the same way with the same float operations (a libm
    rint() call per bid would cost more than the rest of the bid's checks), so the
    ledger and the kernels agree to the micro.
    """
    return (np.asarray(cpm, dtype=F8) * MICROS_PER_CPM + 0.5).astype(I8)


def on_clock(time_s: np.ndarray) -> np.ndarray:
    """Times rounded down to the simulation clock (whole 1/65536 s); exact in float64."""
    return np.floor(np.asarray(time_s, dtype=F8) * CLOCK_UNITS_PER_S) / CLOCK_UNITS_PER_S


def units_to_micros(units: float) -> int:
    return int(round(units * MICROS_PER_UNIT))


class RequestBatch(NamedTuple):
    """One tick's bid requests, one row per request, sorted by time (all arrays [n]).

    The one request type of a run: the SSP stage fills the inventory fields, the DMP
    stage the audience fields (the id DSPs see, and the device-user and person behind
    it, which only behaviour and the report's people figures read); the uniforms are drawn for every request whatever
    becomes of it, so two runs that decide differently still see the same draws
    (common random numbers).
    """

    time_s: np.ndarray  # f8: seconds since the simulation start
    slot: np.ndarray  # i8: ad slot index
    target_row: np.ndarray  # i8: the row of the targeting tables (Targeting.slot_words) the
    # request reads: its slot's, or, sold anonymously through a deal, the slot's anonymous row
    publisher: np.ndarray  # i4: the slot's publisher
    format: np.ndarray  # u1: the slot's format (index into FORMATS)
    deal: np.ndarray  # i4: private-marketplace deal on offer, -1 = none
    market_cpm: np.ndarray  # f8: the rest of the market's best bid, CPM; NaN = none
    floor_cpm: np.ndarray  # f8: the open auction's floor, CPM
    user: np.ndarray  # i8: the id the request carries: its row in the per-user arrays
    # (dmp/identity.py; a no-id row without consent when the identity model is on)
    user_row: np.ndarray  # i4: that id's row in the run's user books (rtb.state.UserRows,
    # handed out as ids first appear; 0 for a request without an id)
    device_user: np.ndarray  # i8: the truth: the DMP's device-user who made the request
    person: np.ndarray  # i8: the truth: that device-user's person
    geo: np.ndarray  # u1: the user's country (index into the audience's geo names)
    user_ctr: np.ndarray  # f4: the device-user's true click propensity (mean 1)
    user_segments: np.ndarray  # u4/u8 (dmp.audience.segment_dtype): the device-user's true segment bits
    u_pace: np.ndarray  # f8: uniform in [0, 1) for pacing throttles
    u_click: np.ndarray  # f8: uniform for the click, if an impression is won
    u_convert: np.ndarray  # f8: uniform for the conversion, if clicked
    u_delay: np.ndarray  # f8: uniform for the conversion's delay
