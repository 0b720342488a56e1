"""The binary tensor codec of the Open Inference Protocol: raw contents and typed gRPC contents."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shipyard.core.oip import DATATYPES
from shipyard.core.oip_raw import (
    CONTENTS_FIELDS,
    bytes_to_text,
    check_datatype,
    check_shape,
    decode_contents,
    decode_raw,
    deserialize_bytes,
    encode_raw,
    serialize_bytes,
)
from shipyard.errors import InvalidInput

FIXED = [d for d in DATATYPES if d != "BYTES"]
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)


def _array(datatype: str) -> st.SearchStrategy[np.ndarray[Any, Any]]:
    dtype = DATATYPES[datatype]
    if datatype == "BYTES":
        return hnp.arrays(object, shapes, elements=st.binary(max_size=6))
    if dtype.kind == "f":
        elements = st.floats(width=8 * dtype.itemsize, allow_nan=False)
        return hnp.arrays(dtype, shapes, elements=elements)
    return hnp.arrays(dtype, shapes)


# ------------------------------------------------------------- raw contents
@pytest.mark.parametrize("datatype", list(DATATYPES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_raw_round_trip_of_every_datatype(datatype: str, data: st.DataObject) -> None:
    array = data.draw(_array(datatype))
    encoded_type, payload = encode_raw(array)
    assert encoded_type == datatype
    decoded = decode_raw(payload, datatype, array.shape, "x")
    assert decoded.shape == array.shape and decoded.dtype == DATATYPES[datatype]
    np.testing.assert_array_equal(decoded, array)


def test_raw_layout_is_little_endian_row_major() -> None:
    array = np.array([[1, 2], [3, 256]], dtype=np.int16)
    assert encode_raw(array) == ("INT16", b"\x01\x00\x02\x00\x03\x00\x00\x01")
    assert encode_raw(np.array([True, False, True])) == ("BOOL", b"\x01\x00\x01")
    big_endian = np.array([1.5], dtype=">f8")
    assert encode_raw(big_endian)[1] == struct.pack("<d", 1.5)
    assert encode_raw(np.array([1.0], dtype=np.float16)) == ("FP16", b"\x00\x3c")
    np.testing.assert_array_equal(
        decode_raw(b"\x00\x02\xff", "BOOL", [3], "x"), [False, True, True]
    )


def test_bytes_use_4_byte_little_endian_length_prefixes() -> None:
    assert serialize_bytes([b"ab", b"cde"]) == bytes.fromhex("02000000 6162 03000000 636465")
    assert serialize_bytes(["é", "", 7]) == b"\x02\0\0\0\xc3\xa9" + b"\0\0\0\0" + b"\x01\0\0\x007"
    decoded = deserialize_bytes(b"\0\0\0\0\x01\0\0\0a\0\0\0\0", 3)
    assert decoded.tolist() == [b"", b"a", b""]
    assert decode_raw(b"", "BYTES", [0, 3], "x").shape == (0, 3)
    assert encode_raw(np.array([], dtype=object)) == ("BYTES", b"")
    assert encode_raw(np.array(["yes", ""]))[1] == b"\x03\0\0\0yes\0\0\0\0"


@pytest.mark.parametrize(
    ("data", "datatype", "shape", "fragment"),
    [
        pytest.param(
            b"\0" * 16, "FP64", [1, 3], "16 bytes but shape [1, 3] of FP64 needs 24", id="short"
        ),
        pytest.param(b"\0" * 25, "FP64", [1, 3], "needs 24", id="one-too-many"),
        pytest.param(b"\0" * 2, "BOOL", [3], "needs 3", id="bool"),
        pytest.param(b"", "FP16", [1], "needs 2", id="fp16"),
        pytest.param(b"\0\0\0", "BYTES", [1], "too few for 1", id="short-prefix"),
        pytest.param(b"\x05\0\0\0abc", "BYTES", [1], "declares 5 bytes but only 3", id="overrun"),
        pytest.param(b"\0\0\0\0\0\0\0\0", "BYTES", [1], "4 byte(s) left", id="trailing"),
        pytest.param(b"\x04\0\0\0abcd\0\0", "BYTES", [2], "end before element 1", id="cut"),
    ],
)
def test_raw_size_mismatches_are_invalid_input(
    data: bytes, datatype: str, shape: list[int], fragment: str
) -> None:
    with pytest.raises(InvalidInput, match="input 'x'") as info:
        decode_raw(data, datatype, shape, "x")
    assert fragment in info.value.message


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=24), count=st.integers(0, 5))
def test_bytes_decoding_accepts_or_refuses_cleanly(data: bytes, count: int) -> None:
    try:
        decoded = deserialize_bytes(data, count)
    except InvalidInput as exc:
        assert exc.message
        return
    assert len(decoded) == count
    assert serialize_bytes(decoded) == data


def test_a_huge_declared_shape_is_refused_before_allocating() -> None:
    with pytest.raises(InvalidInput, match="too few"):
        decode_raw(b"\0" * 8, "BYTES", [10**12], "x")
    with pytest.raises(InvalidInput, match="needs"):
        decode_raw(b"\0" * 8, "FP64", [10**12, 10**6], "x")


# ----------------------------------------------------------- typed contents
@pytest.mark.parametrize("datatype", list(CONTENTS_FIELDS))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_typed_contents_decode_every_typed_datatype(datatype: str, data: st.DataObject) -> None:
    array = data.draw(_array(datatype))
    values = array.ravel().tolist()
    empty_other = "bytes_contents" if datatype != "BYTES" else "fp64_contents"
    fields = {CONTENTS_FIELDS[datatype]: values, empty_other: []}  # empty fields are ignored
    decoded = decode_contents(fields, datatype, array.shape, "x")
    assert decoded.shape == array.shape and decoded.dtype == DATATYPES[datatype]
    np.testing.assert_array_equal(decoded, array)


def test_typed_contents_fields_follow_the_protocol_table() -> None:
    assert set(CONTENTS_FIELDS) == set(DATATYPES) - {"FP16"}
    assert [CONTENTS_FIELDS[d] for d in ("INT8", "INT16", "UINT8", "UINT16")] == [
        "int_contents",
        "int_contents",
        "uint_contents",
        "uint_contents",
    ]


@pytest.mark.parametrize(
    ("fields", "datatype", "shape", "fragment"),
    [
        pytest.param(
            {"fp64_contents": [1.0]}, "FP64", [2], "1 element(s) but shape [2]", id="count"
        ),
        pytest.param(
            {"fp32_contents": [1.0]},
            "FP64",
            [1],
            "in contents.fp64_contents, not in contents.fp32",
            id="wrong-field",
        ),
        pytest.param({"fp32_contents": [1.0]}, "FP16", [1], "raw_input_contents", id="fp16"),
        pytest.param({"int_contents": [128]}, "INT8", [1], "out of range for INT8", id="int8"),
        pytest.param({"uint_contents": [70000]}, "UINT16", [1], "out of range", id="uint16"),
        pytest.param({}, "INT64", [1], "0 element(s)", id="nothing"),
    ],
)
def test_typed_contents_errors(
    fields: dict[str, list[Any]], datatype: str, shape: list[int], fragment: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        decode_contents(fields, datatype, shape, "x")
    assert fragment in info.value.message and "input 'x'" in info.value.message


def test_zero_element_typed_tensors() -> None:
    assert decode_contents({}, "BYTES", [0], "x").shape == (0,)
    assert decode_contents({}, "FP32", [2, 0], "x").dtype == np.float32


# ------------------------------------------------------ datatypes and text
def test_datatype_and_shape_checks() -> None:
    assert check_datatype("FP64", "x") == "FP64"
    for bad in ("BF16", "fp64", ""):
        with pytest.raises(InvalidInput, match="not supported"):
            check_datatype(bad, "x")
    assert check_shape([2, 0, 3], "x") == (2, 0, 3)
    with pytest.raises(InvalidInput, match="non-negative"):
        check_shape([-1, 3], "x")


def test_bytes_become_text_or_a_clear_error() -> None:
    array = np.array([[b"paris", b""], ["\u00e9".encode(), b"x"]], dtype=object)
    text = bytes_to_text(array, "city")
    assert text.shape == (2, 2) and text.tolist() == [["paris", ""], ["é", "x"]]
    with pytest.raises(InvalidInput, match="input 'city': BYTES element 1 is not UTF-8"):
        bytes_to_text(np.array([b"ok", b"\xff"], dtype=object), "city")
