"""Model signatures: what a model takes and returns, inferred from an example and enforced on input.

A signature is either *columnar* (named columns with dtypes — tables, DataFrames, dicts of columns)
or a *tensor* (one array with a dtype and a shape whose first axis is the batch). ``coerce`` turns
whatever the caller passes — pandas or polars DataFrame, dict of columns, list of records, NumPy
array — into a :class:`Batch` checked against the signature, naming the field that does not fit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput

Extra = Literal["ignore", "reject"]

_NUMERIC_KINDS = {"f": "float", "i": "int", "u": "int", "b": "bool"}


def dtype_name(dtype: np.dtype[Any]) -> str:
    """The signature's name for a NumPy dtype: ``float64``, ``int32``, ``bool``, ``string``…"""
    if dtype.kind in _NUMERIC_KINDS:
        return dtype.name
    if dtype.kind == "M":
        return "datetime64[ns]"
    if dtype.kind in "OUS":
        return "string"
    raise InvalidInput(f"dtype {dtype} is not supported in a signature", field="dtype")


def _column_dtype(values: Any) -> str:
    if isinstance(values, pd.Series):
        if isinstance(values.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(
            values.dtype
        ):
            return "string"
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            return "datetime64[ns]"
        if values.dtype.kind in _NUMERIC_KINDS:
            return str(values.dtype.name)
        numpy_dtype = getattr(values.dtype, "numpy_dtype", None)
        if numpy_dtype is not None:  # pandas nullable Int64 / Float64 / boolean
            return dtype_name(np.dtype(numpy_dtype))
    return dtype_name(np.asarray(values).dtype)


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    name: str
    dtype: str


@dataclass(frozen=True, slots=True)
class TensorSpec:
    dtype: str
    shape: tuple[int, ...]  # -1 marks a free axis (always the first one)


class TableColumns(Mapping[str, np.ndarray[Any, Any]]):
    """Named columns of a 2-D array, each a view made when it is read (none made up front: a
    one-row request of 30 columns would otherwise build 30 views it never uses)."""

    __slots__ = ("_index", "_names", "_table")

    def __init__(self, names: Sequence[str], table: np.ndarray[Any, Any]) -> None:
        self._names = names
        self._table = table
        self._index: dict[str, int] | None = None

    def _positions(self) -> dict[str, int]:
        if self._index is None:
            self._index = {name: i for i, name in enumerate(self._names)}
        return self._index

    def __getitem__(self, name: str) -> np.ndarray[Any, Any]:
        return self._table[:, self._positions()[name]]

    def __contains__(self, name: object) -> bool:
        return name in self._positions()

    def __iter__(self) -> Iterator[str]:
        return iter(self._positions())

    def __len__(self) -> int:
        return len(self._positions())

    def __repr__(self) -> str:
        return f"TableColumns({list(self._positions())})"


@dataclass(frozen=True, slots=True)
class Batch:
    """Validated model input: named 1-D columns, or one tensor whose first axis is rows.

    ``table`` optionally keeps the 2-D array the columns were sliced from (a numeric request
    sent as one matrix), so that ``matrix()`` needs no copy.
    """

    num_rows: int
    columns: Mapping[str, np.ndarray[Any, Any]] | None = None
    tensor: np.ndarray[Any, Any] | None = None
    table: np.ndarray[Any, Any] | None = None

    @classmethod
    def from_table(cls, names: Sequence[str], table: np.ndarray[Any, Any]) -> Batch:
        """A columnar batch over a C-contiguous 2-D array (columns are views, not copies)."""
        table = np.ascontiguousarray(table)
        return cls(table.shape[0], TableColumns(names, table), table=table)

    def values(self) -> list[np.ndarray[Any, Any]]:
        """The arrays holding the data: the table or tensor, else each column."""
        if self.table is not None:
            return [self.table]
        if self.tensor is not None:
            return [self.tensor]
        assert self.columns is not None
        return list(self.columns.values())

    def matrix(self, dtype: Any = np.float64) -> np.ndarray[Any, Any]:
        """The input as one C-contiguous 2-D array of ``dtype`` (columns in signature order)."""
        if self.table is not None:
            return self.table.astype(dtype, copy=False)
        if self.tensor is not None:
            return np.ascontiguousarray(self.tensor.reshape(self.num_rows, -1), dtype=dtype)
        assert self.columns is not None
        out = np.empty((self.num_rows, len(self.columns)), dtype=dtype)
        for i, values in enumerate(self.columns.values()):
            out[:, i] = values
        return out

    @staticmethod
    def concat(batches: Sequence[Batch]) -> Batch:
        """One batch holding the rows of ``batches`` in order (they share a signature)."""
        first = batches[0]
        if len(batches) == 1:
            return first
        rows = sum(b.num_rows for b in batches)
        if first.tensor is not None:
            return Batch(rows, tensor=np.concatenate([b.tensor for b in batches]))
        assert first.columns is not None
        return Batch(
            rows,
            columns={
                name: np.concatenate([b.columns[name] for b in batches])  # type: ignore[index]
                for name in first.columns
            },
        )

    def frame(self) -> pd.DataFrame:
        """The input as a pandas DataFrame (columns in signature order)."""
        if self.columns is not None:
            return pd.DataFrame(dict(self.columns), copy=False)
        assert self.tensor is not None
        return pd.DataFrame(self.tensor.reshape(self.num_rows, -1))


@dataclass(frozen=True)
class Signature:
    """Inputs (columns or a tensor) and outputs (a tensor spec) of a model."""

    inputs: tuple[ColumnSpec, ...] | TensorSpec
    outputs: TensorSpec | None = None

    @property
    def is_columnar(self) -> bool:
        return isinstance(self.inputs, tuple)

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.inputs) if isinstance(self.inputs, tuple) else ()

    @cached_property
    def column_positions(self) -> dict[str, int]:
        """Each column's position by name (empty for a tensor signature)."""
        return {name: i for i, name in enumerate(self.column_names)}

    @cached_property
    def numeric_table(self) -> bool:
        """Columnar with every column numeric or boolean (it can travel as one matrix)."""
        return isinstance(self.inputs, tuple) and all(
            c.dtype not in ("string", "datetime64[ns]") for c in self.inputs
        )

    def to_dict(self) -> dict[str, Any]:
        inputs: Any
        if isinstance(self.inputs, TensorSpec):
            inputs = {"tensor": {"dtype": self.inputs.dtype, "shape": list(self.inputs.shape)}}
        else:
            inputs = {"columns": [{"name": c.name, "dtype": c.dtype} for c in self.inputs]}
        outputs = (
            None
            if self.outputs is None
            else {"dtype": self.outputs.dtype, "shape": list(self.outputs.shape)}
        )
        return {"inputs": inputs, "outputs": outputs}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        raw_inputs = data["inputs"]
        inputs: tuple[ColumnSpec, ...] | TensorSpec
        if "tensor" in raw_inputs:
            t = raw_inputs["tensor"]
            inputs = TensorSpec(t["dtype"], tuple(t["shape"]))
        else:
            inputs = tuple(ColumnSpec(c["name"], c["dtype"]) for c in raw_inputs["columns"])
        out = data.get("outputs")
        outputs = None if out is None else TensorSpec(out["dtype"], tuple(out["shape"]))
        return cls(inputs, outputs)

    def with_outputs(self, prediction: Any) -> Signature:
        """A copy whose output spec describes ``prediction`` (a model's output on the example)."""
        array = np.asarray(prediction)
        return Signature(self.inputs, TensorSpec(dtype_name(array.dtype), (-1, *array.shape[1:])))

    def coerce(self, data: Any, *, extra: Extra = "ignore") -> Batch:
        """Check ``data`` against the signature and return it as a :class:`Batch`."""
        if isinstance(self.inputs, TensorSpec):
            return _coerce_tensor(self.inputs, data)
        return _coerce_columns(self.inputs, as_columns(data, self.column_names), extra)


