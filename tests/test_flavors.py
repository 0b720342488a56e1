"""The flavor contract: every flavor saves, loads back and answers like the original model.

One parametrized suite runs against every flavor, directly (save → load → predict) and through
the registry with every input form; specific tests follow for what only one flavor promises.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import lightgbm as lgb
import numpy as np
import onnxruntime as ort
import pandas as pd
import polars as pl
import pytest
import torch
import xgboost as xgb
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from shipyard import InvalidInput, MissingDependency, PythonModelPackage, Workspace
from shipyard.core.signature import infer_signature
from shipyard.flavors import FLAVOR_NAMES, flavor_for, get_flavor

COLUMNS = [f"f{i}" for i in range(6)]


# ------------------------------------------------------------------ helpers
@dataclass
class Case:
    model: Any  # what the user registers
    x: pd.DataFrame | np.ndarray[Any, Any]  # a DataFrame: columnar signature; an array: tensor
    expected: np.ndarray[Any, Any]  # the original model's own answer on x
    flavor: str
    output_shape: tuple[int, ...]
    exact: bool = True  # bitwise equal (trees, sklearn); else within 1e-6 (NN, ONNX)


@dataclass
class Scratch:
    """A temporary folder, and a way to import a module written there (removed afterwards)."""

    path: Path
    monkeypatch: pytest.MonkeyPatch

    def import_source(self, source: str, *, folder: Path | None = None) -> ModuleType:
        """Write ``source`` as a uniquely named module in ``folder`` and import it through a
        temporary sys.path entry."""
        folder = folder or self.path
        folder.mkdir(parents=True, exist_ok=True)
        name = f"user_model_{uuid.uuid4().hex[:12]}"
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        self.monkeypatch.syspath_prepend(str(folder))
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        self.monkeypatch.setitem(sys.modules, name, module)  # gone again after the test
        spec.loader.exec_module(module)
        return module


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scratch:
    return Scratch(tmp_path / "scratch", monkeypatch)


def classification(n_classes: int = 2) -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    x, y = make_classification(
        n_samples=200, n_features=6, n_informative=4, n_classes=n_classes, random_state=0
    )
    return pd.DataFrame(x, columns=COLUMNS), y


def regression() -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    x, y = make_regression(n_samples=200, n_features=6, noise=0.5, random_state=0)
    return pd.DataFrame(x, columns=COLUMNS), y


def input_forms(x: pd.DataFrame | np.ndarray[Any, Any]) -> dict[str, Any]:
    """The same rows as every input form a loaded model accepts for this signature."""
    if isinstance(x, pd.DataFrame):
        return {
            "pandas": x,
            "polars": pl.from_pandas(x),
            "dict": {name: x[name].to_numpy() for name in x.columns},
            "numpy": x.to_numpy(),
        }
    return {"numpy": x, "pandas": pd.DataFrame(x), "polars": pl.DataFrame(x), "lists": x.tolist()}


def assert_same(got: np.ndarray[Any, Any], want: np.ndarray[Any, Any], *, exact: bool) -> None:
    assert got.shape == want.shape
    if exact:
        assert np.array_equal(got, want), np.max(np.abs(got - want))
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def run_python(script: str, home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter of this virtualenv on the same SHIPYARD_HOME."""
    env = {**os.environ, "SHIPYARD_HOME": str(home), "SHIPYARD_USER": "tester"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(script)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -------------------------------------------------------------------- cases
def sklearn_hist_gradient_boosting(scratch: Scratch) -> Case:
    x, y = classification()
    model = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(x, y)
    return Case(model, x, model.predict_proba(x), "sklearn", (-1, 2))


def sklearn_pipeline(scratch: Scratch) -> Case:
    x, y = classification()
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    return Case(model, x, model.predict_proba(x), "sklearn", (-1, 2))


def sklearn_regressor(scratch: Scratch) -> Case:
    x, y = regression()
    model = Ridge(alpha=1.0).fit(x, y)
    return Case(model, x, model.predict(x), "sklearn", (-1,))


def lightgbm_binary(scratch: Scratch) -> Case:
    x, y = classification()
    model = lgb.LGBMClassifier(n_estimators=5, num_leaves=7, n_jobs=1, verbose=-1).fit(x, y)
    return Case(model, x, model.predict_proba(x), "lightgbm", (-1, 2))


def lightgbm_multiclass(scratch: Scratch) -> Case:
    x, y = classification(n_classes=3)
    model = lgb.LGBMClassifier(n_estimators=5, num_leaves=7, n_jobs=1, verbose=-1).fit(x, y)
    return Case(model, x, model.predict_proba(x), "lightgbm", (-1, 3))


def lightgbm_booster(scratch: Scratch) -> Case:
    x, y = classification()
    params = {"objective": "binary", "num_leaves": 7, "num_threads": 1, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=5)
    return Case(booster, x, booster.predict(x), "lightgbm", (-1,))


def xgboost_classifier(scratch: Scratch) -> Case:
    x, y = classification()
    model = xgb.XGBClassifier(n_estimators=5, max_depth=3, n_jobs=1).fit(x, y)
    return Case(model, x, model.predict_proba(x), "xgboost", (-1, 2))


def xgboost_multiclass_softmax(scratch: Scratch) -> Case:
    x, y = classification(n_classes=3)
    model = xgb.XGBClassifier(n_estimators=5, max_depth=3, n_jobs=1, objective="multi:softmax")
    model.fit(x, y)
    return Case(model, x, model.predict_proba(x), "xgboost", (-1, 3))


def xgboost_early_stopping(scratch: Scratch) -> Case:
    x, y = classification()
    model = xgb.XGBClassifier(
        n_estimators=40, max_depth=3, learning_rate=0.5, n_jobs=1, early_stopping_rounds=3
    )
    model.fit(x[:150], y[:150], eval_set=[(x[150:], y[150:])], verbose=False)
    assert model.best_iteration + 1 < model.get_booster().num_boosted_rounds()  # trees to skip
    return Case(model, x, model.predict_proba(x), "xgboost", (-1, 2))


def xgboost_regressor(scratch: Scratch) -> Case:
    x, y = regression()
    model = xgb.XGBRegressor(n_estimators=5, max_depth=3, n_jobs=1).fit(x, y)
    return Case(model, x, model.predict(x), "xgboost", (-1,))


class MLP(torch.nn.Module):
    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(n_features, 16),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.5),  # proves the export runs in eval mode
            torch.nn.Linear(16, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.layers(x), dim=1)


