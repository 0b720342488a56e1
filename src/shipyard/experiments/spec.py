"""Deployment strategies: how a deployment's traffic is split between model versions.

A deployment (an endpoint name served by ``shipyard serve``) answers from its configured model
URI until a strategy is set for it in the metadata DB; every server replica reads the strategy
on its refresh interval and swaps it in without a restart. Strategies, by ``type``:

- ``single`` — one model URI (an alias or a version);
- ``blue_green`` — two URIs, ``live`` says which answers; switching is one atomic change;
- ``canary`` — ``baseline`` and ``candidate`` with the candidate's ``weight``, and optionally a
  ``schedule`` of steps (weight, minimum minutes *and* minimum exposures) that a rollout
  controller walks through, gated by ``guardrails``; at the end it moves ``promote_alias``;
- ``shadow`` — ``primary`` answers; ``fraction`` of requests is mirrored to ``candidates``;
- ``ab_test`` — a fixed split between named ``variants`` (the first is control);
- ``bandit`` — ``variants`` whose split a policy recomputes from outcomes every ``interval_s``.

Units: a request's unit key comes from the ``X-Shipyard-Unit`` header, else from the request
field ``unit_field`` names (a column of the inputs); without one, the request is assigned at
random. Variants are assigned by a hash of (the experiment's salt, the unit key)
(:mod:`shipyard.core.assignment`).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from shipyard.core.identifiers import parse_model_uri, validate_name
from shipyard.errors import InvalidInput

MAX_VARIANTS = 16


def _uri(value: str) -> str:
    try:
        return str(parse_model_uri(value))
    except InvalidInput as exc:
        raise ValueError(exc.message) from exc


ModelUri = Annotated[str, AfterValidator(_uri)]
"""A model URI (``models:/churn@production``, ``models:/churn/3``, ``churn@candidate``)."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variant(_Spec):
    """A named arm of an experiment and the model URI that serves it."""

    name: str
    model: ModelUri

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        try:
            return validate_name(value, what="variant name")
        except InvalidInput as exc:
            raise ValueError(exc.message) from exc


class Guardrail(_Spec):
    """A metric the candidate must not make worse by more than ``max_worsening`` (relative:
    0.05 = 5%). ``metric``: ``error_rate``, ``latency_ms`` (mean) and ``latency_p99`` (the share
    of requests slower than the baseline's p99) come from the exposures the server logs; any
    other name is an outcome metric from ``POST /v1/feedback``."""

    metric: str
    higher_is_better: bool = False
    max_worsening: float = Field(default=0.0, ge=0.0)


class Step(_Spec):
    """One canary step: the candidate's weight, held for at least ``min_minutes`` and
    ``min_exposures`` before the next step (both must hold)."""

    weight: float = Field(gt=0.0, le=1.0)
    min_minutes: float = Field(default=0.0, ge=0.0)
    min_exposures: int = Field(default=0, ge=0)


class Single(_Spec):
    type: Literal["single"] = "single"
    model: ModelUri


class BlueGreen(_Spec):
    type: Literal["blue_green"] = "blue_green"
    blue: ModelUri
    green: ModelUri
    live: Literal["blue", "green"] = "blue"


class Canary(_Spec):
    type: Literal["canary"] = "canary"
    baseline: ModelUri
    candidate: ModelUri
    weight: float = Field(default=0.0, ge=0.0, le=1.0)
    schedule: tuple[Step, ...] = ()
    guardrails: tuple[Guardrail, ...] = ()
    metric: str | None = None  # the primary outcome metric, when there is one
    higher_is_better: bool = True  # for ``metric``
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    promote_alias: str | None = None  # moved to the candidate's version when the schedule ends
    unit_field: str | None = None

    @field_validator("schedule")
    @classmethod
    def _ramps_up(cls, schedule: tuple[Step, ...]) -> tuple[Step, ...]:
        weights = [s.weight for s in schedule]
        if any(b < a for a, b in pairwise(weights)):
            raise ValueError(f"schedule weights must not decrease; got {weights}")
        return schedule


class Shadow(_Spec):
    type: Literal["shadow"] = "shadow"
    primary: ModelUri
    candidates: tuple[ModelUri, ...] = Field(min_length=1, max_length=MAX_VARIANTS)
    fraction: float = Field(default=1.0, gt=0.0, le=1.0)


