"""Bidding-strategy specs: one model and one parser, for scenarios, `rtb compare` and `rtb replay`.

A strategy is written either as a TOML inline table, as in a scenario file,

    { kind = "linear", base_cpm = 80, avg_ctr = 0.001 }

or in the short form KIND[:NAME=VALUE,...],

    linear:base_cpm=80,avg_ctr=0.001

and both give the same pydantic model (a scenario's `strategy` may be either). The
short form also takes, for one release, `rtb replay`'s old spellings (`lin:b0=`,
`const:bid=`, `rand:max=`, `ortb:...,lambda=`), with a DeprecatedSpelling warning.
"""

from __future__ import annotations

import re
import tomllib
import warnings
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from rtb.errors import InputError
from rtb.spec_base import MAX_CPM, Cpm, Money, OrText, Spec

KINDS = ("fixed", "linear", "value", "mcpc", "ortb", "random", "shaded", "budget_ortb", "python")
# `rtb replay`'s spellings before the two vocabularies became one; accepted in the short
# form until the next release.
KIND_ALIASES = {"lin": "linear", "const": "fixed", "rand": "random"}
PARAM_ALIASES = {"linear": {"b0": "base_cpm"}, "fixed": {"bid": "bid_cpm"},
                 "random": {"max": "max_cpm"}, "ortb": {"lambda": "lam"}}
# Parameters the model lets out because `rtb replay` derives them from its log's
# training data; a scenario (and so `rtb compare`) must give them.
DERIVED_BY_REPLAY = {"linear": ("avg_ctr",), "mcpc": ("target_cpc",)}
SHORT_EXAMPLE = "linear:base_cpm=80,avg_ctr=0.001"
# A user's class: dotted module name, a colon, the class name.
CLASS_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
TABLE_EXAMPLE = '{ kind = "linear", base_cpm = 80, avg_ctr = 0.001 }'


class DeprecatedSpelling(FutureWarning):
    """A strategy written with an old `rtb replay` name; FutureWarning, so users see it."""


class FixedBidSpec(Spec):
    kind: Literal["fixed"]
    bid_cpm: Cpm


class LinearBidSpec(Spec):
    """bid = base_cpm * pCTR / avg_ctr."""

    kind: Literal["linear"]
    base_cpm: Cpm
    avg_ctr: Annotated[float, Field(ge=1e-9, le=1)] | None = Field(
        None, description="rtb replay: clk_train / imp_train when left out")


class ValueBidSpec(Spec):
    """bid = shading * pCTR * pCVR * advertiser's value per conversion * 1000."""

    kind: Literal["value"]
    shading: Annotated[float, Field(gt=0, le=10)] = 1.0


class McpcBidSpec(Spec):
    """bid = target_cpc * pCTR * 1000."""

    kind: Literal["mcpc"]
    target_cpc: Money | None = Field(
        None, description="rtb replay: the training cost per click when left out")


class OrtbBidSpec(Spec):
    """bid = sqrt(c / lam * pCTR + c^2) - c."""

    kind: Literal["ortb"]
    c: Annotated[float, Field(gt=0, le=MAX_CPM)]
    lam: Annotated[float, Field(ge=1e-12, le=1e6)]


class RandomBidSpec(Spec):
    kind: Literal["random"]
    max_cpm: Cpm


class ShadedBidSpec(Spec):
    """First-price bid shading learned online (dsp.adaptive.ShadedBid): bid the grid
    point b maximising (v - b) x P(win | b), v = pCTR x pCVR x value per conversion x
    1000 and P(win | b) the monotone fit of its own wins and losses; v itself (truthful)
    in a second-price exchange."""

    kind: Literal["shaded"]
    max_cpm: Annotated[float, Field(gt=0, le=MAX_CPM)] = Field(
        100.0, description="top of the bid grid (160 points, log-spaced down to max_cpm / 1e4)")
    explore: Annotated[float, Field(ge=0, le=1)] = Field(
        0.02, description="share of requests bid at a uniform point in [0, v) to keep learning")
    warmup: Annotated[int, Field(ge=0, le=10**9)] = Field(
        500, description="bids placed at random in [0, v) before the first fitted bid")
    half_life: Annotated[float, Field(gt=0, le=1e12)] | None = Field(
        None, description="bids after which an observation counts half (none: never forgets)")


