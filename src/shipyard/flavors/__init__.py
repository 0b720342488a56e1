"""Flavors: how each kind of model is saved, loaded and asked for predictions.

``flavor_for`` picks one for a model object with one explicit ``match``; ``get_flavor`` finds one
by the name stored with a model version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipyard.errors import InvalidInput
from shipyard.flavors.base import Flavor, root_module
from shipyard.flavors.lightgbm import LightGBMFlavor
from shipyard.flavors.onnx import ONNXFlavor
from shipyard.flavors.pyfunc import PythonModelFlavor, PythonModelPackage, is_python_model
from shipyard.flavors.sklearn import SklearnFlavor
from shipyard.flavors.torch import TorchFlavor
from shipyard.flavors.xgboost import XGBoostFlavor

FLAVOR_NAMES = ("sklearn", "lightgbm", "xgboost", "torch", "onnx", "pyfunc")

# Packages whose classes users subclass (an nn.Module in a script): found anywhere in the MRO.
_LIBRARIES = ("xgboost", "torch", "onnx", "lightgbm", "sklearn")


def get_flavor(name: str) -> Flavor:
    match name:
        case "sklearn":
            return SklearnFlavor()
        case "lightgbm":
            return LightGBMFlavor()
        case "xgboost":
            return XGBoostFlavor()
        case "torch":
            return TorchFlavor()
        case "onnx":
            return ONNXFlavor()
        case "pyfunc":
            return PythonModelFlavor()
        case _:
            raise InvalidInput(
                f"flavor {name!r} is unknown; known flavors: {', '.join(FLAVOR_NAMES)}",
                field="flavor",
            )


def flavor_for(model: Any) -> Flavor:
    """The flavor that can save ``model``, judged by the package its class (or a base class)
    comes from. A Python model (``load_context`` + ``predict``) is recognised first: those
    methods say the user wants it run as written."""
    match _library_of(model):
        case _ if is_python_model(model):
            return PythonModelFlavor()
        case "xgboost":
            return XGBoostFlavor()
        case "torch":
            return TorchFlavor()
        case "onnx":
            return ONNXFlavor()
        case _ if isinstance(model, bytes) or (
            isinstance(model, str | Path) and str(model).endswith(".onnx")
        ):
            return ONNXFlavor()
        case "lightgbm":
            return LightGBMFlavor()
        case "sklearn":
            return SklearnFlavor()
        case _ if hasattr(model, "fit") and hasattr(model, "predict"):
            return SklearnFlavor()  # sklearn-compatible estimators from other packages
        case other:
            raise InvalidInput(
                f"cannot tell how to save a {type(model).__name__} from package {other!r}; "
                f"pass flavor= one of {', '.join(FLAVOR_NAMES)}",
                field="model",
            )


def _library_of(model: Any) -> str:
    """The known library the model's class or one of its bases comes from, else its package."""
    roots = [cls.__module__.split(".")[0] for cls in type(model).__mro__]
    return next((root for root in roots if root in _LIBRARIES), root_module(model))


__all__ = [
    "FLAVOR_NAMES",
    "Flavor",
    "PythonModelPackage",
    "flavor_for",
    "get_flavor",
]
