"""Open Inference Protocol tensors in their binary forms: raw contents and typed gRPC contents.

Raw contents (gRPC ``raw_input_contents`` / ``raw_output_contents``, the REST binary extension)
hold one tensor's elements in row-major order, little-endian; BOOL is one byte per element
(0 false, anything else true); FP16 is IEEE binary16; BYTES is, per element, a 4-byte
little-endian unsigned length followed by that many bytes. Typed contents hold one protobuf
repeated field per datatype (``fp32_contents``…), with no field for FP16.

Pure functions over ``bytes``, sequences and NumPy arrays; errors are :class:`InvalidInput`
naming the input, the bad value and what was expected.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from shipyard.core.oip import DATATYPES, oip_datatype
from shipyard.errors import InvalidInput

# The typed-contents field that carries each datatype, and the element type of that field.
CONTENTS_FIELDS: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_FIELD_DTYPES: dict[str, np.dtype[Any]] = {
    "bool_contents": np.dtype(np.bool_),
    "int_contents": np.dtype(np.int32),
    "int64_contents": np.dtype(np.int64),
    "uint_contents": np.dtype(np.uint32),
    "uint64_contents": np.dtype(np.uint64),
    "fp32_contents": np.dtype(np.float32),
    "fp64_contents": np.dtype(np.float64),
}
_LENGTH = struct.Struct("<I")


def check_datatype(datatype: str, name: str) -> str:
    """``datatype`` if shipyard handles it (BF16 is not), else :class:`InvalidInput`."""
    if datatype not in DATATYPES:
        raise InvalidInput(
            f"input {name!r}: datatype {datatype!r} is not supported; expected one of "
            f"{', '.join(DATATYPES)}",
            field=f"{name}.datatype",
        )
    return datatype


def check_shape(shape: Sequence[int], name: str) -> tuple[int, ...]:
    """A request shape as a tuple, refusing negative dimensions (-1 is for metadata only)."""
    if any(d < 0 for d in shape):
        raise InvalidInput(
            f"input {name!r}: shape must be non-negative integers, got {list(shape)}",
            field=f"{name}.shape",
        )
    return tuple(shape)


# ---------------------------------------------------------------- raw contents
def decode_raw(data: bytes, datatype: str, shape: Sequence[int], name: str) -> np.ndarray[Any, Any]:
    """One tensor's raw contents → an array of ``shape`` (BYTES: an object array of bytes).

    Numeric arrays are read-only views of ``data`` (no copy on little-endian hosts).
    """
    count = math.prod(shape)
    where = f"input {name!r}"
    if datatype == "BYTES":
        return deserialize_bytes(data, count, where).reshape(shape)
    dtype = DATATYPES[datatype]
    needed = count * dtype.itemsize
    if len(data) != needed:
        raise InvalidInput(
            f"{where}: raw contents have {len(data)} bytes but shape {list(shape)} of "
            f"{datatype} needs {needed}",
            field=name,
        )
    if datatype == "BOOL":
        return np.not_equal(np.frombuffer(data, dtype=np.uint8), 0).reshape(shape)
    flat = np.frombuffer(data, dtype=dtype.newbyteorder("<"))
    return flat.astype(dtype, copy=False).reshape(shape)


def encode_raw(array: np.ndarray[Any, Any]) -> tuple[str, bytes]:
    """An output array → (OIP datatype, raw contents). Strings, objects and dates go as BYTES."""
    datatype = oip_datatype(array.dtype)
    if datatype == "BYTES":
        return datatype, serialize_bytes(array.ravel())
    if datatype == "BOOL":
        return datatype, np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    little = DATATYPES[datatype].newbyteorder("<")
    return datatype, np.ascontiguousarray(array, dtype=little).tobytes()


def serialize_bytes(values: Iterable[Any]) -> bytes:
    """BYTES elements (bytes as they are, str as UTF-8, anything else as its str) → raw."""
    parts = []
    for value in values:
        if isinstance(value, bytes | bytearray):
            element = bytes(value)
        else:
            element = (value if isinstance(value, str) else str(value)).encode("utf-8")
        parts.append(_LENGTH.pack(len(element)))
        parts.append(element)
    return b"".join(parts)


def deserialize_bytes(data: bytes, count: int, where: str = "input") -> np.ndarray[Any, Any]:
    """Raw BYTES contents holding exactly ``count`` elements → a 1-D object array of bytes."""
    size = len(data)
    if count * _LENGTH.size > size:
        raise InvalidInput(
            f"{where}: raw BYTES contents have {size} bytes, too few for {count} element(s) "
            f"(each needs a {_LENGTH.size}-byte length prefix)",
            field=where,
        )
    out = np.empty(count, dtype=object)
    offset = 0
    for index in range(count):
        if offset + _LENGTH.size > size:
            raise InvalidInput(
                f"{where}: raw BYTES contents end before element {index} of {count}", field=where
            )
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + length > size:
            raise InvalidInput(
                f"{where}: raw BYTES element {index} declares {length} bytes but only "
                f"{size - offset} remain",
                field=where,
            )
        out[index] = data[offset : offset + length]
        offset += length
    if offset != size:
        raise InvalidInput(
            f"{where}: raw BYTES contents have {size - offset} byte(s) left after the "
            f"{count} element(s) the shape needs",
            field=where,
        )
    return out


# -------------------------------------------------------------- typed contents
def decode_contents(
    fields: Mapping[str, Sequence[Any]], datatype: str, shape: Sequence[int], name: str
) -> np.ndarray[Any, Any]:
    """Typed contents (field name → values; empty fields may be left out) → an array.

    Exactly the datatype's own field may hold values, and as many as ``shape`` needs; narrow
    integers (INT8, UINT16…) travel widened to 32 bits and must fit their datatype.
    """
    where = f"input {name!r}"
    expected = CONTENTS_FIELDS.get(datatype)
    if expected is None:
        raise InvalidInput(
            f"{where}: {datatype} has no typed contents field; send it in raw_input_contents",
            field=name,
        )
    others = sorted(f for f, values in fields.items() if f != expected and len(values))
    if others:
        raise InvalidInput(
            f"{where}: {datatype} data goes in contents.{expected}, not in "
            f"{', '.join('contents.' + f for f in others)}",
            field=name,
        )
    values = fields.get(expected, ())
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidInput(
            f"{where}: contents.{expected} has {len(values)} element(s) but shape "
            f"{list(shape)} needs {count}",
            field=name,
        )
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        for index, value in enumerate(values):
            out[index] = bytes(value)
        return out.reshape(shape)
    array = np.fromiter(values, dtype=_FIELD_DTYPES[expected], count=count)
    target = DATATYPES[datatype]
    if target.kind in "iu" and target.itemsize < array.dtype.itemsize and array.size:
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise InvalidInput(
                f"{where}: values out of range for {datatype} ({info.min}..{info.max})",
                field=name,
            )
    return array.astype(target, copy=False).reshape(shape)


def bytes_to_text(array: np.ndarray[Any, Any], name: str) -> np.ndarray[Any, Any]:
    """A BYTES array (bytes elements) → the same shape of str, decoded as UTF-8 — the form
    string columns take everywhere else (JSON requests, DataFrames)."""
    flat = array.ravel()
    out = np.empty(flat.size, dtype=object)
    for index, value in enumerate(flat):
        try:
            out[index] = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"input {name!r}: BYTES element {index} is not UTF-8 text ({exc.reason})",
                field=name,
            ) from exc
    return out.reshape(array.shape)
