"""Flavors: how each kind of model is saved, loaded and asked for predictions.

``flavor_for`` picks one for a model object with one explicit ``match``; ``get_flavor`` finds one
by the name stored with a model version.
"""

from __future__ import annotations

from typing import Any

from shipyard.errors import InvalidInput
from shipyard.flavors.base import Flavor, root_module
from shipyard.flavors.lightgbm import LightGBMFlavor
from shipyard.flavors.sklearn import SklearnFlavor

FLAVOR_NAMES = ("sklearn", "lightgbm")


def get_flavor(name: str) -> Flavor:
    match name:
        case "sklearn":
            return SklearnFlavor()
        case "lightgbm":
            return LightGBMFlavor()
        case _:
            raise InvalidInput(
                f"flavor {name!r} is unknown; known flavors: {', '.join(FLAVOR_NAMES)}",
                field="flavor",
            )


def flavor_for(model: Any) -> Flavor:
    """The flavor that can save ``model``, judged by the package its class comes from."""
    match root_module(model):
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


__all__ = ["FLAVOR_NAMES", "Flavor", "flavor_for", "get_flavor"]
