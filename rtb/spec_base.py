"""What every pydantic spec model shares: a strict, frozen base, the money bounds and the field types."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class Spec(BaseModel):
    """Unknown keys are errors (a typo fails with its path); a parsed spec never changes."""

    # allow_inf_nan=False: NaN and inf fail as "finite number" wherever a float is read.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Bounds that keep every amount within int64 micros with room for sums: a run's money
# is at most MAX_SCALED_BUDGET of campaign budgets plus MAX_RUN_REQUESTS market
# impressions at MAX_CPM (the market's price is capped there): 2e18 micros < 2**63.
MAX_MONEY = 1e9
MAX_CPM = 1e6
MAX_TOTAL_BUDGET = 1e10  # all of a scenario's campaign budgets together
MAX_SCALED_BUDGET = 1e12  # the same times rtb.simulate's budget_scale (the CLI allows 100)
MAX_RUN_REQUESTS = 1e9  # a run's requests in the worst case its traffic shapes allow
MAX_WEIGHT = 1e9  # a relative weight (traffic shape, device or geo mix): sums stay finite
MAX_TICKS = 1_000_000  # duration / tick
MIN_TICK_S = 0.001
MIN_WINDOW_S = 1.0  # frequency-cap windows
MAX_GEOS = 255  # a user's country is one byte
MAX_NAME = 200  # free-text names (scenario name, categories, geo names)
Money = Annotated[float, Field(ge=0, le=MAX_MONEY)]
Cpm = Annotated[float, Field(ge=0, le=MAX_CPM)]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|[smhdw])\s*$")


def _seconds(value: object) -> object:
    """Accept 3600, 3600.0, "120ms", "90s", "15m", "6h", "1d", "1w" as seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 15m, 6h, 1d, 1w)")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


def _utc(value: object) -> object:
    """Datetimes without a zone are taken as UTC, so a run never depends on the host."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


class OrText:
    """JSON Schema only (`rtb schema`): the field may also be written as text, which its
    BeforeValidator turns into the value; validation is unchanged.

    pydantic names bounds that follow a BeforeValidator its own way (gt, le); they are
    given their JSON Schema names here, so editors check them.
    """

    BOUNDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum", "le": "maximum"}

    def __init__(self, **text_schema: str):
        self.text_schema = {"type": "string", **text_schema}

    def __get_pydantic_json_schema__(self, core_schema, handler) -> dict:
        value = {self.BOUNDS.get(k, k): v for k, v in handler(core_schema).items()}
        return {"anyOf": [value, dict(self.text_schema)]}


MAX_DURATION_S = 3660 * 86400.0  # ten years
Seconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0, le=MAX_DURATION_S),
                    OrText(pattern=_DURATION.pattern, description="e.g. 90s, 15m, 6h, 1d, 1w")]
UtcDatetime = Annotated[datetime, BeforeValidator(_utc)]
Share = Annotated[float, Field(ge=0, le=1)]
FeeRate = Annotated[float, Field(ge=0, lt=1)]
Weight = Annotated[float, Field(ge=0, le=MAX_WEIGHT)]
Text = Annotated[str, Field(max_length=MAX_NAME)]
Id = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:\-]+$")]
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def _currency(value: object) -> object:
    """A currency code is checked here so the message says what one looks like."""
    if isinstance(value, str) and not _CURRENCY.fullmatch(value):
        raise ValueError(f"not a currency code: {value!r} (use an ISO 4217 code, three capital"
                         " letters, e.g. USD, EUR, GBP)")
    return value


# The currency every amount of a scenario and its outputs is in; the simulation only
# labels its money with it (no conversion ever happens).
# (The pattern comes first so the JSON Schema shows it; the validator runs before it.)
Currency = Annotated[str, Field(pattern=_CURRENCY.pattern,
                                description="ISO 4217 code, e.g. USD, EUR"),
                     BeforeValidator(_currency)]
Format = Literal["banner", "video", "native"]
Device = Literal["desktop", "mobile"]
