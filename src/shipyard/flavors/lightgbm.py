"""LightGBM boosters and sklearn-API models, stored in LightGBM's own text format (no pickle).

A classifier loaded back answers like ``predict_proba`` (one column per class); a regressor or a
bare booster answers like ``Booster.predict``. Prediction uses one thread: on a server, several
workers each starting an OpenMP team on shared cores collapse throughput.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.core.signature import Batch
from shipyard.errors import require_package
from shipyard.flavors.base import tabular_input

MODEL_FILE = "model.txt"


@dataclass(frozen=True, slots=True)
class LoadedBooster:
    booster: Any
    binary_proba: bool  # a binary classifier: answer [P(0), P(1)] like predict_proba
    num_threads: int


class LightGBMFlavor:
    name = "lightgbm"

    def save(self, model: Any, path: Path, example: Batch) -> dict[str, Any]:
        lgb = require_package("lightgbm", "lightgbm")
        booster = model if isinstance(model, lgb.Booster) else model.booster_
        booster.save_model(str(path / MODEL_FILE))
        binary = isinstance(model, lgb.LGBMClassifier) and int(model.n_classes_) == 2
        return {"binary_proba": binary, "num_threads": 1}

    def load(self, path: Path, options: dict[str, Any]) -> LoadedBooster:
        booster = require_package("lightgbm", "lightgbm").Booster(model_file=str(path / MODEL_FILE))
        return LoadedBooster(booster, bool(options["binary_proba"]), int(options["num_threads"]))

    def predict(self, model: LoadedBooster, batch: Batch) -> np.ndarray[Any, Any]:
        raw = np.asarray(model.booster.predict(tabular_input(batch), num_threads=model.num_threads))
        if model.binary_proba:
            return np.vstack((1.0 - raw, raw)).transpose()
        return raw
