"""scikit-learn estimators and Pipelines; classifiers answer with ``predict_proba``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np

from shipyard.core.signature import Batch
from shipyard.flavors.base import tabular_input

MODEL_FILE = "model.joblib"


class SklearnFlavor:
    name = "sklearn"

    def save(self, model: Any, path: Path, example: Batch) -> dict[str, Any]:
        joblib.dump(model, path / MODEL_FILE)
        return {"method": "predict_proba" if hasattr(model, "predict_proba") else "predict"}

    def load(self, path: Path, options: dict[str, Any]) -> Any:
        return joblib.load(path / MODEL_FILE)

    def predict(self, model: Any, batch: Batch) -> np.ndarray[Any, Any]:
        data = batch.frame() if hasattr(model, "feature_names_in_") else tabular_input(batch)
        method = model.predict_proba if hasattr(model, "predict_proba") else model.predict
        return np.asarray(method(data))
