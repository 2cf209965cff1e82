"""What every pydantic spec model shares: a strict, frozen base and the money bounds."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Spec(BaseModel):
    """Unknown keys are errors (a typo fails with its path); a parsed spec never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# Bounds that keep every amount within int64 micros with room for sums.
MAX_MONEY = 1e9
MAX_CPM = 1e6
Money = Annotated[float, Field(ge=0, le=MAX_MONEY)]
Cpm = Annotated[float, Field(ge=0, le=MAX_CPM)]
