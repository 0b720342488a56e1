"""Plain JSON values from results: dataclasses, NumPy scalars, datetimes, NaN."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """``value`` as JSON types: dataclasses as dicts, NaN and infinities as None, NumPy scalars
    as Python numbers, datetimes as ISO 8601; anything else is a TypeError."""
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [jsonable(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    raise TypeError(f"cannot make {type(value).__name__} JSON-able")
