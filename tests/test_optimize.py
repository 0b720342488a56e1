"""``optimize_model`` / ``shipyard models optimize``: a version converted to ONNX, checked for
parity with its source and registered with lineage — or refused, registering nothing."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import torch
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shipyard import InvalidInput, Workspace
from shipyard.core.parity import compare, uniform_rows
from shipyard.core.signature import Batch

COLUMNS = [f"f{i}" for i in range(6)]
TOLERANCE = 1e-5


def classification(
    seed: int = 0, rows: int = 300, n_classes: int = 3
) -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    x, y = make_classification(
        n_samples=rows, n_features=6, n_informative=4, n_classes=n_classes, random_state=seed
    )
    return pd.DataFrame(x, columns=COLUMNS), y


def regression(seed: int = 0, rows: int = 300) -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    x, y = make_regression(n_samples=rows, n_features=6, noise=0.5, random_state=seed)
    return pd.DataFrame(x, columns=COLUMNS), y


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3), torch.nn.Softmax(dim=1)
    )


@dataclass
class Case:
    model: Any
    example: pd.DataFrame | np.ndarray[Any, Any]
    fresh: pd.DataFrame | np.ndarray[Any, Any]  # rows neither the fit nor the check saw
    tolerance: float = TOLERANCE
    precision: str | None = None


def _hgb() -> Case:
    x, y = classification()
    return Case(
        HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(x, y),
        x[:40],
        classification(seed=1)[0],
    )


def _pipeline() -> Case:
    x, y = classification()
    return Case(
        make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
        x[:40],
        classification(seed=1)[0],
    )


def _lightgbm() -> Case:
    x, y = classification()
    model = lgb.LGBMClassifier(n_estimators=30, verbose=-1, n_jobs=1).fit(x, y)
    return Case(model, x[:40], classification(seed=1)[0])


def _lightgbm_binary_booster() -> Case:
    # A bare booster answers P(1) alone: the converted model keeps the second column.
    x, y = classification(n_classes=2)
    params = {"objective": "binary", "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=20)
    return Case(booster, x[:40], classification(seed=1, n_classes=2)[0])


def _xgboost() -> Case:
    x, y = classification()
    model = xgb.XGBClassifier(n_estimators=30, n_jobs=1).fit(x, y)
    return Case(model, x[:40], classification(seed=1)[0])


def _ridge() -> Case:
    # Regression values in the hundreds: float32 cannot hold them to 1e-5, float64 can.
    x, y = regression()
    model = make_pipeline(StandardScaler(), Ridge()).fit(x, y)
    return Case(model, x[:40], regression(seed=1)[0], precision="float64")


def _xgboost_regressor() -> Case:
    # XGBoost sums its trees in float32, and so does ONNX Runtime, in another order: allow a
    # few float32 steps at the scale of the answers.
    x, y = regression()
    model = xgb.XGBRegressor(n_estimators=30, n_jobs=1).fit(x, y)
    scale = float(np.max(np.abs(y)))
    return Case(model, x[:40], regression(seed=1)[0], tolerance=64 * 2**-23 * scale)


def _torch() -> Case:
    rng = np.random.default_rng(0)
    return Case(
        mlp(),
        rng.normal(size=(40, 6)).astype(np.float32),
        rng.normal(size=(300, 6)).astype(np.float32),
    )


CASES = [
    pytest.param(_hgb, id="sklearn-hist-gradient-boosting"),
    pytest.param(_pipeline, id="sklearn-pipeline"),
    pytest.param(_lightgbm, id="lightgbm"),
    pytest.param(_lightgbm_binary_booster, id="lightgbm-binary-booster"),
    pytest.param(_xgboost, id="xgboost"),
    pytest.param(_ridge, id="sklearn-regressor-float64"),
    pytest.param(_xgboost_regressor, id="xgboost-regressor"),
    pytest.param(_torch, id="torch-mlp"),
]


def rows_of(data: pd.DataFrame | np.ndarray[Any, Any], start: int, stop: int) -> Any:
    return data.iloc[start:stop] if isinstance(data, pd.DataFrame) else data[start:stop]


def stacked(first: Any, second: Any) -> Any:
    if isinstance(first, pd.DataFrame):
        return pd.concat([first, second], ignore_index=True)
    return np.concatenate((first, second))


# ------------------------------------------------------------- conversions
@pytest.mark.parametrize("make_case", CASES)
def test_optimize_registers_an_onnx_version_that_answers_like_the_source(
    workspace: Workspace, make_case: Callable[[], Case]
) -> None:
    case = make_case()
    with workspace.start_run("optimize") as run:
        source = workspace.register_model("m", case.model, input_example=case.example, run=run)
    sample = rows_of(case.fresh, 0, 200)

    result = workspace.optimize_model(
        source.uri, tolerance=case.tolerance, sample=sample, precision=case.precision
    )

    new = result.version
    assert (new.version, new.flavor, result.source) == (2, "onnx", "models:/m/1")
    assert new.run_id == run.run_id
    assert workspace.lineage(new.uri).run is not None
    assert new.tags["optimized_from"] == "models:/m/1"
    assert new.tags["parity_max_abs_diff"] == repr(result.max_abs_diff)
    assert new.tags["parity_rows"] == str(result.rows) == str(len(case.example) + 200)
    assert "version 1" in (new.description or "")
    assert new.signature == source.signature  # same inputs, same output shape and dtype

    original = workspace.load_model(source.uri)
    converted = workspace.load_model(new.uri)
    checked = stacked(case.example, sample)
    independent = compare(original.predict(checked), converted.predict(checked))
    assert result.max_abs_diff == independent.max_abs_diff
    assert result.mean_abs_diff == independent.mean_abs_diff
    assert result.max_abs_diff <= case.tolerance

    fresh = rows_of(case.fresh, 200, 300)
    expected, got = original.predict(fresh), converted.predict(fresh)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=0, atol=case.tolerance)


def test_default_sample_spans_the_example(workspace: Workspace) -> None:
    case = _hgb()
    source = workspace.register_model("m", case.model, input_example=case.example)
    result = workspace.optimize_model(source.uri)
    assert result.rows == len(case.example) + 1000
    assert 0 < result.max_abs_diff <= TOLERANCE  # float32 trees: close, not bitwise


# ----------------------------------------------------------------- refusals
def test_parity_failure_registers_nothing(workspace: Workspace) -> None:
    # The float32 ONNX trees differ from sklearn's float64 in the last bits: tolerance 0 fails.
    case = _hgb()
    source = workspace.register_model("m", case.model, input_example=case.example)
    with pytest.raises(InvalidInput, match=r"differs from it by up to \d.*nothing was registered"):
        workspace.optimize_model(source.uri, tolerance=0.0)
    assert [v.version for v in workspace.registry.list_versions("m")] == [1]


def test_float32_regression_misses_a_tight_tolerance(workspace: Workspace) -> None:
    case = _ridge()
    source = workspace.register_model("m", case.model, input_example=case.example)
    with pytest.raises(InvalidInput, match="try precision float64"):
        workspace.optimize_model(source.uri)
    assert len(workspace.registry.list_versions("m")) == 1


def test_string_columns_are_refused_by_name(workspace: Workspace) -> None:
    x, y = classification()
    x["city"] = np.where(y == 0, "paris", "oslo")
    encode = ColumnTransformer([("city", OneHotEncoder(), ["city"])], remainder="passthrough")
    model = make_pipeline(encode, LogisticRegression()).fit(x, y)
    source = workspace.register_model("m", model, input_example=x[:20])
    with pytest.raises(InvalidInput, match=r"column\(s\) city \(string\) are not numeric"):
        workspace.optimize_model(source.uri)
    assert len(workspace.registry.list_versions("m")) == 1


def test_unconvertible_versions_and_options_are_refused(workspace: Workspace) -> None:
    case = _lightgbm()
    source = workspace.register_model("m", case.model, input_example=case.example)
    with pytest.raises(InvalidInput, match="precision 'float64' is not available for a LightGBM"):
        workspace.optimize_model(source.uri, precision="float64")
    with pytest.raises(InvalidInput, match="tolerance must be a finite number"):
        workspace.optimize_model(source.uri, tolerance=-1.0)
    onnx = workspace.optimize_model(source.uri).version
    with pytest.raises(InvalidInput, match="has flavor onnx; only versions of flavor sklearn"):
        workspace.optimize_model(onnx.uri)


# ---------------------------------------------------------------------- CLI
def test_cli_optimize_prints_json(workspace: Workspace, tmp_path: Path) -> None:
    case = _pipeline()
    workspace.register_model("churn", case.model, input_example=case.example)
    env = {**os.environ, "SHIPYARD_HOME": str(tmp_path / "home"), "SHIPYARD_USER": "tester"}
    argv = [sys.executable, "-m", "shipyard.cli.app", "models", "optimize", "churn"]
    done = subprocess.run(
        [*argv, "--version", "1", "--json"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["source"] == "models:/churn/1"
    assert out["version"]["uri"] == "models:/churn/2"
    assert out["version"]["flavor"] == "onnx"
    assert out["rows"] == len(case.example) + 1000
    assert 0 <= out["max_abs_diff"] <= out["tolerance"] == TOLERANCE

    failed = subprocess.run(
        [*argv, "--version", "1", "--tolerance", "0"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode == 2
    assert failed.stderr.startswith("error: the ONNX conversion of models:/churn/1 differs")
    assert len(failed.stderr.strip().splitlines()) == 1


# -------------------------------------------------------------- parity math
def test_compare_counts_shared_nans_as_equal_and_lone_nans_as_infinitely_far() -> None:
    want = np.array([[0.5, np.nan], [1.0, 2.0]])
    close = compare(want, np.array([[0.5, np.nan], [1.0, 2.5]]))
    assert (close.max_abs_diff, close.mean_abs_diff, close.rows) == (0.5, 0.125, 2)
    lone = compare(want, np.array([[0.5, 0.0], [1.0, 2.0]]))
    assert math.isinf(lone.max_abs_diff) and lone.rows == 2
    with pytest.raises(InvalidInput, match="shape"):
        compare(want, want[:, :1])


def test_uniform_rows_stay_in_the_widened_range_and_keep_dtypes() -> None:
    example = Batch(
        num_rows=3,
        columns={
            "x": np.array([0.0, 5.0, 10.0]),
            "n": np.array([1, 2, 3], dtype=np.int32),
            "b": np.array([True, False, True]),
        },
    )
    drawn = uniform_rows(example, rows=2000, seed=7)
    assert drawn.num_rows == 2000 and drawn.columns is not None
    x, n, b = drawn.columns["x"], drawn.columns["n"], drawn.columns["b"]
    assert x.min() >= -0.5 and x.max() <= 10.5 and x.min() < 0 and x.max() > 10
    assert n.dtype == np.int32 and set(np.unique(n)) <= {0, 1, 2, 3, 4}
    assert b.dtype == np.bool_ and 0.4 < b.mean() < 0.6
    again = uniform_rows(example, rows=2000, seed=7)
    assert again.columns is not None and np.array_equal(again.columns["x"], x)