def torch_prediction(model: torch.nn.Module, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor(x)).numpy()
    model.train()  # the state users often leave a module in; saving must cope
    return np.asarray(out)


def torch_mlp_array(scratch: Scratch) -> Case:
    torch.manual_seed(0)
    model = MLP(6)
    x = classification()[0].to_numpy(np.float32)
    return Case(model, x, torch_prediction(model, x), "torch", (-1, 3), exact=False)


def torch_mlp_frame(scratch: Scratch) -> Case:
    torch.manual_seed(0)
    model = MLP(6)
    x = classification()[0].astype(np.float32)
    expected = torch_prediction(model, x.to_numpy())
    return Case(model, x, expected, "torch", (-1, 3), exact=False)


def onnx_logistic_regression(form: str) -> Callable[[Scratch], Case]:
    def build(scratch: Scratch) -> Case:
        x, y = classification()
        fitted = LogisticRegression().fit(x.to_numpy(), y)
        proto = to_onnx(fitted, x.to_numpy(np.float32)[:1], options={"zipmap": False})
        session = ort.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        expected = session.run(["probabilities"], {"X": x.to_numpy(np.float32)})[0]
        model: Any = proto
        if form == "bytes":
            model = proto.SerializeToString()
        elif form == "path":
            scratch.path.mkdir(parents=True)
            model = scratch.path / "classifier.onnx"
            model.write_bytes(proto.SerializeToString())
        return Case(model, x, expected, "onnx", (-1, 2), exact=False)

    return build


def onnx_named_inputs(scratch: Scratch) -> Case:
    x, y = classification()
    pipeline = make_pipeline(
        ColumnTransformer([("scale", StandardScaler(), COLUMNS)]), LogisticRegression()
    ).fit(x, y)
    inputs = [(name, FloatTensorType([None, 1])) for name in COLUMNS]
    proto = to_onnx(pipeline, initial_types=inputs, options={"zipmap": False})
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {name: x[[name]].to_numpy(np.float32) for name in COLUMNS}
    expected = session.run(["probabilities"], feed)[0]
    return Case(proto, x, expected, "onnx", (-1, 2), exact=False)


LINEAR_SCORER = """
    import numpy as np


    class LinearScorer:
        def load_context(self, context):
            self.weights = np.load(context.artifacts["weights"])

        def predict(self, context, model_input):
            return model_input.to_numpy(dtype=np.float64) @ self.weights
"""


