"""Alert rules over one monitoring check, and the incident logic that makes one incident one alert.

A rule fires when its condition holds for a check's figures. Firing rules are grouped into
incidents by a key (rule, model, and the column or metric it is about): an incident opens the
first time its key fires, stays open while it keeps firing, and closes at the first check where
it does not. An alert is sent when an incident opens, and again only if it is still open after
``cooldown_s`` since the last alert — so one incident gives one alert, not one per check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shipyard.errors import InvalidInput

Condition = Literal[
    "drift_share", "prediction_drift", "column_drift", "metric_drop", "error_rate", "latency_p99_ms"
]
CONDITIONS: tuple[str, ...] = (
    "drift_share",
    "prediction_drift",
    "column_drift",
    "metric_drop",
    "error_rate",
    "latency_p99_ms",
)


@dataclass(frozen=True, slots=True)
class Rule:
    """``when`` is above ``threshold`` → fire. ``column`` (for column_drift; "*" = any column)
    and ``metric`` (for metric_drop: the drop of that metric against its baseline) narrow it."""

    name: str
    when: Condition
    threshold: float
    column: str | None = None
    metric: str | None = None
    actions: tuple[str, ...] = ("log",)
    cooldown_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.when not in CONDITIONS:
            raise InvalidInput(
                f"rule {self.name!r}: 'when' is {self.when!r}; "
                f"expected one of {', '.join(CONDITIONS)}",
                field="when",
            )
        if self.when == "column_drift" and not self.column:
            raise InvalidInput(f"rule {self.name!r}: column_drift needs 'column'", field="column")
        if self.when == "metric_drop" and not self.metric:
            raise InvalidInput(f"rule {self.name!r}: metric_drop needs 'metric'", field="metric")
        if self.cooldown_s < 0:
            raise InvalidInput(f"rule {self.name!r}: cooldown must be >= 0", field="cooldown")


@dataclass(frozen=True, slots=True)
class Figures:
    """What one check measured for one model (None: not measured in this check)."""

    model: str
    drift_share: float | None = None
    prediction_drift: float | None = None
    column_scores: Mapping[str, float] = field(default_factory=dict)
    metric_drops: Mapping[str, float] = field(
        default_factory=dict
    )  # baseline − current, signed "worse"
    error_rate: float | None = None
    latency_p99_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule that holds now, about one subject (the model, a column or a metric)."""

    rule: Rule
    model: str
    subject: str
    value: float

    @property
    def key(self) -> str:
        return f"{self.rule.name}|{self.model}|{self.subject}"

    @property
    def message(self) -> str:
        about = "" if self.subject == self.model else f" ({self.subject})"
        return (
            f"{self.rule.name}: {self.rule.when}{about} of model {self.model!r} is "
            f"{self.value:.4g}, above {self.rule.threshold:.4g}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.name,
            "when": self.rule.when,
            "model": self.model,
            "subject": self.subject,
            "value": self.value,
            "threshold": self.rule.threshold,
            "message": self.message,
        }


def evaluate(rules: Sequence[Rule], figures: Figures) -> list[Firing]:
    """Every rule that holds for ``figures``, one firing per subject."""
    out: list[Firing] = []
    for rule in rules:
        for subject, value in _values(rule, figures):
            if value > rule.threshold:
                out.append(Firing(rule, figures.model, subject, value))
    return out


def _values(rule: Rule, figures: Figures) -> list[tuple[str, float]]:
    model = figures.model
    match rule.when:
        case "column_drift":
            if rule.column == "*":
                return sorted(figures.column_scores.items())
            score = figures.column_scores.get(rule.column or "")
            return [] if score is None else [(rule.column or "", score)]
        case "metric_drop":
            drop = figures.metric_drops.get(rule.metric or "")
            return [] if drop is None else [(rule.metric or "", drop)]
        case _:
            value = getattr(figures, rule.when)
            return [] if value is None else [(model, float(value))]


@dataclass(frozen=True, slots=True)
class Incident:
    """The state of one key: open since ``opened_s``, last alerted at ``alerted_s``."""

    key: str
    opened_s: float
    alerted_s: float
    checks: int


def step(
    open_incidents: Mapping[str, Incident], firing: Sequence[Firing], now_s: float
) -> tuple[dict[str, Incident], list[Firing], list[str]]:
    """Advance the incidents by one check at ``now_s``.

    Returns the incidents still open, the firings to alert on now (a new incident, or an open
    one past its rule's cooldown since its last alert), and the keys of incidents that closed.
    """
    now_open: dict[str, Incident] = {}
    to_alert: list[Firing] = []
    for fire in firing:
        previous = open_incidents.get(fire.key)
        if previous is None:
            now_open[fire.key] = Incident(fire.key, now_s, now_s, 1)
            to_alert.append(fire)
        elif now_s - previous.alerted_s >= fire.rule.cooldown_s:
            now_open[fire.key] = Incident(fire.key, previous.opened_s, now_s, previous.checks + 1)
            to_alert.append(fire)
        else:
            now_open[fire.key] = Incident(
                fire.key, previous.opened_s, previous.alerted_s, previous.checks + 1
            )
    closed = sorted(set(open_incidents) - set(now_open))
    return now_open, to_alert, closed