class ABTest(_Spec):
    type: Literal["ab_test"] = "ab_test"
    variants: tuple[Variant, ...] = Field(min_length=2, max_length=MAX_VARIANTS)
    weights: tuple[float, ...] | None = None  # None: an even split
    metric: str | None = None
    higher_is_better: bool = True
    unit_field: str | None = None

    @field_validator("variants")
    @classmethod
    def _unique_names(cls, variants: tuple[Variant, ...]) -> tuple[Variant, ...]:
        return _unique(variants)

    @field_validator("weights")
    @classmethod
    def _split_of_variants(
        cls, weights: tuple[float, ...] | None, info: ValidationInfo
    ) -> tuple[float, ...] | None:
        variants = info.data.get("variants")
        if weights is None or variants is None:
            return weights
        if len(weights) != len(variants):
            raise ValueError(f"weights has {len(weights)} values for {len(variants)} variants")
        if any(w < 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
            raise ValueError(f"weights must be >= 0 and sum to 1; got {list(weights)}")
        return weights

    @property
    def split(self) -> tuple[float, ...]:
        return self.weights or tuple(1.0 / len(self.variants) for _ in self.variants)


class Bandit(_Spec):
    type: Literal["bandit"] = "bandit"
    variants: tuple[Variant, ...] = Field(min_length=2, max_length=MAX_VARIANTS)
    policy: Literal["thompson", "ucb1", "epsilon_greedy"] = "thompson"
    reward: Literal["binary", "continuous"] = "binary"
    metric: str = "label"  # the outcome that is the reward
    floor: float = Field(default=0.01, ge=0.0, lt=1.0)  # minimum share of every arm
    epsilon: float = Field(default=0.1, gt=0.0, le=1.0)
    interval_s: float = Field(default=60.0, gt=0.0)
    sticky: bool = False
    unit_field: str | None = None

    @field_validator("variants")
    @classmethod
    def _unique_names(cls, variants: tuple[Variant, ...]) -> tuple[Variant, ...]:
        return _unique(variants)

    @field_validator("floor")
    @classmethod
    def _floor_fits(cls, floor: float, info: ValidationInfo) -> float:
        variants = info.data.get("variants")
        if variants is not None and floor * len(variants) > 1.0:
            raise ValueError(f"floor {floor} × {len(variants)} variants exceeds 1: lower it")
        return floor


def _unique(variants: tuple[Variant, ...]) -> tuple[Variant, ...]:
    names = [v.name for v in variants]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"variant names must be unique; repeated: {', '.join(repeated)}")
    return variants


Strategy = Annotated[
    Single | BlueGreen | Canary | Shadow | ABTest | Bandit, Field(discriminator="type")
]


class _StrategyDocument(_Spec):
    strategy: Strategy


def parse_strategy(data: Any) -> Single | BlueGreen | Canary | Shadow | ABTest | Bandit:
    """Validate a strategy (a mapping with ``type``), naming the first bad field."""
    try:
        return _StrategyDocument.model_validate({"strategy": data}).strategy
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"][1:] if p not in _STRATEGY_TAGS) or "type"
        raise InvalidInput(f"strategy field {where!r}: {error['msg']}", field=where) from exc


_STRATEGY_TAGS = {"single", "blue_green", "canary", "shadow", "ab_test", "bandit"}


def variants_of(strategy: Single | BlueGreen | Canary | Shadow | ABTest | Bandit) -> list[Variant]:
    """The variants a strategy serves from (for shadow: the primary, then each candidate)."""
    match strategy:
        case Single():
            return [Variant(name="default", model=strategy.model)]
        case BlueGreen():
            return [
                Variant(name="blue", model=strategy.blue),
                Variant(name="green", model=strategy.green),
            ]
        case Canary():
            return [
                Variant(name="baseline", model=strategy.baseline),
                Variant(name="candidate", model=strategy.candidate),
            ]
        case Shadow():
            shadows = [
                Variant(name=f"shadow-{i + 1}", model=uri)
                for i, uri in enumerate(strategy.candidates)
            ]
            return [Variant(name="primary", model=strategy.primary), *shadows]
        case ABTest() | Bandit():
            return list(strategy.variants)
