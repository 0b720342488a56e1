"""Content fingerprints of datasets: a sha256 over a canonical, row-order-sensitive serialisation.

The serialisation covers column names, a canonical dtype per column and every value, so the
fingerprint is the same for the same table in any process, changes when any value, name, type or
row order changes, and does not depend on memory layout, index or chunking.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.signature import TensorSpec, as_array, as_columns, infer_signature

_NULL = b"\xff\xfe"


def _canonical_values(values: Any) -> tuple[str, list[bytes]]:
    """A dtype tag and the byte chunks that canonically encode one column."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    nulls = series.isna().to_numpy()
    if pd.api.types.is_bool_dtype(series.dtype) and not nulls.any():
        return "bool", [series.to_numpy(dtype=np.uint8).tobytes()]
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        stamps = pd.to_datetime(series, utc=True).dt.tz_localize(None)
        ints = stamps.to_numpy(dtype="datetime64[ns]").astype("<i8")
        ints[nulls] = 0
        return "datetime", [ints.tobytes(), np.packbits(nulls).tobytes()]
    if pd.api.types.is_integer_dtype(series.dtype):
        ints = series.to_numpy(dtype="<i8", na_value=0)
        return "int", [ints.tobytes(), np.packbits(nulls).tobytes()]
    if pd.api.types.is_numeric_dtype(series.dtype) and not isinstance(
        series.dtype, pd.CategoricalDtype
    ):
        floats = series.to_numpy(dtype="<f8", na_value=np.nan)
        floats = np.where(nulls, np.nan, floats).astype("<f8")  # one NaN bit pattern for nulls
        floats[floats == 0] = 0.0  # -0.0 and 0.0 compare equal: encode them alike
        return "number", [floats.tobytes()]
    chunks = []
    for value, is_null in zip(series.to_numpy(dtype=object), nulls, strict=True):
        if is_null:
            chunks.append(_NULL)
        else:
            encoded = str(value).encode("utf-8")
            chunks.append(len(encoded).to_bytes(4, "little") + encoded)
    return "string", chunks


def fingerprint_columns(columns: dict[str, Any]) -> str:
    """sha256 hex digest of named columns (in the given order)."""
    digest = hashlib.sha256(b"shipyard-dataset-v1\n")
    for name, values in columns.items():
        tag, chunks = _canonical_values(values)
        header = f"{name}\x00{tag}\x00{len(values)}\n".encode()
        digest.update(len(header).to_bytes(4, "little") + header)
        for chunk in chunks:
            digest.update(chunk)
    return digest.hexdigest()


def describe_dataset(data: Any) -> tuple[str, dict[str, str], int]:
    """(fingerprint, schema, row count) of a table or an array (arrays hash as numbered columns)."""
    signature = infer_signature(data)
    if isinstance(signature.inputs, TensorSpec):
        array = as_array(data)
        flat = array.reshape(array.shape[0], -1)
        columns: dict[str, Any] = {str(i): flat[:, i] for i in range(flat.shape[1])}
        shape = "x".join(str(s) for s in array.shape[1:])
        return (
            fingerprint_columns(columns),
            {"tensor": f"{signature.inputs.dtype}[{shape}]"},
            len(array),
        )
    columns = as_columns(data)
    schema = {c.name: c.dtype for c in signature.inputs}
    num_rows = len(next(iter(columns.values())))
    return fingerprint_columns(columns), schema, num_rows
