"""XGBoost boosters and sklearn-API models, stored in XGBoost's own UBJSON format (no pickle).

A classifier loaded back answers like ``predict_proba`` (one column per class); a regressor or a
bare booster answers like ``predict``. A model trained with early stopping predicts with its best
iteration, as the sklearn API does. Prediction uses one thread: on a server, several workers each
starting an OpenMP team on shared cores collapse throughput.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.core.signature import Batch
from shipyard.errors import require_package
from shipyard.flavors.base import tabular_input

MODEL_FILE = "model.ubj"

# How raw booster output becomes the answer: as is, [1-p, p] for a binary classifier, or
# softmax over margins for ``multi:softmax`` (whose raw output is a class label).
OUTPUT_VALUE = "value"
OUTPUT_BINARY_PROBA = "binary_proba"
OUTPUT_SOFTMAX = "softmax"


@dataclass(frozen=True, slots=True)
class LoadedXGBoost:
    booster: Any
    output: str  # one of the OUTPUT_* names
    iteration_range: tuple[int, int]
    missing: float


class XGBoostFlavor:
    name = "xgboost"

    def save(self, model: Any, path: Path, example: Batch) -> dict[str, Any]:
        xgb = require_package("xgboost", "xgboost")
        booster = model if isinstance(model, xgb.Booster) else model.get_booster()
        booster.save_model(str(path / MODEL_FILE))
        output = OUTPUT_VALUE
        if isinstance(model, xgb.XGBClassifier):
            output = OUTPUT_SOFTMAX if model.objective == "multi:softmax" else OUTPUT_BINARY_PROBA
        missing = float(getattr(model, "missing", math.nan))
        return {
            "output": output,
            "iteration_range": list(_iteration_range(model, xgb)),
            "missing": None if math.isnan(missing) else missing,  # JSON has no NaN
            "nthread": 1,
        }

    def load(self, path: Path, options: dict[str, Any]) -> LoadedXGBoost:
        booster = require_package("xgboost", "xgboost").Booster(model_file=str(path / MODEL_FILE))
        booster.set_param({"nthread": int(options["nthread"])})
        start, stop = options["iteration_range"]
        missing = options["missing"]
        return LoadedXGBoost(
            booster=booster,
            output=str(options["output"]),
            iteration_range=(int(start), int(stop)),
            missing=math.nan if missing is None else float(missing),
        )

    def predict(self, model: LoadedXGBoost, batch: Batch) -> np.ndarray[Any, Any]:
        softmax = model.output == OUTPUT_SOFTMAX
        raw = np.asarray(
            model.booster.inplace_predict(
                tabular_input(batch),
                iteration_range=model.iteration_range,
                predict_type="margin" if softmax else "value",
                missing=model.missing,
            )
        )
        if softmax:  # the same arithmetic as scipy.special.softmax, which predict_proba uses
            shifted = np.exp(raw - np.amax(raw, axis=1, keepdims=True))
            return np.asarray(shifted / np.sum(shifted, axis=1, keepdims=True))
        if model.output == OUTPUT_BINARY_PROBA and raw.ndim == 1:
            return np.vstack((1.0 - raw, raw)).transpose()
        return raw


def _iteration_range(model: Any, xgb: Any) -> tuple[int, int]:
    """The trees the sklearn API predicts with: up to the best iteration after early stopping."""
    if isinstance(model, xgb.Booster) or getattr(model, "booster", None) == "gblinear":
        return (0, 0)  # (0, 0) means every tree
    try:
        return (0, int(model.best_iteration) + 1)
    except AttributeError:
        return (0, 0)
