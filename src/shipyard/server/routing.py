"""Which variant (and so which loaded model version) answers a request of a deployment.

A :class:`Routing` is built from the deployment's strategy (:mod:`shipyard.experiments.spec`)
once the runner of every variant is loaded, and swapped into the endpoint as one attribute:
a request reads ``endpoint.routing`` once and keeps what it read, so a change never fails a
request in flight. Assignment is :mod:`shipyard.core.assignment`'s: sticky by a hash of (the
experiment's salt, the unit key) when the request names a unit, else a random draw.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shipyard.core.assignment import Allocation, BanditAllocation
from shipyard.experiments.spec import ABTest, Bandit, BlueGreen, Canary, Shadow, Single
from shipyard.experiments.store import DeploymentState

if TYPE_CHECKING:
    from shipyard.server.endpoints import ModelRunner

UNIT_HEADER = "x-shipyard-unit"
VARIANT_HEADER = "X-Shipyard-Variant"
_HASH_SPACE = float(2**64)


def sampled(request_id: str, rate: float) -> bool:
    """Whether a request is in a sample at ``rate`` (the prediction log's, a shadow's): a hash
    of its id, uniform in [0, 1), below it — the same answer on every replica."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE < rate


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs 3x
class Assigned:
    """A request's variant, the runner that answers it, and its unit key (None: random)."""

    variant: str
    runner: ModelRunner
    unit_key: str | None


class Routing:
    """A deployment's variants and how requests are split between them."""

    def __init__(
        self,
        state: DeploymentState,
        runners: dict[str, ModelRunner],
        versions: dict[str, int],
        requests: dict[str, Any],
    ) -> None:
        self.state = state
        self.requests = requests  # each variant's request counter, looked up once
        self.revision = state.revision
        self.versions = versions  # each variant's model URI resolved to a version number
        self.runners = runners  # by variant name
        self.experiment = state.experiment  # None: no exposures are logged
        self.unit_field: str | None = getattr(state.strategy, "unit_field", None)
        self.shadows: tuple[tuple[str, ModelRunner], ...] = ()
        self.shadow_fraction = 0.0
        self._salt = state.salt
        self._random = random.Random()
        self._sticky = True
        self._fixed: str | None = None  # one variant answers everything
        self._split: Allocation | BanditAllocation | None = None
        strategy = state.strategy
        match strategy:
            case Single():
                self._fixed = "default"
            case BlueGreen():
                self._fixed = strategy.live
            case Shadow():
                self._fixed = "primary"
                self.shadows = tuple((n, r) for n, r in runners.items() if n != "primary")
                self.shadow_fraction = strategy.fraction
            case Canary():
                weights = state.weights or (1.0 - strategy.weight, strategy.weight)
                self._split = Allocation(["baseline", "candidate"], weights)
            case ABTest():
                names = [v.name for v in strategy.variants]
                self._split = Allocation(names, state.weights or strategy.split)
            case Bandit():
                names = [v.name for v in strategy.variants]
                weights = state.weights or tuple(1.0 / len(names) for _ in names)
                self._split = BanditAllocation(names, weights)
                self._sticky = strategy.sticky

    @property
    def weights(self) -> dict[str, float]:
        """The split now (the fixed variant at 1.0 for single, blue-green and shadow)."""
        if self._split is None:
            return {str(self._fixed): 1.0}
        return dict(zip(self._split.variants, self._split.weights, strict=True))

    def assign(self, unit_key: str | None) -> Assigned:
        """The variant for a request of ``unit_key`` (None: drawn at random)."""
        split = self._split
        if split is None:
            name = self._fixed
            assert name is not None
        elif unit_key is not None and self._sticky:
            name = split.assign(self._salt, unit_key)
        else:
            name = split.draw(self._random.random())
        return Assigned(name, self.runners[name], unit_key)

    def mirrored(self, request_id: str) -> bool:
        """Whether a request is mirrored to the shadows (a hash of its id below the fraction:
        the same request is mirrored or not on every replica)."""
        return bool(self.shadows) and sampled(request_id, self.shadow_fraction)


def unit_in_body(body: Any, field: str | None) -> str | None:
    """The unit key a request names in its body: OIP v2 ``parameters[field]``, an input tensor
    named ``field`` (its first value), or a v1 body's top-level ``field`` / first instance's."""
    if field is None or not isinstance(body, dict):
        return None
    parameters = body.get("parameters")
    if isinstance(parameters, dict) and field in parameters:
        return _key(parameters[field])
    if field in body:
        return _key(body[field])
    inputs = body.get("inputs")
    if isinstance(inputs, list):
        for tensor in inputs:
            if isinstance(tensor, dict) and tensor.get("name") == field:
                data = tensor.get("data")
                return _key(data[0] if isinstance(data, list) and data else None)
    instances = body.get("instances")
    if isinstance(instances, list) and instances and isinstance(instances[0], dict):
        return _key(instances[0].get(field))
    return None


def _key(value: Any) -> str | None:
    while isinstance(value, list) and value:
        value = value[0]
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)
