"""Alert rules, incidents (one incident → one alert), and the log / webhook / retrain actions."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from shipyard import Workspace
from shipyard.core.alert_rules import Figures, Rule, evaluate, step
from shipyard.errors import InvalidInput
from shipyard.monitoring.alerts import (
    Alerter,
    WebhookConfig,
    load_alert_config,
    signature_valid,
)

T = datetime(2026, 5, 1, tzinfo=UTC)


def test_rules_fire_per_subject_above_their_threshold() -> None:
    rules = [
        Rule("share", "drift_share", 0.3),
        Rule("any column", "column_drift", 0.2, column="*"),
        Rule("auc", "metric_drop", 0.05, metric="roc_auc"),
        Rule("slow", "latency_p99_ms", 50),
    ]
    figures = Figures(
        "churn",
        drift_share=0.3,  # not above
        column_scores={"age": 0.5, "plan": 0.1, "income": 0.21},
        metric_drops={"roc_auc": 0.08},
    )
    fired = evaluate(rules, figures)
    assert [(f.rule.name, f.subject) for f in fired] == [
        ("any column", "age"),
        ("any column", "income"),
        ("auc", "roc_auc"),
    ]
    assert "column_drift (age) of model 'churn' is 0.5, above 0.2" in fired[0].message
    with pytest.raises(InvalidInput, match="column_drift needs 'column'"):
        Rule("x", "column_drift", 0.1)


def test_one_incident_gives_one_alert_until_cooldown_or_recovery() -> None:
    rule = Rule("share", "drift_share", 0.3, cooldown_s=600)
    high, low = Figures("m", drift_share=0.9), Figures("m", drift_share=0.1)
    incidents: dict[str, Any] = {}
    alerts = []
    for minute, figures in enumerate([high, high, high, low, high] + [high] * 11):
        incidents, to_alert, _ = step(incidents, evaluate([rule], figures), minute * 60.0)
        alerts.extend(minute for _ in to_alert)
    # opens at 0; closes at 3; reopens at 4; still open 10 minutes after its alert → again at 14
    assert alerts == [0, 4, 14]


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    return workspace


def test_incidents_persist_so_one_shot_checks_deduplicate(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    rule = Rule("share", "drift_share", 0.3, actions=("log",))
    caplog.set_level(logging.WARNING, logger="shipyard.alerts")
    sent = []
    for minutes in (0, 5, 10):  # a new Alerter each time: like `monitor check` from cron
        alerter = Alerter(ws.database, [rule])
        sent.append(
            alerter.check(Figures("m", drift_share=0.8), now=T + timedelta(minutes=minutes))
        )
    assert [len(s) for s in sent] == [1, 0, 0]
    assert [r.getMessage() for r in caplog.records] == [
        "ALERT share: drift_share of model 'm' is 0.8, above 0.3"
    ]
    Alerter(ws.database, [rule]).check(Figures("m", drift_share=0.1), now=T + timedelta(minutes=15))
    again = Alerter(ws.database, [rule]).check(
        Figures("m", drift_share=0.7), now=T + timedelta(minutes=20)
    )
    assert len(again) == 1
    history = Alerter(ws.database, [rule]).history("m")
    assert [h["value"] for h in history] == [0.7, 0.8]
    assert history[0]["actions"] == {"log": "ok"}


class _Receiver(http.server.BaseHTTPRequestHandler):
    failures_left = 0
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        status = 503 if type(self).failures_left > 0 else 200
        type(self).failures_left -= 1
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()
    thread.join()


def test_webhook_is_signed_and_retried_with_backoff(ws: Workspace, receiver: str) -> None:
    _Receiver.failures_left = 2
    waits: list[float] = []
    hook = WebhookConfig(url=receiver, secret="s3cret", backoff_s=0.25)
    rule = Rule("share", "drift_share", 0.3, actions=("webhook",))
    alerter = Alerter(ws.database, [rule], webhooks=[hook], sleep=waits.append)
    [alert] = alerter.check(Figures("churn", drift_share=0.9), now=T)
    assert alert["actions"]["webhook"] == ["200 after 3 attempt(s)"]
    assert waits == [0.25, 0.5]  # exponential backoff between the attempts
    assert len(_Receiver.received) == 3
    headers, body = _Receiver.received[-1]
    payload = json.loads(body)
    assert (payload["rule"], payload["model"], payload["value"]) == ("share", "churn", 0.9)
    assert signature_valid(
        "s3cret", headers["X-Shipyard-Timestamp"], body, headers["X-Shipyard-Signature"]
    )
    assert not signature_valid(
        "other", headers["X-Shipyard-Timestamp"], body, headers["X-Shipyard-Signature"]
    )


def test_webhook_gives_up_and_other_actions_still_run(ws: Workspace, receiver: str) -> None:
    _Receiver.failures_left = 99
    calls: list[dict[str, Any]] = []
    hook = WebhookConfig(url=receiver, attempts=2, backoff_s=0)
    rule = Rule("auc", "metric_drop", 0.05, metric="roc_auc", actions=("webhook", "retrain"))
    alerter = Alerter(
        ws.database, [rule], webhooks=[hook], retrain_hook=calls.append, sleep=lambda _: None
    )
    [alert] = alerter.check(Figures("churn", metric_drops={"roc_auc": 0.2}), now=T)
    assert alert["actions"]["webhook"] == ["gave up after 2 attempts: HTTP 503"]
    assert alert["actions"]["retrain"] == "ok"
    assert [(c["rule"], c["subject"], c["value"]) for c in calls] == [("auc", "roc_auc", 0.2)]


def test_rules_file_is_validated_with_the_field_named(tmp_path: Path) -> None:
    good = tmp_path / "rules.yaml"
    good.write_text(
        "rules:\n"
        "  - {name: drifted, when: drift_share, above: 0.3, actions: [log, webhook]}\n"
        "  - {name: age, when: column_drift, column: age, above: 0.2, cooldown_s: 60}\n"
        "webhooks:\n  - {url: 'https://hooks.example/x', secret: k}\n"
    )
    config = load_alert_config(good)
    assert [r.name for r in config.build_rules()] == ["drifted", "age"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: x, when: drift_share}\n")
    with pytest.raises(InvalidInput, match=r"rules\.0\.above"):
        load_alert_config(bad)
    bad.write_text("webhooks:\n  - {url: 'file:///etc/passwd'}\n")
    with pytest.raises(InvalidInput, match="http:// or https://"):
        load_alert_config(bad)
    bad.write_text("rules:\n  - {name: x, when: drift_share, above: 1, actions: [page]}\n")
    with pytest.raises(InvalidInput, match="action 'page'"):
        load_alert_config(bad).build_rules()