def pyfunc_with_artifact(scratch: Scratch) -> Case:
    x = classification()[0]
    module = scratch.import_source(LINEAR_SCORER)
    weights = np.random.default_rng(0).normal(size=(6, 2))
    np.save(scratch.path / "weights.npy", weights)
    package = PythonModelPackage(
        module.LinearScorer(), artifacts={"weights": scratch.path / "weights.npy"}
    )
    return Case(package, x, x.to_numpy() @ weights, "pyfunc", (-1, 2))


def pyfunc_bare_instance(scratch: Scratch) -> Case:
    module = scratch.import_source(
        """
        class RowSums:
            def load_context(self, context):
                pass

            def predict(self, context, model_input):
                return model_input.sum(axis=1)
        """
    )
    x = classification()[0].to_numpy()
    return Case(module.RowSums(), x, x.sum(axis=1), "pyfunc", (-1,))


CASES = [
    pytest.param(sklearn_hist_gradient_boosting, id="sklearn-hist-gradient-boosting"),
    pytest.param(sklearn_pipeline, id="sklearn-pipeline-frame"),
    pytest.param(sklearn_regressor, id="sklearn-regressor"),
    pytest.param(lightgbm_binary, id="lightgbm-binary"),
    pytest.param(lightgbm_multiclass, id="lightgbm-multiclass"),
    pytest.param(lightgbm_booster, id="lightgbm-booster"),
    pytest.param(xgboost_classifier, id="xgboost-classifier"),
    pytest.param(xgboost_multiclass_softmax, id="xgboost-multiclass-softmax"),
    pytest.param(xgboost_early_stopping, id="xgboost-early-stopping"),
    pytest.param(xgboost_regressor, id="xgboost-regressor"),
    pytest.param(torch_mlp_array, id="torch-mlp-array"),
    pytest.param(torch_mlp_frame, id="torch-mlp-frame"),
    pytest.param(onnx_logistic_regression("proto"), id="onnx-proto"),
    pytest.param(onnx_logistic_regression("bytes"), id="onnx-bytes"),
    pytest.param(onnx_logistic_regression("path"), id="onnx-path"),
    pytest.param(onnx_named_inputs, id="onnx-named-inputs"),
    pytest.param(pyfunc_with_artifact, id="pyfunc-artifact"),
    pytest.param(pyfunc_bare_instance, id="pyfunc-bare-array"),
]


# ----------------------------------------------------------------- contract
@pytest.mark.parametrize("build", CASES)
def test_saved_model_predicts_like_the_original(
    build: Callable[[Scratch], Case], scratch: Scratch, tmp_path: Path
) -> None:
    case = build(scratch)
    flavor = flavor_for(case.model)
    assert flavor.name == case.flavor
    example = infer_signature(case.x).coerce(case.x[:5])
    folder = tmp_path / "saved"
    folder.mkdir()
    options = flavor.save(case.model, folder, example)
    options = json.loads(json.dumps(options, allow_nan=False))  # stored as JSON
    reloaded = get_flavor(case.flavor)
    batch = infer_signature(case.x).coerce(case.x)
    assert_same(
        reloaded.predict(reloaded.load(folder, options), batch), case.expected, exact=case.exact
    )


@pytest.mark.parametrize("build", CASES)
def test_registered_model_answers_every_input_form(
    build: Callable[[Scratch], Case], scratch: Scratch, workspace: Workspace
) -> None:
    case = build(scratch)
    workspace.register_model("contract", case.model, input_example=case.x[:5])
    loaded = workspace.load_model("models:/contract/1")
    assert loaded.flavor.name == case.flavor
    assert loaded.signature.outputs is not None
    assert loaded.signature.outputs.shape == case.output_shape
    answers = {form: loaded.predict(data) for form, data in input_forms(case.x).items()}
    for form, answer in answers.items():
        assert np.array_equal(answer, answers["numpy"]), form
    assert_same(answers["numpy"], case.expected, exact=case.exact)


