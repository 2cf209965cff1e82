"""Leaf module: constants, enumerations and array aliases shared by every package."""

from __future__ import annotations

import numpy as np

# Money: integer micros of the scenario's currency. One impression at CPM p costs
# p / 1000 units = p * 1000 micros.
MICROS_PER_UNIT = 1_000_000
MICROS_PER_CPM = 1_000  # micros paid for one impression per unit of CPM
PPM = 1_000_000  # fee rates are stored as parts per million, applied with floor division
# Bids above this CPM are treated as this CPM, so that a runaway strategy's bid (even
# inf) stays within int64 micros once fees and data are added.
MAX_BID_CPM = 1e9

SECONDS_PER_DAY = 86_400.0
SECONDS_PER_HOUR = 3_600.0

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
OUTCOME_NOT_TARGETED = 0  # targeting, flight, a brand-safety block or a private deal excludes it
OUTCOME_PACED = 1  # pacing skipped it to spread the budget
LOSS_BELOW_FLOOR = 2
LOSS_BELOW_DEAL_FLOOR = 3  # a private deal's floor (or fixed price) was not met
LOSS_OUT_OF_BUDGET = 4
LOSS_FREQUENCY_CAPPED = 5
LOSS_LOST_TO_BID = 6
LOSS_LOST_TO_MARKET = 7
WON = 8
N_OUTCOMES = 9
OUTCOME_NAMES = (
    "not_targeted",
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


def units_to_micros(units: float) -> int:
    return int(round(units * MICROS_PER_UNIT))