def infer_signature(example: Any) -> Signature:
    """Infer the input signature from an input example (DataFrame, dict, records or array)."""
    if isinstance(example, np.ndarray) or _is_tensor_like(example):
        array = as_array(example)
        if array.ndim == 0:
            raise InvalidInput("input_example must have a batch axis, got a scalar", field="input")
        return Signature(TensorSpec(dtype_name(array.dtype), (-1, *array.shape[1:])))
    columns = as_columns(example, None)
    if not columns:
        raise InvalidInput("input_example has no columns", field="input_example")
    return Signature(tuple(ColumnSpec(str(n), _column_dtype(v)) for n, v in columns.items()))


def as_array(data: Any) -> np.ndarray[Any, Any]:
    """A NumPy view of an array-like (NumPy, torch tensor, nested lists)."""
    if type(data).__module__.split(".")[0] == "torch":
        return np.asarray(data.detach().cpu().numpy())
    return np.asarray(data)


def _is_tensor_like(data: Any) -> bool:
    return type(data).__module__.split(".")[0] == "torch" or (
        isinstance(data, list) and bool(data) and isinstance(data[0], (list, tuple, float, int))
    )


def as_columns(data: Any, expected: Sequence[str] | None = None) -> dict[str, Any]:
    """Split any supported input into named columns (not yet validated).

    A NumPy array needs ``expected`` column names to be split.
    """
    if isinstance(data, pd.DataFrame):
        return {str(k): data[k] for k in data.columns}
    if type(data).__module__.split(".")[0] == "polars":
        if hasattr(data, "get_column"):
            return {name: data.get_column(name).to_numpy() for name in data.columns}
        raise InvalidInput(f"expected a polars DataFrame, got {type(data).__name__}", field="input")
    if isinstance(data, Mapping):
        return {str(k): v for k, v in data.items()}
    if isinstance(data, list) and data and isinstance(data[0], Mapping):
        names = list(data[0])
        return {str(n): [row.get(n) for row in data] for n in names}
    if isinstance(data, np.ndarray) and expected is not None:
        array = data.reshape(1, -1) if data.ndim == 1 and len(expected) > 1 else data
        if array.ndim == 1:
            array = array.reshape(-1, 1)
        if array.ndim != 2 or array.shape[1] != len(expected):
            raise InvalidInput(
                f"input array has shape {data.shape}; expected (rows, {len(expected)}) "
                f"for columns {', '.join(expected)}",
                field="input",
            )
        return {name: array[:, i] for i, name in enumerate(expected)}
    raise InvalidInput(
        f"input of type {type(data).__name__} is not supported; pass a pandas or polars "
        "DataFrame, a dict of columns, a list of records or a NumPy array",
        field="input",
    )


