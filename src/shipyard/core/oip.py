"""Open Inference Protocol v2 tensors: datatypes, JSON decoding and encoding, model metadata.

Pure functions over parsed JSON (dicts and lists) and NumPy arrays; the server's REST and gRPC
front ends both go through them, so validation and messages are the same on every protocol.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipyard.core.signature import Batch, Signature, TensorSpec
from shipyard.errors import InvalidInput

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_SIGNATURE_TO_OIP = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "string": "BYTES",
    "datetime64[ns]": "BYTES",
}
_FLOAT64 = DATATYPES["FP64"]
MATRIX_INPUT = "input"
OUTPUT_NAME = "output"


def oip_datatype(dtype: str | np.dtype[Any]) -> str:
    """The OIP datatype for a signature dtype name or a NumPy dtype."""
    if isinstance(dtype, str):
        return _SIGNATURE_TO_OIP.get(dtype, "BYTES")
    return _numpy_datatype(dtype)


@functools.cache
def _numpy_datatype(dtype: np.dtype[Any]) -> str:
    """Cached: ``dtype.name`` is computed in Python by NumPy, and every response asks."""
    return _SIGNATURE_TO_OIP.get(_numpy_name(dtype), "BYTES")


def _numpy_name(dtype: np.dtype[Any]) -> str:
    return "string" if dtype.kind in "OUS" else dtype.name


@dataclass(frozen=True, slots=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def input_metadata(signature: Signature) -> list[TensorMetadata]:
    """What the model takes, as OIP tensors.

    A tensor signature is one tensor named ``input``; an all-numeric table is one FP64 matrix
    ``input`` of shape [-1, n_columns] (columns in signature order); a mixed table is one
    1-D tensor per column. A numeric table also accepts the per-column form.
    """
    if isinstance(signature.inputs, TensorSpec):
        spec = signature.inputs
        return [TensorMetadata(MATRIX_INPUT, oip_datatype(spec.dtype), spec.shape)]
    if signature.numeric_table:
        return [TensorMetadata(MATRIX_INPUT, "FP64", (-1, len(signature.inputs)))]
    return [TensorMetadata(c.name, oip_datatype(c.dtype), (-1,)) for c in signature.inputs]


def output_metadata(signature: Signature) -> list[TensorMetadata]:
    out = signature.outputs
    if out is None:
        return [TensorMetadata(OUTPUT_NAME, "FP64", (-1,))]
    return [TensorMetadata(OUTPUT_NAME, oip_datatype(out.dtype), out.shape)]


# ---------------------------------------------------------------- decoding
def decode_tensor(raw: Any, index: int) -> tuple[str, np.ndarray[Any, Any]]:
    """One request input (parsed JSON) → (name, array shaped as declared)."""
    if type(raw) is not dict and not isinstance(raw, Mapping):
        where = f"inputs[{index}]"
        raise InvalidInput(
            f"{where} must be an object with name, shape, datatype and data", field=where
        )
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        where = f"inputs[{index}]"
        raise InvalidInput(f"{where}.name must be a non-empty string", field=f"{where}.name")
    datatype = raw.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InvalidInput(
            f"input {name!r}: datatype {datatype!r} is not supported; expected one of "
            f"{', '.join(DATATYPES)}",
            field=f"{name}.datatype",
        )
    shape = raw.get("shape")
    if not isinstance(shape, list) or not _is_shape(shape):
        raise InvalidInput(
            f"input {name!r}: shape must be a list of non-negative integers, got {shape!r}",
            field=f"{name}.shape",
        )
    parameters = raw.get("parameters")
    if (
        parameters is not None
        and isinstance(parameters, Mapping)
        and "binary_data_size" in parameters
    ):
        raise InvalidInput(
            f"input {name!r}: the binary tensor data extension is not supported; send JSON data "
            "(tritonclient: binary_data=False)",
            field=f"{name}.parameters",
        )
    data = raw.get("data", _MISSING)
    if data is _MISSING:
        raise InvalidInput(f"input {name!r}: data is missing", field=f"{name}.data")
    if not isinstance(data, list):
        raise InvalidInput(
            f"input {name!r}: data must be a (flat or nested) list", field=f"{name}.data"
        )
    try:
        array = np.asarray(data)
    except ValueError as exc:
        raise InvalidInput(f"input {name!r}: data is ragged: {exc}", field=f"{name}.data") from exc
    if array.dtype is not DATATYPES[datatype] or array.ndim != 1 or not array.size:
        array = _convert_data(array, datatype, name)  # else: a flat list of FP64 numbers
    count = math.prod(shape)
    if array.size != count:
        raise InvalidInput(
            f"input {name!r}: data has {array.size} element(s) but shape {shape} needs {count}",
            field=f"{name}.data",
        )
    return name, array.reshape(shape)


_MISSING = object()


def _is_shape(shape: list[Any]) -> bool:
    for d in shape:
        if type(d) is not int and (not isinstance(d, int) or isinstance(d, bool)):
            return False
        if d < 0:
            return False
    return True


def _convert_data(array: np.ndarray[Any, Any], datatype: str, name: str) -> np.ndarray[Any, Any]:
    """Request data (as NumPy made it of the JSON list) as a flat array of ``datatype``."""
    kind = array.dtype.kind
    target = DATATYPES[datatype]
    if kind == "f" and target.kind == "f" and array.size:  # numbers for a float type
        return array.astype(target, copy=False).ravel()
    where, field = f"input {name!r}", f"{name}.data"
    if array.size == 0:
        return np.empty(0, dtype=target)
    if datatype == "BYTES":
        flat = array.ravel()
        if kind != "U" and not all(isinstance(v, str) for v in flat):
            raise InvalidInput(f"{where}: BYTES data must be strings", field=field)
        return flat.astype(object)
    if datatype == "BOOL":
        if kind != "b":
            raise InvalidInput(f"{where}: BOOL data must be true/false", field=field)
        return array.ravel()
    if kind not in "iuf":
        raise InvalidInput(
            f"{where}: {datatype} data must be numbers, got {_describe_kind(array)}", field=field
        )
    if target.kind in "iu":
        if kind == "f" and not np.all(np.mod(array, 1) == 0):
            raise InvalidInput(f"{where}: {datatype} data must be integers", field=field)
        info = np.iinfo(target)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise InvalidInput(f"{where}: values out of range for {datatype}", field=field)
    return array.astype(target, copy=False).ravel()


def _describe_kind(array: np.ndarray[Any, Any]) -> str:
    return {"U": "strings", "b": "booleans", "O": "mixed values"}.get(
        array.dtype.kind, str(array.dtype)
    )


def tensors_to_batch(signature: Signature, tensors: Mapping[str, np.ndarray[Any, Any]]) -> Batch:
    """Check decoded request tensors against the signature and build the model's batch."""
    if isinstance(signature.inputs, TensorSpec):
        if len(tensors) != 1:
            raise InvalidInput(
                f"expected one input tensor {MATRIX_INPUT!r}, got {len(tensors)}", field="inputs"
            )
        return signature.coerce(next(iter(tensors.values())))
    if (
        len(tensors) == 1
        and signature.numeric_table
        and next(iter(tensors)) not in signature.column_positions
    ):
        name, matrix = next(iter(tensors.items()))
        return _matrix_batch(signature.column_names, name, matrix)
    by_column = {}
    for name, array in tensors.items():
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise InvalidInput(
                f"input {name!r} must have shape [rows] or [rows, 1], got {list(array.shape)}",
                field=name,
            )
        by_column[name] = array
    return signature.coerce(by_column, extra="reject")


