"""Conversion of registered models to ONNX, for serving with ONNX Runtime.

A service: it takes the library's own model objects and example data, and returns the ONNX model
as bytes; the workspace loads the source version, checks parity and registers the result.
"""

from __future__ import annotations

from shipyard.conversion.onnx import (
    PRECISIONS,
    check_convertible,
    lightgbm_to_onnx,
    sklearn_to_onnx,
    torch_to_onnx,
    xgboost_to_onnx,
)

__all__ = [
    "PRECISIONS",
    "check_convertible",
    "lightgbm_to_onnx",
    "sklearn_to_onnx",
    "torch_to_onnx",
    "xgboost_to_onnx",
]
