"""``shipyard demo``: features, training, tracking, registry, serving, monitoring and a canary.

Puts scikit-learn's bundled breast-cancer data (no download) behind a feature view, builds a
point-in-time training set from it, trains a LightGBM classifier, registers and aliases it,
serves it with online features, watches its inputs drift, and rolls out a second version by a
canary that the server's controller promotes or rolls back from the outcomes it is sent — so a
new user sees every part work together in under a minute.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape

from shipyard import monitor as monitoring
from shipyard.cli.context import workspace
from shipyard.cli.render import console, print_table
from shipyard.core.alert_rules import Rule
from shipyard.errors import require_package
from shipyard.monitoring.alerts import Alerter
from shipyard.monitoring.report import render_html
from shipyard.tracking import seed_everything
from shipyard.workspace import Workspace

MODEL_NAME = "breast-cancer"
ALIAS = "production"
CANARY = "breast-cancer-canary"
FEATURE_SERVICE = "breast_cancer_v1"
DEFINITIONS = """\
from datetime import timedelta

from shipyard.features.definitions import Entity, FeatureService, FeatureView, Field, ParquetSource

patient = Entity("patient", join_keys=["patient_id"])
tumour = FeatureView(
    "tumour",
    entities=[patient],
    features=[Field(name, "float64") for name in {names!r}],
    source=ParquetSource({path!r}),
    timestamp_field="measured_at",
    ttl=timedelta(days=90),
)
breast_cancer_v1 = FeatureService("breast_cancer_v1", [tumour])
"""
SEED = 42
PARAMS: dict[str, Any] = {
    "n_estimators": 100,
    "learning_rate": 0.05,
    "num_leaves": 15,
    "random_state": SEED,
    "verbose": -1,
}


@dataclass(frozen=True, slots=True)
class DemoResult:
    run_id: str
    version: int
    uri: str
    test_auc: float
    predictions_match: bool
    served_match: bool
    alerts: int
    canary: str  # the canary's last decision: promote or rollback


def demo(ctx: typer.Context) -> None:
    """Train a LightGBM model on the breast-cancer data, register it, alias it, serve it back."""
    result = run_demo(workspace(ctx), console())
    if not result.predictions_match:
        typer.echo(
            f"error: {result.uri} predicts differently from the model that was trained", err=True
        )
        raise typer.Exit(1)
    if not result.served_match:
        typer.echo(f"error: the server answered differently from {result.uri}", err=True)
        raise typer.Exit(1)


def _lightgbm_classifier() -> Any:
    return require_package("lightgbm", "lightgbm").LGBMClassifier(**PARAMS)


def _load_data() -> tuple[pd.DataFrame, pd.Series]:
    """Features with snake_case column names (``mean_radius``…) and the 0/1 target."""
    from sklearn.datasets import load_breast_cancer  # heavy (scipy): only when the demo runs

    bunch = load_breast_cancer(as_frame=True)
    features: pd.DataFrame = bunch.data
    features.columns = [str(c).replace(" ", "_") for c in features.columns]
    target: pd.Series = bunch.target
    return features, target


def run_demo(ws: Workspace, out: Console) -> DemoResult:
    """Run every step against ``ws``, narrating on ``out``."""
    from sklearn.metrics import log_loss, roc_auc_score  # heavy (scipy): only when the demo runs
    from sklearn.model_selection import train_test_split

    model = _lightgbm_classifier()
    features, target = _load_data()
    now = datetime.now(UTC).replace(microsecond=0)
    spine, changes = _feature_repo(ws, features, target, now)
    training = ws.features.get_historical_features(spine, FEATURE_SERVICE)
    table = training.to_pandas().set_index("patient_id")
    columns = list(features.columns)
    x_train, x_test, y_train, y_test = train_test_split(
        table[columns],
        table["diagnosis"],
        test_size=0.25,
        random_state=SEED,
        stratify=table["diagnosis"],
    )
    out.print(
        f"[bold]1. features[/] feature view 'tumour' ({len(columns)} measurements per patient, "
        f"ttl 90 days) over {len(features)} patients; applied "
        + ", ".join(f"{c.kind} {c.name} v{c.version} ({c.action})" for c in changes)
        + f"\n          point-in-time training set from service '{FEATURE_SERVICE}': "
        f"{len(x_train)} train rows, {len(x_test)} held-out rows"
    )

    seed_everything(SEED)
    with ws.start_run("demo", name="breast-cancer-lightgbm") as run:
        run.log_params({**PARAMS, "feature_service": FEATURE_SERVICE})
        ws.log_training_set(run, training)
        run.log_dataset(x_train.assign(target=y_train), "train")
        run.log_dataset(x_test.assign(target=y_test), "test")
        model.fit(x_train, y_train)
        train_proba = model.predict_proba(x_train)[:, 1]
        test_proba = model.predict_proba(x_test)[:, 1]
        metrics = {
            "train_auc": float(roc_auc_score(y_train, train_proba)),
            "test_auc": float(roc_auc_score(y_test, test_proba)),
            "train_log_loss": float(log_loss(y_train, train_proba)),
            "test_log_loss": float(log_loss(y_test, test_proba)),
        }
        run.log_metrics(metrics)
        version = ws.register_model(
            MODEL_NAME,
            model,
            input_example=x_train.head(5),
            reference_data=x_train,
            run=run,
            description="LightGBM on the breast-cancer data (shipyard demo)",
        )
    out.print(
        f"[bold]2. run[/]     {run.run_id} (experiment 'demo', seed {SEED})\n"
        f"          train AUC {metrics['train_auc']:.4f}, test AUC {metrics['test_auc']:.4f}, "
        f"test log loss {metrics['test_log_loss']:.4f}"
    )
    out.print(f"[bold]3. model[/]   registered {version.uri} (flavor {version.flavor})")

    event = ws.registry.set_alias(MODEL_NAME, ALIAS, version.version, reason="demo")
    was = f"version {event.previous_version}" if event.previous_version is not None else "unset"
    uri = f"models:/{MODEL_NAME}@{ALIAS}"
    out.print(f"[bold]4. alias[/]   {uri} -> version {event.version} (was {was})")

    loaded = ws.load_model(uri)
    served = loaded.predict(x_test)
    expected = model.predict_proba(x_test)
    match = bool(np.array_equal(served, expected))
    out.print(
        f"[bold]5. load[/]    load_model({uri!r}) -> {loaded.uri}\n"
        f"          its predictions on {len(x_test)} held-out rows "
        f"{'equal' if match else 'DIFFER FROM'} the trained model's predict_proba"
    )
    print_table(
        "a few predictions (P(benign))",
        ["row", "actual", "P(benign)"],
        (
            [str(idx), "benign" if label == 1 else "malignant", f"{p:.4f}"]
            for idx, label, p in zip(x_test.index[:5], y_test.iloc[:5], served[:5, 1], strict=True)
        ),
        empty="no rows",
    )
    results = ws.features.materialize(now - timedelta(days=365), now + timedelta(seconds=1))
    out.print(
        "[bold]6. online[/]  materialised "
        + ", ".join(f"{r.view} v{r.version}: {r.rows_written} patients" for r in results)
        + f" into {escape(ws.settings.resolved_online_store_url)}"
    )
    patients = x_test.index.to_numpy()
    labels = dict(zip(patients.tolist(), y_test.to_numpy().tolist(), strict=True))
    served_match, alerts = _serve_and_query(ws, patients, served, labels, out)
    candidate = _train_candidate(ws, training, x_train, y_train, x_test, y_test)
    canary = _canary(ws, candidate, patients, labels, out)
    settings = ws.settings
    out.print(
        f"[bold]12. workspace[/] {escape(str(settings.home))}\n"
        f"          metadata:  {escape(ws.database.safe_url)}\n"
        f"          artifacts: {escape(settings.resolved_artifacts_url)}"
    )
    out.print(
        "\n[bold]Next, try:[/]\n"
        f"  shipyard runs show {run.run_id}\n"
        f"  shipyard models show {MODEL_NAME}\n"
        f"  shipyard models lineage {MODEL_NAME}@{ALIAS}\n"
        f"  shipyard models alias history {MODEL_NAME} {ALIAS}\n"
        "  shipyard models list --json\n"
        "  shipyard features list\n"
        "  shipyard features materialize-incremental\n"
        f"  shipyard monitor check --model {MODEL_NAME} --window 1h\n"
        f"  shipyard experiments status {CANARY}\n"
        f"  shipyard experiments analyze {CANARY} --html canary.html\n"
        f"  shipyard serve {MODEL_NAME}@{ALIAS} --port 8080",
        highlight=False,
    )
    return DemoResult(
        run.run_id, version.version, uri, metrics["test_auc"], match, served_match, alerts, canary
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _feature_repo(
    ws: Workspace, features: pd.DataFrame, target: pd.Series, now: datetime
) -> tuple[pd.DataFrame, list[Any]]:
    """Write the measurements as Parquet with a time per patient, apply a definitions file for
    them, and return the training spine (patient, diagnosis time, label) and what was applied."""
    folder = ws.settings.home / "demo-features"
    folder.mkdir(parents=True, exist_ok=True)
    patients = np.arange(len(features))
    measured = [now - timedelta(days=60) + timedelta(minutes=int(i)) for i in patients]
    data = features.assign(patient_id=patients, measured_at=measured)
    data.to_parquet(folder / "tumour.parquet", index=False)
    definitions = folder / "features.py"
    definitions.write_text(
        DEFINITIONS.format(names=list(features.columns), path=str(folder / "tumour.parquet"))
    )
    changes = ws.features.apply_file(definitions)
    spine = pd.DataFrame(
        {
            "patient_id": patients,
            "event_timestamp": [m + timedelta(days=1) for m in measured],  # diagnosed a day later
            "diagnosis": target.to_numpy(),
        }
    )
    return spine, changes


def _serve_and_query(
    ws: Workspace, patients: Any, expected: Any, labels: dict[int, int], out: Console
) -> tuple[bool, int]:
    """Start ``shipyard serve`` in the background with the model fed by its feature service,
    query it over the Open Inference Protocol with patient ids only (REST, one per request, one
    keep-alive connection) and report latencies; then new measurements arrive drifted, the same
    patients are scored again, their diagnoses come back through ``POST /v1/feedback``, the
    server stops, and a monitoring check finds the drift, alerts and writes the report.
    Returns whether every first answer matched ``load_model`` and the server stopped cleanly,
    and how many alerts the check sent."""
    started = time.perf_counter()
    server, port, token = _start_server(ws, "serve.yaml")
    path = f"/v2/models/{MODEL_NAME}/infer"
    try:
        connection = _wait_ready(server, port)
        out.print(
            f"[bold]7. serve[/]   shipyard serve {MODEL_NAME}@{ALIAS} (features from "
            f"'{FEATURE_SERVICE}') on 127.0.0.1:{port} "
            f"ready in {time.perf_counter() - started:.1f} s"
        )
        first = _score_patients(connection, path, patients, 200)
        matches = sum(
            answer == expected[i % len(patients)].tolist() for i, (answer, _, _) in enumerate(first)
        )
        p50, p99 = np.percentile(np.array([t for _, t, _ in first]) * 1000, [50, 99])
        out.print(
            f"[bold]8. query[/]   200 OIP v2 requests (POST {path}, a patient id each): "
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms; {matches}/200 answers equal load_model's"
        )
        _drift_measurements(ws, patients)
        second = _score_patients(connection, path, patients, 200)
        outcomes = [
            {"request_id": request_id, "label": labels[int(patients[i % len(patients)])]}
            for i, (_, _, request_id) in enumerate(first + second)
        ]
        connection.request(
            "POST",
            "/v1/feedback",
            json.dumps({"model": MODEL_NAME, "outcomes": outcomes}),
            {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        stored = json.loads(connection.getresponse().read())["stored"]
        connection.close()
        out.print(
            "[bold]9. drift[/]   new measurements arrive from a recalibrated machine (the 'mean_*' "
            "features ×1.4, pushed to the online store); the same patients scored again; "
            f"{stored} diagnoses sent back with POST /v1/feedback"
        )
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
    out.print(f"          server stopped with SIGTERM (prediction log flushed), exit code {code}")
    alerts = _monitor(ws, out)
    return matches == 200 and code == 0, alerts


def _start_server(
    ws: Workspace, name: str, extra: str = ""
) -> tuple[subprocess.Popen[bytes], int, str]:
    """``shipyard serve`` in the background on a free port, the model fed by its feature
    service, with a fresh admin token (also good for feedback); returns (process, port, token).
    ``extra``: more YAML lines of the server configuration."""
    port = _free_port()
    token = secrets.token_hex(16)
    env = {**os.environ, "SHIPYARD_HOME": str(ws.settings.home), "SHIPYARD_ADMIN_TOKEN": token}
    config = ws.settings.home / "demo-features" / name
    config.write_text(
        f"deployments:\n  - name: {MODEL_NAME}\n    model: {MODEL_NAME}@{ALIAS}\n"
        f"    features: {FEATURE_SERVICE}\n"
        "prediction_log: {flush_interval_s: 0.5}\n" + extra
    )
    command = [sys.executable, "-m", "shipyard.cli.app", "serve", "--config", str(config)]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--drain-s", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return server, port, token


def _score_patients(
    connection: http.client.HTTPConnection, path: str, patients: Any, count: int
) -> list[tuple[Any, float, str]]:
    """(answer, seconds, request id) of ``count`` single-patient requests."""
    results = []
    for i in range(count):
        patient = int(patients[i % len(patients)])
        body = {
            "inputs": [{"name": "patient_id", "shape": [1], "datatype": "INT64", "data": [patient]}]
        }
        sent = time.perf_counter()
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read())
        elapsed = time.perf_counter() - sent
        results.append((answer["outputs"][0]["data"], elapsed, response.headers["X-Request-ID"]))
    return results


def _drift_measurements(ws: Workspace, patients: Any) -> None:
    """New, drifted measurements of ``patients`` pushed to the online store (newer than the
    materialised ones, so they are what the server reads from now on)."""
    view = ws.features.get_view("tumour")
    table = ws.features.get_online_features(
        [f"tumour:{name}" for name in view.feature_names], {"patient_id": patients.tolist()}
    ).to_columns()
    frame = pd.DataFrame(table).assign(patient_id=patients, measured_at=datetime.now(UTC))
    for name in view.feature_names:
        if name.startswith("mean_"):
            frame[name] = frame[name] * 1.4
    ws.features.push("tumour", frame)


def _monitor(ws: Workspace, out: Console) -> int:
    """One monitoring check of the last hour with two alert rules; writes the HTML report."""
    rules = [
        Rule("inputs drifted", "drift_share", 0.25, actions=("log",)),
        Rule("quality dropped", "metric_drop", 0.1, metric="roc_auc", actions=("log",)),
    ]
    result = monitoring.check(
        ws, MODEL_NAME, window=timedelta(hours=1), alerter=Alerter(ws.database, rules)
    )
    report = ws.settings.home / "monitoring-report.html"
    report.write_text(render_html(result.to_dict()), encoding="utf-8")
    drift = result.drift
    performance = result.performance or {}
    overall = performance.get("overall", {})
    baseline = performance.get("baseline", {})
    out.print(
        f"[bold]10. monitor[/] check of the last hour: {result.rows} logged predictions; "
        + (
            f"drift share {drift.drift_share:.2f} ({len(drift.drifted_columns)} of "
            f"{len(drift.columns)} features drifted), prediction drift {drift.prediction_drift}; "
            if drift is not None
            else ""
        )
        + (
            f"ROC AUC {overall['roc_auc']:.3f} on {performance['labelled_rows']} labelled "
            f"predictions (training: {baseline.get('roc_auc', float('nan')):.3f})"
            if overall.get("roc_auc") is not None
            else "no labelled predictions"
        )
    )
    for alert in result.alerts:
        out.print(f"          [bold red]ALERT[/] {escape(alert['message'])}")
    out.print(f"          report: {escape(str(report))}")
    return len(result.alerts)


def _train_candidate(
    ws: Workspace, training: Any, x_train: Any, y_train: Any, x_test: Any, y_test: Any
) -> int:
    """A second version: more, smaller steps (a tracked run, registered, not aliased)."""
    from sklearn.metrics import roc_auc_score

    params = {**PARAMS, "n_estimators": 300, "learning_rate": 0.02}
    model = _lightgbm_classifier().set_params(**params)
    with ws.start_run("demo", name="breast-cancer-lightgbm-v2") as run:
        run.log_params({**params, "feature_service": FEATURE_SERVICE})
        ws.log_training_set(run, training)
        run.log_dataset(x_train.assign(target=y_train), "train")
        run.log_dataset(x_test.assign(target=y_test), "test")
        model.fit(x_train, y_train)
        run.log_metrics(
            {"test_auc": float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))}
        )
        version = ws.register_model(
            MODEL_NAME, model, input_example=x_train.head(5), reference_data=x_train, run=run
        )
    return version.version


def _canary(
    ws: Workspace, candidate: int, patients: Any, labels: dict[int, int], out: Console
) -> str:
    """A canary of ``candidate`` against production, run by the server's rollout controller:
    each answer's correctness (against the known diagnosis) comes back as an outcome, a
    guardrail keeps it from being more than 5% worse, and at the end the alias moves."""
    strategy = {
        "type": "canary",
        "baseline": f"{MODEL_NAME}@{ALIAS}",
        "candidate": f"{MODEL_NAME}/{candidate}",
        "schedule": [
            {"weight": 0.2, "min_exposures": 150},
            {"weight": 0.5, "min_exposures": 150},
        ],
        "guardrails": [
            {"metric": "correct", "higher_is_better": True, "max_worsening": 0.05},
            {"metric": "error_rate"},
        ],
        "promote_alias": ALIAS,
    }
    ws.rollouts.create(CANARY, MODEL_NAME, strategy)
    ws.rollouts.start(CANARY)
    server, port, token = _start_server(ws, "canary.yaml", "reload_interval_s: 0.2\n")
    path = f"/v2/models/{MODEL_NAME}/infer"
    served: dict[str, int] = {}
    try:
        connection = _wait_ready(server, port)
        headers = {"Content-Type": "application/json"}
        auth = {**headers, "Authorization": f"Bearer {token}"}
        for i in range(3000):
            patient = int(patients[i % len(patients)])
            body = {
                "inputs": [
                    {"name": "patient_id", "shape": [1], "datatype": "INT64", "data": [patient]}
                ]
            }
            unit = {**headers, "X-Shipyard-Unit": f"visit-{i}"}
            connection.request("POST", path, json.dumps(body), unit)
            response = connection.getresponse()
            answer = json.loads(response.read())
            variant = response.headers["X-Shipyard-Variant"]
            served[variant] = served.get(variant, 0) + 1
            if variant == "default":  # the canary ended: one version serves alone
                break
            benign = answer["outputs"][0]["data"][1] > 0.5
            outcome = {
                "model": MODEL_NAME,
                "request_id": response.headers["X-Request-ID"],
                "metric": "correct",
                "label": float(benign == (labels[patient] == 1)),
            }
            connection.request("POST", "/v1/feedback", json.dumps(outcome), auth)
            connection.getresponse().read()
            if i % 50 == 49:
                time.sleep(0.3)  # the controller looks every 0.2 s
        connection.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    decisions = ws.rollouts.decisions(CANARY)
    out.print(
        f"[bold]11. canary[/] version {candidate} against {MODEL_NAME}@{ALIAS}: schedule 20% → "
        "50%, each step after 150 exposures; guardrails: 'correct' (each answer checked "
        "against the diagnosis, sent back as an outcome) not worse by more than 5%, error rate\n"
        f"          requests by variant: {served}"
    )
    for decision in decisions:
        guardrail = next(
            g for g in decision.details["guardrails"] if g["guardrail"]["metric"] == "correct"
        )
        relative = guardrail["relative"]
        out.print(
            f"          step {decision.step}: [bold]{decision.action}[/] — 'correct' relative "
            f"change {relative['estimate']:+.3f}, confidence sequence "
            f"[{relative['ci_low']:+.3f}, {relative['ci_high']:+.3f}] "
            f"({decision.details['step_exposures']} exposures in the step)"
        )
    status = ws.rollouts.experiment(CANARY).status
    now = ws.registry.resolve_number(f"{MODEL_NAME}@{ALIAS}")
    out.print(f"          experiment {status}; {MODEL_NAME}@{ALIAS} -> version {now}")
    return decisions[-1].action if decisions else "none"


def _wait_ready(server: subprocess.Popen[bytes], port: int) -> http.client.HTTPConnection:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the demo server exited early with code {server.returncode}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", "/v2/health/ready")
            if connection.getresponse().read() and connection.sock is not None:
                return connection
        except OSError:
            connection.close()
        time.sleep(0.05)
    raise RuntimeError("the demo server did not become ready within 120 s")
