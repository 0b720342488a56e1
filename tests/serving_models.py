"""Python models for server tests: one that fails on demand, one that waits to be released."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd


class Flaky:
    """Answers [a, b] per row; raises when any ``a`` exceeds 100."""

    def load_context(self, context: Any) -> None:
        self.calls = 0

    def predict(self, context: Any, data: pd.DataFrame) -> np.ndarray[Any, Any]:
        self.calls += 1
        if (data["a"] > 100).any():
            raise RuntimeError("flaky model refuses a > 100")
        return data[["a", "b"]].to_numpy()


class Steady:
    """Always answers [0, 1] per row: a fallback that works."""

    def load_context(self, context: Any) -> None:
        pass

    def predict(self, context: Any, data: pd.DataFrame) -> np.ndarray[Any, Any]:
        return np.tile([0.0, 1.0], (len(data), 1))


class Gate:
    """Blocks calls with a row where ``b == 2`` until ``release`` is set, so tests control how
    long a request takes (other rows, like the input example's, pass at once)."""

    def load_context(self, context: Any) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def predict(self, context: Any, data: pd.DataFrame) -> np.ndarray[Any, Any]:
        if (data["b"] == 2.0).any():
            self.entered.set()
            self.release.wait(30)
        return data["a"].to_numpy()


class Slow:
    """Answers ``a`` per row after ``b`` milliseconds: requests stay in flight a known time."""

    def load_context(self, context: Any) -> None:
        pass

    def predict(self, context: Any, data: pd.DataFrame) -> np.ndarray[Any, Any]:
        threading.Event().wait(float(data["b"].max()) / 1000.0)
        return data["a"].to_numpy()
