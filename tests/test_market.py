"""The market (rtb/market.py) is read-only; a run's changes live in its run state."""

from __future__ import annotations

import numpy as np
import pytest

from rtb.market import build_market
from rtb.state import new_run_state


def _arrays(value, path):
    if isinstance(value, np.ndarray):
        yield path, value
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        for name, item in zip(value._fields, value):
            yield from _arrays(item, f"{path}.{name}")


def test_every_market_array_is_read_only(two_hour_spec):
    market = build_market(two_hour_spec)
    found = 0
    for name in market.__dataclass_fields__:
        for path, array in _arrays(getattr(market, name), name):
            found += 1
            assert not array.flags.writeable, path
    assert found > 40
    with pytest.raises(ValueError):
        market.campaigns.budget_micros[0] = 0


def test_run_state_owns_what_a_run_changes(two_hour_spec):
    market = build_market(two_hour_spec)
    state = new_run_state(market)
    for name in ("remaining_total", "remaining_daily", "media_micros", "outcomes", "reach"):
        assert getattr(state.book, name).flags.writeable, name
    assert state.pace_share.flags.writeable
    # The run's budgets start from the market's, in a copy of their own.
    assert not np.shares_memory(state.book.remaining_total, market.campaigns.budget_micros)
    np.testing.assert_array_equal(state.book.remaining_total, market.campaigns.budget_micros)
    if state.dynamic_floors is not None:
        assert not np.shares_memory(state.floor_table, market.floors.table)
