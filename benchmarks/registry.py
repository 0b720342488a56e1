"""Registry benchmark: shipyard against MLflow, in one run, on the same LightGBM model.

Both sides hold the same ``LGBMClassifier`` (breast cancer data) in a fresh embedded store in a
temporary folder — shipyard: SQLite + local folder (the defaults); MLflow: a SQLite tracking and
registry store + local artifact folder — under the alias ``production``, and both are loaded by
alias. Paired measurements alternate the two libraries (in blocks in-process, process by process
for cold loads), so that the drift of a shared machine hits both alike; the ratios (MLflow time /
shipyard time) are the result, not the times.

Run by hand with the benchmark environment (see ``benchmarks/README.md``)::

    .venv-bench/bin/python benchmarks/registry.py            # full run, a few minutes
    .venv-bench/bin/python benchmarks/registry.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from numpy.typing import ArrayLike
from sklearn.datasets import load_breast_cancer

from shipyard import LoadedModel, Settings, Workspace

MODEL = "bc"
ALIAS = "production"
URI = f"models:/{MODEL}@{ALIAS}"
SEED = 0
RESULTS_DIR = Path(__file__).resolve().parent / "results"
LIBRARIES = ("shipyard", "mlflow")

# What a fresh process runs: argv[1] is the row as JSON. The clock starts before the library is
# imported; the interpreter's own start-up is in the wall time the parent measures.
COLD_SCRIPT = """
import time
start_ns = time.perf_counter_ns()
import json, sys
import pandas as pd
import {module}
row = pd.DataFrame([json.loads(sys.argv[1])])
load_ns = time.perf_counter_ns()
{load}({uri!r}).predict(row)
end_ns = time.perf_counter_ns()
print(json.dumps({{"import_to_predict": end_ns - start_ns, "load_to_predict": end_ns - load_ns}}))
"""
COLD_SCRIPTS = {
    "shipyard": COLD_SCRIPT.format(module="shipyard", load="shipyard.load_model", uri=URI),
    "mlflow": COLD_SCRIPT.format(module="mlflow", load="mlflow.pyfunc.load_model", uri=URI),
}
LEGEND = (
    "Ratios are MLflow time / shipyard time: above 1, shipyard is faster. MLflow side: "
    "MlflowClient.get_model_version_by_alias for the alias rows, mlflow.pyfunc.load_model "
    "for the loads, the pyfunc model's predict for predict."
)
ROUNDS = 10  # in-process timings run in this many rounds of one block per library


@dataclass(frozen=True, slots=True)
class Plan:
    """Repetitions per measurement; warm-up calls and processes are run first and not counted."""

    fast: int  # alias resolution, cached load, single-row predict
    loads: int  # in-process loads without a cache
    processes: int  # fresh processes per library
    warmup: int
    warmup_processes: int


FULL = Plan(fast=2000, loads=200, processes=25, warmup=100, warmup_processes=2)
QUICK = Plan(fast=100, loads=10, processes=2, warmup=5, warmup_processes=1)


@dataclass(frozen=True, slots=True)
class Stats:
    n: int
    p50_ns: float
    p99_ns: float
    min_ns: float
    mean_ns: float

    @classmethod
    def of(cls, samples: ArrayLike) -> Stats:
        values = np.asarray(samples, dtype=np.float64)
        p50, p99 = np.percentile(values, [50, 99])
        return cls(len(values), float(p50), float(p99), float(values.min()), float(values.mean()))


@dataclass(frozen=True, slots=True)
class Result:
    measurement: str
    shipyard: Stats
    mlflow: Stats | None  # None: MLflow has no counterpart

    @property
    def ratio_p50(self) -> float | None:
        return None if self.mlflow is None else self.mlflow.p50_ns / self.shipyard.p50_ns

    @property
    def ratio_p99(self) -> float | None:
        return None if self.mlflow is None else self.mlflow.p99_ns / self.shipyard.p99_ns


@dataclass(frozen=True, slots=True)
class Stores:
    shipyard_home: Path
    mlflow_tracking_uri: str


def train() -> tuple[lgb.LGBMClassifier, pd.DataFrame]:
    data = load_breast_cancer(as_frame=True)
    model = lgb.LGBMClassifier(n_estimators=200, num_leaves=31, random_state=SEED, verbose=-1)
    model.fit(data.data, data.target)
    return model, data.data


def register_shipyard(home: Path, model: lgb.LGBMClassifier, features: pd.DataFrame) -> None:
    ws = Workspace(Settings(home=home))
    registered = ws.register_model(MODEL, model, input_example=features.head(5))
    ws.registry.set_alias(MODEL, ALIAS, registered.version)
    ws.close()


def register_mlflow(root: Path, model: lgb.LGBMClassifier, features: pd.DataFrame) -> str:
    """Log with the LightGBM flavor (the one ``mlflow.lightgbm.autolog`` uses), default options."""
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.create_experiment("bench", artifact_location=(root / "mlruns").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.lightgbm.log_model(
            model, name="model", input_example=features.head(5), registered_model_name=MODEL
        )
    MlflowClient().set_registered_model_alias(MODEL, ALIAS, str(info.registered_model_version))
    return tracking_uri


def time_calls(calls: Sequence[Callable[[], object]], *, n: int, warmup: int) -> list[Stats]:
    """Time each call ``n`` times, in ``ROUNDS`` rounds that run a block of each call in turn.

    Blocks rather than call-by-call alternation: the other library's LightGBM OpenMP threads,
    still spinning after its call, would otherwise land in this one's timings; drift between
    rounds still hits both alike.
    """
    for call in calls:
        for _ in range(warmup):
            call()
    block = n // ROUNDS
    samples = np.empty((len(calls), ROUNDS * block), dtype=np.int64)
    for round_ in range(ROUNDS):
        for j, call in enumerate(calls):
            for i in range(round_ * block, (round_ + 1) * block):
                start = time.perf_counter_ns()
                call()
                samples[j, i] = time.perf_counter_ns() - start
    return [Stats.of(row) for row in samples]


def check_same_predictions(ours: LoadedModel, theirs: Any, features: pd.DataFrame) -> None:
    """Both sides must answer with the same numbers, or the comparison means nothing.

    MLflow's LightGBM pyfunc answers ``predict`` (labels); the probabilities come from the model
    it wraps, the object its ``predict`` runs.
    """
    proba = ours.predict(features)
    np.testing.assert_array_equal(proba, theirs.get_raw_model().predict_proba(features))
    np.testing.assert_array_equal(theirs.predict(features), proba.argmax(axis=1))
    one_row = features.iloc[[0]]
    np.testing.assert_array_equal(ours.predict(one_row), proba[:1])
    np.testing.assert_array_equal(theirs.predict(one_row), proba[:1].argmax(axis=1))


def measure_in_process(stores: Stores, features: pd.DataFrame, plan: Plan) -> list[Result]:
    settings = Settings(home=stores.shipyard_home)
    ws = Workspace(settings)
    mlflow.set_tracking_uri(stores.mlflow_tracking_uri)
    client = MlflowClient()
    ours = ws.load_model(URI)
    theirs = mlflow.pyfunc.load_model(URI)
    check_same_predictions(ours, theirs, features)
    # The logged LGBMClassifier predicts on LightGBM's default thread count (every physical
    # core); shipyard's flavor predicts on one thread. This copy is set to one thread too.
    theirs_one_thread = mlflow.pyfunc.load_model(URI)
    theirs_one_thread.get_raw_model().set_params(n_jobs=1)
    check_same_predictions(ours, theirs_one_thread, features)
    one_row = features.iloc[[0]]

    def load_cleared() -> LoadedModel:
        ws.clear_model_cache()  # time the load itself, as MLflow's load has no cache
        return ws.load_model(URI)

    def load_new_workspace() -> LoadedModel:
        fresh = Workspace(settings)
        try:
            return fresh.load_model(URI)
        finally:
            fresh.close()

    def mlflow_resolve() -> object:
        return client.get_model_version_by_alias(MODEL, ALIAS)

    def mlflow_load() -> object:
        return mlflow.pyfunc.load_model(URI)

    fast = {"n": plan.fast, "warmup": plan.warmup}
    slow = {"n": plan.loads, "warmup": max(1, plan.warmup // 10)}
    resolve_number = time_calls([lambda: ws.registry.resolve_number(URI), mlflow_resolve], **fast)
    resolve = time_calls([lambda: ws.registry.resolve(URI), mlflow_resolve], **fast)
    (cached,) = time_calls([lambda: ws.load_model(URI)], **fast)
    cleared = time_calls([load_cleared, mlflow_load], **slow)
    new_workspace = time_calls([load_new_workspace, mlflow_load], **slow)
    predict = time_calls([lambda: ours.predict(one_row), lambda: theirs.predict(one_row)], **fast)
    predict_one_thread = time_calls(
        [lambda: ours.predict(one_row), lambda: theirs_one_thread.predict(one_row)], **fast
    )
    ws.close()
    return [
        Result("alias → version number: registry.resolve_number", *resolve_number),
        Result("alias → version record: registry.resolve", *resolve),
        Result("load_model, in-process cache hit (MLflow: no cache)", cached, None),
        Result("load_model in-process, cache cleared", *cleared),
        Result("load_model in-process, new Workspace each time", *new_workspace),
        Result("predict, one-row DataFrame (defaults)", *predict),
        Result("predict, one-row DataFrame (MLflow model n_jobs=1)", *predict_one_thread),
    ]


def measure_cold(stores: Stores, features: pd.DataFrame, plan: Plan) -> list[Result]:
    """A fresh interpreter per load, alternating libraries; each process predicts one row."""
    env = {
        **os.environ,
        "SHIPYARD_HOME": str(stores.shipyard_home),
        "MLFLOW_TRACKING_URI": stores.mlflow_tracking_uri,
    }
    row = features.iloc[0].to_json()
    samples: dict[str, dict[str, list[int]]] = {
        library: {"wall": [], "import_to_predict": [], "load_to_predict": []}
        for library in LIBRARIES
    }
    for i in range(plan.warmup_processes + plan.processes):
        for library in LIBRARIES:
            start = time.perf_counter_ns()
            done = subprocess.run(
                [sys.executable, "-c", COLD_SCRIPTS[library], row],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            wall = time.perf_counter_ns() - start
            if i < plan.warmup_processes:
                continue
            reported = json.loads(done.stdout.strip().splitlines()[-1])
            samples[library]["wall"].append(wall)
            for key in ("import_to_predict", "load_to_predict"):
                samples[library][key].append(int(reported[key]))
    labels = {
        "wall": "new process: start to exit (wall)",
        "import_to_predict": "new process: import to first prediction",
        "load_to_predict": "new process: load_model to first prediction",
    }
    return [
        Result(label, Stats.of(samples["shipyard"][key]), Stats.of(samples["mlflow"][key]))
        for key, label in labels.items()
    ]


def environment() -> dict[str, Any]:
    packages = ["shipyard", "mlflow", "lightgbm", "scikit-learn", "numpy", "pandas", "sqlalchemy"]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": {name: version(name) for name in packages},
        "mlflow_log_model": "mlflow.lightgbm.log_model (default serialization: skops)",
    }


def format_ns(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e3:.1f} µs"


def format_ratio(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}×"


def markdown_table(results: Sequence[Result]) -> str:
    lines = [
        "| measurement | n | shipyard p50 | shipyard p99 | MLflow p50 | MLflow p99 "
        "| ratio p50 | ratio p99 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        theirs = ("—", "—") if r.mlflow is None else (r.mlflow.p50_ns, r.mlflow.p99_ns)
        lines.append(
            f"| {r.measurement} | {r.shipyard.n} "
            f"| {format_ns(r.shipyard.p50_ns)} | {format_ns(r.shipyard.p99_ns)} "
            f"| {' | '.join(v if isinstance(v, str) else format_ns(v) for v in theirs)} "
            f"| {format_ratio(r.ratio_p50)} | {format_ratio(r.ratio_p99)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions: a smoke run")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    model, features = train()
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as folder:
        root = Path(folder)
        register_shipyard(root / "shipyard", model, features)
        stores = Stores(root / "shipyard", register_mlflow(root / "mlflow", model, features))
        results = measure_in_process(stores, features, plan)
        results += measure_cold(stores, features, plan)
    meta = {**environment(), "quick": args.quick, "plan": asdict(plan)}
    table = markdown_table(results)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = RESULTS_DIR / f"registry-{stamp}{'-quick' if args.quick else ''}.json"
    payload = {
        **meta,
        "results": [
            {**asdict(r), "ratio_p50": r.ratio_p50, "ratio_p99": r.ratio_p99} for r in results
        ],
    }
    output.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(meta, indent=2))
    print()
    print(LEGEND)
    print()
    print(table)
    print(f"\nwritten to {output}")


if __name__ == "__main__":
    main()
