"""``shipyard demo``: train, track, register, alias, load and predict — end to end, step by step.

Trains a LightGBM classifier on scikit-learn's bundled breast-cancer data (no download), so a new
user sees every part of the workspace work together in a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape

from shipyard.cli.context import workspace
from shipyard.cli.render import console, print_table
from shipyard.errors import MissingDependency
from shipyard.tracking import seed_everything
from shipyard.workspace import Workspace

MODEL_NAME = "breast-cancer"
ALIAS = "production"
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


def demo(ctx: typer.Context) -> None:
    """Train a LightGBM model on the breast-cancer data, register it, alias it, serve it back."""
    result = run_demo(workspace(ctx), console())
    if not result.predictions_match:
        typer.echo(
            f"error: {result.uri} predicts differently from the model that was trained", err=True
        )
        raise typer.Exit(1)


def _lightgbm_classifier() -> Any:
    try:
        import lightgbm  # optional extra: shipyard[lightgbm]
    except ImportError as exc:
        raise MissingDependency("lightgbm", "lightgbm") from exc
    return lightgbm.LGBMClassifier(**PARAMS)


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
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=0.25, random_state=SEED, stratify=target
    )
    out.print(
        f"[bold]1. data[/]    breast cancer (scikit-learn): {len(x_train)} train rows, "
        f"{len(x_test)} held-out rows, {features.shape[1]} features"
    )

    seed_everything(SEED)
    with ws.start_run("demo", name="breast-cancer-lightgbm") as run:
        run.log_params(PARAMS)
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
    settings = ws.settings
    out.print(
        f"[bold]6. workspace[/] {escape(str(settings.home))}\n"
        f"          metadata:  {escape(ws.database.safe_url)}\n"
        f"          artifacts: {escape(settings.resolved_artifacts_url)}"
    )
    out.print(
        "\n[bold]Next, try:[/]\n"
        f"  shipyard runs show {run.run_id}\n"
        f"  shipyard models show {MODEL_NAME}\n"
        f"  shipyard models lineage {MODEL_NAME}@{ALIAS}\n"
        f"  shipyard models alias history {MODEL_NAME} {ALIAS}\n"
        "  shipyard models list --json",
        highlight=False,
    )
    return DemoResult(run.run_id, version.version, uri, metrics["test_auc"], match)