# ------------------------------------------------------------------ pyfunc
def test_pyfunc_model_runs_where_its_module_cannot_be_imported(
    scratch: Scratch, workspace: Workspace, tmp_path: Path
) -> None:
    helper = f"offsets_{uuid.uuid4().hex[:12]}"
    helper_dir = scratch.path / "helpers"
    helper_dir.mkdir(parents=True)
    (helper_dir / f"{helper}.py").write_text("OFFSET = 0.25\n")
    scratch.monkeypatch.syspath_prepend(str(helper_dir))
    module = scratch.import_source(
        f"""
        import numpy as np
        from {helper} import OFFSET


        class Scorer:
            def load_context(self, context):
                self.weights = np.load(context.artifacts["weights"])

            def predict(self, context, model_input):
                return model_input.to_numpy(dtype=np.float64) @ self.weights + OFFSET
        """,
        folder=scratch.path / "user_code",
    )
    weights = np.random.default_rng(1).normal(size=6)
    np.save(scratch.path / "weights.npy", weights)
    package = PythonModelPackage(
        module.Scorer(),
        artifacts={"weights": scratch.path / "weights.npy"},
        code_paths=[helper_dir / f"{helper}.py"],
    )
    x = classification()[0]
    workspace.register_model("scorer", package, input_example=x[:5])
    here = workspace.load_model("models:/scorer/1").predict(x)
    np.testing.assert_array_equal(here, x.to_numpy() @ weights + 0.25)
    shutil.rmtree(scratch.path)  # the user's code and artifacts are gone
    x.to_parquet(tmp_path / "X.parquet")

    result = run_python(
        f"""
        import importlib.util
        import numpy as np
        import pandas as pd
        import shipyard

        assert importlib.util.find_spec({module.__name__!r}) is None
        assert importlib.util.find_spec({helper!r}) is None
        model = shipyard.load_model("models:/scorer/1")
        np.save("answer.npy", model.predict(pd.read_parquet("X.parquet")))
        """,
        workspace.settings.home,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "answer.npy"), here)


def test_pyfunc_rejects_a_class_defined_in_a_function(tmp_path: Path) -> None:
    class Local:
        def load_context(self, context: Any) -> None:
            pass

        def predict(self, context: Any, model_input: Any) -> Any:
            return model_input

    batch = infer_signature(np.zeros((2, 2))).coerce(np.zeros((2, 2)))
    with pytest.raises(InvalidInput, match="inside a function"):
        flavor_for(Local()).save(Local(), tmp_path, batch)


# ------------------------------------------------------------------- torch
def test_torch_model_loads_without_its_class(workspace: Workspace, tmp_path: Path) -> None:
    torch.manual_seed(0)
    x = classification()[0].to_numpy(np.float32)
    workspace.register_model("mlp", MLP(6), input_example=x[:1])  # one row still gives a batch axis
    here = workspace.load_model("models:/mlp/1").predict(x)
    np.save(tmp_path / "X.npy", x)

    result = run_python(
        """
        import numpy as np
        import shipyard

        model = shipyard.load_model("models:/mlp/1")
        np.save("answer.npy", model.predict(np.load("X.npy")))
        """,
        workspace.settings.home,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "answer.npy"), here)


# ----------------------------------------------------------------- choosing
def test_flavor_for_an_unknown_object_names_the_accepted_flavors() -> None:
    with pytest.raises(InvalidInput) as caught:
        flavor_for(object())
    for name in FLAVOR_NAMES:
        assert name in str(caught.value)


def test_get_flavor_knows_every_listed_name() -> None:
    assert [get_flavor(name).name for name in FLAVOR_NAMES] == list(FLAVOR_NAMES)


@pytest.mark.parametrize(
    ("flavor", "module", "options"),
    [
        pytest.param("xgboost", "xgboost", {"nthread": 1}, id="xgboost"),
        pytest.param("torch", "torch", {"dtype": "float32"}, id="torch"),
        pytest.param("onnx", "onnxruntime", {"inputs": [], "output": "y"}, id="onnx"),
        pytest.param("lightgbm", "lightgbm", {"num_threads": 1}, id="lightgbm"),
    ],
)
def test_missing_library_names_the_extra_to_install(
    flavor: str,
    module: str,
    options: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import <module>` fail
    with pytest.raises(MissingDependency, match=rf"pip install 'shipyard\[{flavor}\]'"):
        get_flavor(flavor).load(tmp_path, options)


def test_import_shipyard_loads_no_heavy_library(tmp_path: Path) -> None:
    result = run_python(
        """
        import sys
        import shipyard

        heavy = {"torch", "onnxruntime", "onnx", "xgboost", "lightgbm"} & set(sys.modules)
        assert not heavy, heavy
        """,
        tmp_path,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
