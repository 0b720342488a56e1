"""The BentoML side of the serving benchmark: the usual new-style service around one model.

``run.py`` saves the model with ``bentoml.sklearn.save_model`` into a temporary ``BENTOML_HOME``
and starts ``bentoml serve bento_service:BreastCancer``; the model's tag and the worker count come
from the environment, as this file is imported by BentoML, not called::

    POST /predict  {"rows": [[30 floats], ...]}  →  [[p0, p1], ...]   (predict_proba)
"""

from __future__ import annotations

import os

import bentoml
import numpy as np

MODEL_TAG = os.environ.get("BENCH_BENTO_MODEL", "bc:latest")
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))


@bentoml.service(workers=WORKERS)
class BreastCancer:
    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(MODEL_TAG)

    @bentoml.api  # type: ignore[untyped-decorator]
    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(rows)  # type: ignore[no-any-return]