def _coerce_columns(specs: tuple[ColumnSpec, ...], columns: dict[str, Any], extra: Extra) -> Batch:
    missing = [s.name for s in specs if s.name not in columns]
    if missing:
        raise InvalidInput(
            f"input is missing column(s) {', '.join(missing)}; "
            f"expected columns: {', '.join(s.name for s in specs)}",
            field=missing[0],
        )
    if extra == "reject":
        known = {s.name for s in specs}
        unexpected = [n for n in columns if n not in known]
        if unexpected:
            raise InvalidInput(
                f"input has unexpected column(s) {', '.join(unexpected)}; "
                f"expected columns: {', '.join(s.name for s in specs)}",
                field=unexpected[0],
            )
    out: dict[str, np.ndarray[Any, Any]] = {}
    num_rows: int | None = None
    for spec in specs:
        values = _coerce_values(spec, columns[spec.name])
        if num_rows is None:
            num_rows = len(values)
        elif len(values) != num_rows:
            raise InvalidInput(
                f"column {spec.name!r} has {len(values)} rows; other columns have {num_rows}",
                field=spec.name,
            )
        out[spec.name] = values
    return Batch(num_rows=num_rows or 0, columns=out)


def _coerce_values(spec: ColumnSpec, raw: Any) -> np.ndarray[Any, Any]:
    if isinstance(raw, pd.Series):
        raw = raw.to_numpy(dtype=object if spec.dtype == "string" else None)
    try:
        values = np.asarray(raw)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"column {spec.name!r} must be a flat list of values: {exc}", field=spec.name
        ) from exc
    if values.ndim == 0:
        values = values.reshape(1)
    if values.ndim != 1:
        raise InvalidInput(
            f"column {spec.name!r} must be one-dimensional, got shape {values.shape}",
            field=spec.name,
        )
    expected = spec.dtype
    kind = values.dtype.kind
    if expected == "string":
        if kind in "OUS":
            return values
    elif expected.startswith("datetime"):
        if kind == "M":
            return values.astype("datetime64[ns]")
    elif expected == "bool":
        if kind == "b":
            return values
    elif kind in "fiub":
        target = np.dtype(expected)
        if (
            target.kind in "iu"
            and kind == "f"
            and not (np.all(np.isfinite(values)) and np.all(np.mod(values, 1) == 0))
        ):
            raise InvalidInput(
                f"column {spec.name!r} expects {expected} but got non-integer floats",
                field=spec.name,
            )
        return values.astype(target, copy=False)
    elif kind == "O":
        try:
            return values.astype(np.dtype(expected))
        except (TypeError, ValueError, OverflowError):  # OverflowError: ints beyond int64
            pass
    raise InvalidInput(
        f"column {spec.name!r} expects {expected} but got {dtype_name_or_kind(values)}",
        field=spec.name,
    )


def dtype_name_or_kind(values: np.ndarray[Any, Any]) -> str:
    try:
        return dtype_name(values.dtype)
    except InvalidInput:
        return str(values.dtype)


def _coerce_tensor(spec: TensorSpec, data: Any) -> Batch:
    try:
        array = as_array(data)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"input cannot be read as a tensor: {exc}", field="input") from exc
    expected_rank = len(spec.shape)
    if array.ndim == expected_rank - 1:
        array = array.reshape(1, *array.shape)
    if array.ndim != expected_rank or any(
        want not in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True)
    ):
        shown = tuple("N" if s == -1 else s for s in spec.shape)
        raise InvalidInput(
            f"input tensor has shape {array.shape}; expected {shown}".replace("'", ""),
            field="input",
        )
    target = np.dtype(spec.dtype) if spec.dtype != "string" else np.dtype(object)
    if array.dtype.kind not in "fiub" and target.kind in "fiub":
        raise InvalidInput(
            f"input tensor expects {spec.dtype} but got {array.dtype}", field="input"
        )
    return Batch(num_rows=array.shape[0], tensor=array.astype(target, copy=False))
