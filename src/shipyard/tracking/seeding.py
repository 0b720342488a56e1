"""One call that seeds every random number generator a training script is likely to use."""

from __future__ import annotations

import os
import random
import sys

import numpy as np

_last_seed: int | None = None


def seed_everything(seed: int) -> int:
    """Seed ``random``, NumPy's global generator and, when imported, torch; remember the seed.

    Runs started afterwards record it. Returns ``seed`` so it can be logged or passed on.
    """
    global _last_seed
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # inherited by worker processes started later
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
    _last_seed = seed
    return seed


def last_seed() -> int | None:
    """The seed most recently given to :func:`seed_everything` in this process."""
    return _last_seed