class BudgetOrtbSpec(Spec):
    """A budget-constrained value bidder (dsp.adaptive.BudgetOrtbBid): bid
    sqrt(c / lam x v + c^2) - c (or v / lam without c), v as for `value`, with lam solved
    online so that spend follows the budget over the flight."""

    kind: Literal["budget_ortb"]
    c: Annotated[float, Field(gt=0, le=MAX_CPM)] | None = Field(
        None, description="ORTB's scale, CPM; left out: the linear bid v / lam")
    lam: Annotated[float, Field(ge=1e-9, le=1e9)] = Field(1.0, description="lam at the start")
    step: Annotated[float, Field(gt=0, le=100)] = Field(
        0.5, description="log lam += step x (spend / target - 1) per 15 simulated minutes")


class PythonStrategySpec(Spec):
    """A class of the user's (dsp.custom): `class` = "module:Class", `params` its
    constructor's keyword arguments. The module is imported from `folder` first (default,
    and relative to: the scenario file's folder), then from the Python path; reading the
    scenario sets `folder` to the absolute path."""

    # Written `class` (a Python keyword, so the attribute is class_), in files and dumps.
    model_config = ConfigDict(serialize_by_alias=True, validate_by_alias=True, validate_by_name=True)

    kind: Literal["python"]
    class_: str = Field(alias="class", max_length=500, json_schema_extra={"pattern": CLASS_PATTERN},
                        description="module:Class, e.g. my_bidders:Shaded")
    params: dict[str, Any] = Field({}, description="keyword arguments of the class's constructor")
    folder: str | None = Field(None, max_length=4096,
                               description="where the module is looked for first (default: the"
                                           " scenario file's folder)")

    @field_validator("class_")
    @classmethod
    def _module_colon_class(cls, value: str) -> str:
        if not re.match(CLASS_PATTERN, value):
            raise ValueError(f"{value!r} is not module:Class, e.g. my_bidders:Shaded")
        return value


AnyStrategySpec = Union[FixedBidSpec, LinearBidSpec, ValueBidSpec, McpcBidSpec, OrtbBidSpec,
                        RandomBidSpec, ShadedBidSpec, BudgetOrtbSpec, PythonStrategySpec]


def strategy_data(text: str) -> dict[str, object]:
    """The fields of a strategy written in either form, with the current names and the
    values as written (the model converts them); ValueError says what is wrong."""
    text = text.strip()
    if text.startswith("{"):
        try:
            doc = tomllib.loads(f"strategy = {text}")
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"not a TOML inline table such as {TABLE_EXAMPLE}: {exc}") from None
        if set(doc) != {"strategy"} or not isinstance(doc["strategy"], dict):
            raise ValueError(f"not one TOML inline table such as {TABLE_EXAMPLE}")
        return doc["strategy"]
    word, _, rest = text.partition(":")
    word = word.strip()
    kind = KIND_ALIASES.get(word, word)
    if kind not in KINDS:
        raise ValueError(f"unknown strategy kind {word!r}; expected one of {', '.join(KINDS)},"
                         f" written KIND:NAME=VALUE,... such as {SHORT_EXAMPLE} or as a TOML"
                         f" inline table such as {TABLE_EXAMPLE}")
    renamed = [(word, kind)] if word != kind else []
    data: dict[str, object] = {"kind": kind}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        name, eq, value = (s.strip() for s in item.partition("="))
        if not (eq and name and value):
            raise ValueError(f"{item!r}: expected NAME=VALUE, as in {SHORT_EXAMPLE}")
        current = PARAM_ALIASES.get(kind, {}).get(name, name)
        if current in data:
            raise ValueError(f"{current}: given twice")
        if current != name:
            renamed.append((name, current))
        if kind == "python" and current not in ("class", "folder"):
            params = data.setdefault("params", {})
            if current in params:
                raise ValueError(f"{current}: given twice")
            params[current] = _toml_value(value)
            continue
        data[current] = value
    if renamed:
        warnings.warn(f"strategy {text!r}: deprecated names " + ", ".join(
            f"{old} (now {new})" for old, new in renamed) + "; they go in the next release",
            DeprecatedSpelling, stacklevel=2)
    return data


