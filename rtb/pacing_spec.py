"""Pacing specs: how a campaign spreads its budget over its flight (dsp/pacing.py acts on them).

Written as a word (`pacing = "pid"`) or as a table with parameters
(`pacing = { kind = "pid", kp = 0.5, ki = 1.0, kd = 0.0 }`); both give the same model.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BeforeValidator, Field, model_serializer

from rtb.spec_base import OrText, Spec

PACING_KINDS = ("asap", "even", "pid", "dual")
Gain = Annotated[float, Field(ge=0, le=100)]


class AsapPacingSpec(Spec):
    """Bid on every eligible request until the budget (or the day's) is gone."""

    kind: Literal["asap"]

    @model_serializer
    def _word(self) -> str:  # without parameters, written as the word (as before tables)
        return self.kind


class EvenPacingSpec(Spec):
    """Throttle so that cumulative spend follows the expected traffic the campaign can see."""

    kind: Literal["even"]

    @model_serializer
    def _word(self) -> str:
        return self.kind


class PidPacingSpec(Spec):
    """A PID controller on the log of the spend rate against even's target, acting on the
    log of the throttle share. Gains are per pacing interval (15 simulated minutes)."""

    kind: Literal["pid"]
    kp: Gain = Field(0.5, description="proportional gain")
    ki: Gain = Field(0.5, description="integral gain, per 15 simulated minutes")
    kd: Gain = Field(0.0, description="derivative gain, times 15 simulated minutes")


class DualPacingSpec(Spec):
    """Adaptive dual pacing: bids times 1/(1+mu); mu grows while spend runs ahead of even's
    target and shrinks (to 0) while it runs behind."""

    kind: Literal["dual"]
    step: Annotated[float, Field(gt=0, le=100)] = Field(
        0.5, description="mu's change per 15 simulated minutes per unit of relative spend error")


AnyPacingSpec = Union[AsapPacingSpec, EvenPacingSpec, PidPacingSpec, DualPacingSpec]


def _from_word(value: object) -> object:
    return {"kind": value} if isinstance(value, str) else value


# The field type of a campaign's `pacing`: a word, or a table with its parameters.
PacingSpec = Annotated[AnyPacingSpec, Field(discriminator="kind"), BeforeValidator(_from_word),
                       OrText(enum=list(PACING_KINDS))]
