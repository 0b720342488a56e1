"""The protocol every flavor implements, and the loaded-model object the SDK hands out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shipyard.core.signature import Batch, Signature


class Flavor(Protocol):
    """How one kind of model is saved to a folder, loaded back and asked for predictions.

    ``save`` writes only inside ``path`` and returns JSON-able options that ``load`` gets back;
    ``example`` is the input example as a validated :class:`Batch` (torch traces the model on it).
    ``predict`` takes what ``load`` returned and a validated :class:`Batch`, and returns a NumPy
    array whose first axis is rows — the same numbers the original model gives natively
    (``predict_proba`` for classifiers), bitwise for trees.
    """

    name: str

    def save(self, model: Any, path: Path, example: Batch) -> dict[str, Any]: ...

    def load(self, path: Path, options: dict[str, Any]) -> Any: ...

    def predict(self, model: Any, batch: Batch) -> np.ndarray[Any, Any]: ...


def root_module(obj: Any) -> str:
    """The top-level package a model's class comes from (``sklearn``, ``lightgbm``…)."""
    return type(obj).__module__.split(".")[0]


def tabular_input(batch: Batch) -> np.ndarray[Any, Any]:
    """The batch as a 2-D array: float64 when every column is numeric, object otherwise."""
    if batch.table is not None:
        return batch.table
    if batch.tensor is not None:
        return batch.tensor.reshape(batch.num_rows, -1)
    assert batch.columns is not None
    numeric = all(v.dtype.kind in "fiub" for v in batch.columns.values())
    return batch.matrix(np.float64 if numeric else object)


class LoadedModel:
    """A registered model version ready to predict: takes a pandas/polars DataFrame, a dict of
    columns, a list of records or a NumPy array, checks it against the signature, returns NumPy."""

    def __init__(
        self, *, name: str, version: int, flavor: Flavor, model: Any, signature: Signature
    ) -> None:
        self.name = name
        self.version = version
        self.flavor = flavor
        self.model = model
        self.signature = signature

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def predict(self, data: Any) -> np.ndarray[Any, Any]:
        return self.flavor.predict(self.model, self.signature.coerce(data))

    def __repr__(self) -> str:
        return f"LoadedModel({self.uri}, flavor={self.flavor.name})"
