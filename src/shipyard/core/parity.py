"""Parity between two models' outputs, and the synthetic rows they are compared on.

``compare`` measures how far a converted model's outputs are from the source's; ``uniform_rows``
draws a seeded sample spanning each input column's range in an example, widened a little, so
a comparison reaches beyond the rows the example happens to hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from shipyard.core.signature import Batch
from shipyard.errors import InvalidInput

DEFAULT_ROWS = 1000
DEFAULT_WIDEN = 0.05  # a fraction of each column's range added below its min and above its max


@dataclass(frozen=True, slots=True)
class Parity:
    """How far one model's outputs are from another's over ``rows`` input rows."""

    max_abs_diff: float
    mean_abs_diff: float
    rows: int

    def within(self, tolerance: float) -> bool:
        return self.max_abs_diff <= tolerance


def compare(expected: np.ndarray[Any, Any], actual: np.ndarray[Any, Any]) -> Parity:
    """The absolute differences between two outputs of the same shape, rows on the first axis.

    A NaN in both at the same place counts as equal; a NaN in only one counts as infinitely far.
    """
    want = np.asarray(expected, dtype=np.float64)
    got = np.asarray(actual, dtype=np.float64)
    if want.shape != got.shape:
        raise InvalidInput(f"outputs have shape {got.shape}; expected {want.shape}", field="output")
    if want.size == 0:
        return Parity(0.0, 0.0, int(want.shape[0]) if want.ndim else 0)
    diff = np.abs(want - got)
    both_nan = np.isnan(want) & np.isnan(got)
    diff[both_nan] = 0.0
    diff[np.isnan(diff)] = np.inf
    return Parity(float(diff.max()), float(diff.mean()), int(want.shape[0]))


def uniform_rows(
    example: Batch, *, rows: int = DEFAULT_ROWS, seed: int = 0, widen: float = DEFAULT_WIDEN
) -> Batch:
    """``rows`` rows drawn uniformly between each numeric column's min and max in ``example``,
    the range widened by ``widen`` of itself on each side: integers stay integers within their
    dtype, booleans are fair coin flips. A tensor example is drawn
    element by element over its flattened features."""
    if rows < 1:
        raise InvalidInput(f"rows must be at least 1, got {rows}", field="rows")
    rng = np.random.default_rng(seed)
    if example.tensor is not None:
        flat = example.tensor.reshape(example.num_rows, -1)
        drawn = _draw(rng, flat, rows, widen)
        return Batch(num_rows=rows, tensor=drawn.reshape(rows, *example.tensor.shape[1:]))
    assert example.columns is not None
    columns = {
        name: _draw(rng, values.reshape(-1, 1), rows, widen)[:, 0]
        for name, values in example.columns.items()
    }
    return Batch(num_rows=rows, columns=columns)


def _draw(
    rng: np.random.Generator, values: np.ndarray[Any, Any], rows: int, widen: float
) -> np.ndarray[Any, Any]:
    """``rows`` rows like ``values`` (2-D: rows × features), each feature drawn in its range."""
    kind = values.dtype.kind
    if kind not in "fiub":
        raise InvalidInput(
            f"cannot draw synthetic rows of dtype {values.dtype}; only numeric inputs",
            field="input",
        )
    if kind == "b":
        return rng.random((rows, values.shape[1])) < 0.5
    as_float = values.astype(np.float64)
    finite = np.where(np.isfinite(as_float), as_float, np.nan)
    empty = np.all(np.isnan(finite), axis=0)
    low = np.where(empty, 0.0, np.nanmin(np.where(empty, 0.0, finite), axis=0))
    high = np.where(empty, 0.0, np.nanmax(np.where(empty, 0.0, finite), axis=0))
    margin = (high - low) * widen
    low, high = low - margin, high + margin
    if kind in "iu":
        info = np.iinfo(values.dtype)
        low = np.clip(np.floor(low), info.min, info.max)
        high = np.clip(np.ceil(high), info.min, info.max)
        drawn = np.floor(rng.uniform(low, high + 1.0, size=(rows, values.shape[1])))
        return np.clip(drawn, low, high).astype(values.dtype)
    return rng.uniform(low, high, size=(rows, values.shape[1])).astype(values.dtype)