def _matrix_batch(names: tuple[str, ...], name: str, matrix: np.ndarray[Any, Any]) -> Batch:
    width = len(names)
    if matrix.ndim == 1 and matrix.size == width:
        matrix = matrix.reshape(1, width)
    if matrix.ndim != 2 or matrix.shape[1] != width:
        raise InvalidInput(
            f"input {name!r} has shape {list(matrix.shape)}; expected [rows, {width}] with "
            f"columns {', '.join(names)}",
            field=name,
        )
    if matrix.dtype.kind not in "fiub":
        raise InvalidInput(f"input {name!r} must be numeric", field=name)
    if matrix.dtype is not _FLOAT64:
        matrix = matrix.astype(np.float64)
    return Batch.from_table(names, matrix)


def check_finite(batch: Batch, *, allow_nan: bool, allow_inf: bool) -> None:
    """Refuse NaN and/or infinite values (per the deployment's policy), naming the column."""
    if allow_nan and allow_inf:
        return
    for values in batch.values():
        if values.dtype.kind != "f":
            continue
        # count_nonzero: a plain loop, several times cheaper than a ufunc reduction (.any())
        # on the small arrays of a request.
        if allow_nan:
            bad = np.count_nonzero(np.isinf(values)) > 0
        elif allow_inf:
            bad = np.count_nonzero(np.isnan(values)) > 0
        else:
            bad = np.count_nonzero(np.isfinite(values)) < values.size
        if bad:
            _raise_not_finite(batch, allow_nan, allow_inf)


def _raise_not_finite(batch: Batch, allow_nan: bool, allow_inf: bool) -> None:
    what = " or ".join(w for w, ok in (("NaN", allow_nan), ("infinite", allow_inf)) if not ok)
    columns: Mapping[str, np.ndarray[Any, Any]] = (
        batch.columns if batch.columns is not None else {MATRIX_INPUT: batch.values()[0]}
    )
    for name, values in columns.items():
        if values.dtype.kind == "f":
            bad = (np.isnan(values) & (not allow_nan)) | (np.isinf(values) & (not allow_inf))
            if bad.any():
                raise InvalidInput(f"input {name!r} has {what} values", field=name)


# ---------------------------------------------------------------- encoding
def encode_output(array: np.ndarray[Any, Any], name: str = OUTPUT_NAME) -> dict[str, Any]:
    """A response output with flattened data (NumPy array, serialised by orjson)."""
    dtype = array.dtype
    kind = dtype.kind
    if kind in "OUS":
        data: Any = [v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel()]
    else:
        data = array.ravel()  # C-contiguous, as orjson needs (a copy when the array is not)
        if kind == "f" and np.count_nonzero(np.isfinite(data)) < data.size:
            raise ValueError(f"output {name!r} has NaN or infinite values, which JSON cannot carry")
    return {
        "name": name,
        "datatype": _numpy_datatype(dtype),
        "shape": list(array.shape),
        "data": data,
    }
