"""The benchmark's models: trained once, the same objects handed to every server, and their ONNX
form for the floor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import onnxmltools
import onnxruntime as ort
import pandas as pd
from onnxmltools.convert.common.data_types import FloatTensorType as LgbmFloatTensorType
from skl2onnx import convert_sklearn
from skl2onnx.common import tree_ensemble
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier

SEED = 0


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    estimator: Any
    features: pd.DataFrame
    onnx_type: type

    def expected(self, rows: pd.DataFrame) -> np.ndarray[Any, Any]:
        return np.asarray(self.estimator.predict_proba(rows), dtype=np.float64)


def train() -> list[Model]:
    data = load_breast_cancer(as_frame=True)
    hgb = HistGradientBoostingClassifier(random_state=SEED).fit(data.data, data.target)
    lgbm = lgb.LGBMClassifier(n_estimators=200, num_leaves=31, random_state=SEED, verbose=-1)
    lgbm.fit(data.data, data.target)
    # The scikit-learn wrapper predicts on every core and ignores OMP_NUM_THREADS.
    lgbm.set_params(n_jobs=1)
    return [
        Model("sklearn-hgb", hgb, data.data, FloatTensorType),
        Model("lightgbm", lgbm, data.data, LgbmFloatTensorType),
    ]


def _int_missing_flag(original: Callable[..., Any]) -> Callable[..., Any]:
    """skl2onnx 1.20 passes a Python bool for a tree leaf's ``nodes_missing_value_tracks_true``,
    an int attribute that protobuf 7 refuses; give it the int it means."""

    def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        missing = int(nodes_missing_value_tracks_true)
        return original(*args, nodes_missing_value_tracks_true=missing, **kwargs)

    return add_node


def to_onnx(model: Model, path: Path) -> float:
    """Write the model as ONNX (float32 input ``input``, ``probabilities`` output, no ZipMap) and
    return the largest absolute difference from ``predict_proba`` over every row."""
    inputs = [("input", model.onnx_type([None, model.features.shape[1]]))]
    if isinstance(model.estimator, lgb.LGBMClassifier):
        proto = onnxmltools.convert_lightgbm(model.estimator, initial_types=inputs, zipmap=False)
    else:
        original = tree_ensemble.add_node
        tree_ensemble.add_node = _int_missing_flag(original)
        try:
            proto = convert_sklearn(
                model.estimator, initial_types=inputs, options={"zipmap": False}
            )
        finally:
            tree_ensemble.add_node = original
    path.write_bytes(proto.SerializeToString())
    session = onnx_session(path)
    (proba,) = session.run(["probabilities"], {"input": model.features.to_numpy(np.float32)})
    return float(np.abs(proba - model.expected(model.features)).max())


def onnx_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
