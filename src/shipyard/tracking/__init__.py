"""Tracked training runs: params, metrics, artifacts, datasets and the environment they ran in."""

from shipyard.tracking.runs import ActiveRun, Tracker
from shipyard.tracking.seeding import last_seed, seed_everything

__all__ = ["ActiveRun", "Tracker", "last_seed", "seed_everything"]