def _toml_value(text: str) -> object:
    """A python strategy's parameter in the short form: a TOML value (80, 0.7, true,
    "text", [1, 2]) or else the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _from_text(value: object) -> object:
    return strategy_data(value) if isinstance(value, str) else value


# The field type of a scenario's `strategy`: a table, or a string in either form.
StrategySpec = Annotated[AnyStrategySpec, Field(discriminator="kind"), BeforeValidator(_from_text),
                         OrText(description=f"{SHORT_EXAMPLE} or a TOML inline table such as"
                                            f" {TABLE_EXAMPLE}")]
_ADAPTER: TypeAdapter[AnyStrategySpec] = TypeAdapter(StrategySpec)


def parse_strategy(text: str | dict, field: str, *, file: str = "command line",
                   require_all: bool = True) -> AnyStrategySpec:
    """A strategy in either form (or its fields as a dict) as its model; InputError names
    `field` and the problem.

    require_all: the parameters only `rtb replay` can derive (linear's avg_ctr, mcpc's
    target_cpc) must be given, as in a scenario; replay passes False.
    """
    try:
        spec = _ADAPTER.validate_python(text)
    except ValidationError as exc:
        raise InputError(file, [(_path(field, e["loc"]), error_message(e))
                                for e in exc.errors()]) from None
    problems = missing_in_scenario(spec) if require_all else []
    if problems:
        raise InputError(file, [(f"{field}.{name}", message) for name, message in problems])
    return spec


def missing_in_scenario(spec: AnyStrategySpec) -> list[tuple[str, str]]:
    """(parameter, problem) for each parameter left out that only `rtb replay` can derive."""
    return [(name, f"required: only rtb replay may leave {name} out (it derives it from the log's"
                   " training data)")
            for name in DERIVED_BY_REPLAY.get(spec.kind, ()) if getattr(spec, name) is None]


def _path(field: str, loc: tuple) -> str:
    # loc starts with pydantic's union-branch tag (the kind), which says nothing to a user.
    names = [str(part) for part in loc if part not in KINDS and not str(part).startswith("function-")]
    return ".".join([field, *names])


def error_message(error: dict) -> str:
    """A pydantic error about a strategy, in words that name the kinds and parameters."""
    kind = error["loc"][0] if error["loc"] and error["loc"][0] in KINDS else None
    match error["type"]:
        case "value_error":
            return str(error["ctx"]["error"])
        case "extra_forbidden" if kind is not None:
            model = next(m for m in AnyStrategySpec.__args__ if m.model_fields["kind"].annotation
                         == Literal[kind])
            takes = [field.alias or name for name, field in model.model_fields.items()
                     if name != "kind"]
            return f"unknown parameter of {kind!r}; it takes " + (", ".join(takes) or "none")
        case "union_tag_invalid":
            return (f"unknown strategy kind {error['ctx']['tag']!r}; expected one of "
                    + ", ".join(KINDS))
        case "union_tag_not_found":
            return "missing kind; expected one of " + ", ".join(KINDS)
    return error["msg"]


def short_form(spec: AnyStrategySpec) -> str:
    """The canonical short form, e.g. "linear:base_cpm=80" or "ortb:c=50,lam=5.2e-07";
    parameters left out (None) stay out."""
    if isinstance(spec, PythonStrategySpec):
        return "python:" + ",".join([f"class={spec.class_}", *(
            f"{name}={_param_text(value)}" for name, value in spec.params.items())])
    params = [f"{name}={_param_text(value)}" for name, value in spec.model_dump().items()
              if name != "kind" and value is not None]
    return spec.kind + (":" + ",".join(params) if params else "")


def _param_text(value: object) -> str:
    if isinstance(value, float):
        return number_text(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if isinstance(value, int) else repr(value)


def number_text(value: float) -> str:
    """A parameter as written back into a spec: integers without ".0", others by repr."""
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
