"""Alerting: rules from YAML, incidents kept in the metadata DB, and the actions alerts trigger.

Actions:

- ``log`` — a WARNING on the ``shipyard.alerts`` logger.
- ``webhook`` — ``POST`` of the alert as JSON to each configured URL, signed with
  ``X-Shipyard-Signature: sha256=<hex HMAC-SHA256 of the body with the webhook's secret>`` and
  ``X-Shipyard-Timestamp``; retried with exponential backoff on connection errors and 5xx/429.
- ``retrain`` — calls the registered retraining hook with the alert (a function the user
  provides; the retraining pipeline itself is a later feature).

Incidents (core.alert_rules) live in the database, so a one-shot ``monitor check`` run from cron
de-duplicates exactly like the ``monitor run`` daemon: one incident, one alert (again after the
rule's cooldown if it is still open).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shipyard.core.alert_rules import Figures, Firing, Incident, Rule, evaluate, step
from shipyard.errors import InvalidInput
from shipyard.storage import schema
from shipyard.storage.database import Database

logger = logging.getLogger(__name__)
alert_logger = logging.getLogger("shipyard.alerts")

RetrainHook = Callable[[dict[str, Any]], None]
ACTIONS = ("log", "webhook", "retrain")


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    secret: str = ""
    timeout_s: float = Field(default=5.0, gt=0)
    attempts: int = Field(default=4, ge=1, le=10)
    backoff_s: float = Field(default=0.5, ge=0)

    @field_validator("url")
    @classmethod
    def _http_only(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http:// or https://, got {value!r}")
        return value


class RuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    when: str
    above: float
    column: str | None = None
    metric: str | None = None
    actions: tuple[str, ...] = ("log",)
    cooldown_s: float = Field(default=3600.0, ge=0)


class AlertConfig(BaseModel):
    """``rules`` and the ``webhooks`` their ``webhook`` action posts to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[RuleConfig, ...] = ()
    webhooks: tuple[WebhookConfig, ...] = ()

    def build_rules(self) -> list[Rule]:
        out = []
        for r in self.rules:
            for action in r.actions:
                if action not in ACTIONS:
                    raise InvalidInput(
                        f"rule {r.name!r}: action {action!r} is not one of {', '.join(ACTIONS)}",
                        field="actions",
                    )
            out.append(
                Rule(
                    name=r.name,
                    when=r.when,  # type: ignore[arg-type]  # checked by Rule
                    threshold=r.above,
                    column=r.column,
                    metric=r.metric,
                    actions=r.actions,
                    cooldown_s=r.cooldown_s,
                )
            )
        return out


def load_alert_config(path: Path) -> AlertConfig:
    """Read a rules file, or InvalidInput naming the bad field."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read alert rules {str(path)!r}: {exc}", field="rules") from exc
    try:
        return AlertConfig.model_validate(data or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(
            f"alert rules {str(path)!r}: {where}: {first['msg']}", field=where
        ) from exc


@dataclass
class Alerter:
    """Evaluates rules on each check's figures and runs the actions of new alerts."""

    database: Database
    rules: Sequence[Rule]
    webhooks: Sequence[WebhookConfig] = ()
    retrain_hook: RetrainHook | None = None
    sleep: Callable[[float], None] = time.sleep
    sent: list[dict[str, Any]] = field(default_factory=list)

    def check(self, figures: Figures, *, now: datetime | None = None) -> list[dict[str, Any]]:
        """Evaluate one model's figures; returns the alerts sent now (with what each action did)."""
        at = now or datetime.now(UTC)
        firing = evaluate(self.rules, figures)
        prefix = f"%|{figures.model}|%"
        with self.database.write() as conn:
            t = schema.alert_incidents
            rows = conn.execute(sa.select(t).where(t.c.key.like(prefix))).all()
            current = {
                r.key: Incident(r.key, r.opened_at.timestamp(), r.alerted_at.timestamp(), r.checks)
                for r in rows
                if r.key.split("|")[1] == figures.model
            }
            still_open, to_alert, closed = step(current, firing, at.timestamp())
            if closed:
                conn.execute(sa.delete(t).where(t.c.key.in_(closed)))
            for key, incident in still_open.items():
                values = {
                    "opened_at": datetime.fromtimestamp(incident.opened_s, UTC),
                    "alerted_at": datetime.fromtimestamp(incident.alerted_s, UTC),
                    "checks": incident.checks,
                }
                if key in current:
                    conn.execute(sa.update(t).where(t.c.key == key).values(**values))
                else:
                    conn.execute(sa.insert(t).values(key=key, **values))
        for key in closed:
            logger.info("alert incident %s resolved", key)
        return [self._send(fire, at) for fire in to_alert]

    def _send(self, fire: Firing, at: datetime) -> dict[str, Any]:
        alert = {**fire.to_dict(), "at": at.isoformat()}
        outcomes: dict[str, Any] = {}
        for action in fire.rule.actions:
            try:
                if action == "log":
                    alert_logger.warning("ALERT %s", fire.message)
                    outcomes["log"] = "ok"
                elif action == "webhook":
                    outcomes["webhook"] = [self._post(hook, alert) for hook in self.webhooks]
                elif action == "retrain":
                    if self.retrain_hook is None:
                        outcomes["retrain"] = "no retraining hook is registered"
                    else:
                        self.retrain_hook(alert)
                        outcomes["retrain"] = "ok"
            except Exception as exc:  # one failing action must not stop the others
                logger.exception("alert action %s failed for %s", action, fire.key)
                outcomes[action] = f"failed: {type(exc).__name__}: {exc}"
        alert["actions"] = outcomes
        with self.database.write() as conn:
            conn.execute(
                sa.insert(schema.alerts).values(
                    key=fire.key,
                    rule=fire.rule.name,
                    model=fire.model,
                    subject=fire.subject,
                    value=fire.value,
                    threshold=fire.rule.threshold,
                    message=fire.message,
                    actions=outcomes,
                    at=at,
                )
            )
        self.sent.append(alert)
        return alert

    def _post(self, hook: WebhookConfig, alert: Mapping[str, Any]) -> str:
        body = orjson.dumps({k: v for k, v in alert.items() if k != "actions"})
        stamp = str(int(time.time()))
        signature = hmac.new(hook.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        headers = {
            "Content-Type": "application/json",
            "X-Shipyard-Timestamp": stamp,
            "X-Shipyard-Signature": f"sha256={signature.hexdigest()}",
        }
        last = ""
        for attempt in range(hook.attempts):
            if attempt:
                self.sleep(hook.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=hook.timeout_s) as response:
                    return f"{response.status} after {attempt + 1} attempt(s)"
            except urllib.error.HTTPError as exc:
                exc.close()
                last = f"HTTP {exc.code}"
                if exc.code < 500 and exc.code != 429:
                    return f"{last}: not retried"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = f"{type(exc).__name__}: {exc}"
        return f"gave up after {hook.attempts} attempts: {last}"

    def history(self, model: str | None = None) -> list[dict[str, Any]]:
        """Alerts sent, newest first."""
        t = schema.alerts
        query = sa.select(t).order_by(t.c.id.desc())
        if model is not None:
            query = query.where(t.c.model == model)
        with self.database.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]


def signature_valid(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """Check ``X-Shipyard-Signature`` the way a webhook receiver should (constant time)."""
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(f"sha256={expected.hexdigest()}", header)
