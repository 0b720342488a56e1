"""The servers under test: how each one is started, probed and spoken to, for one model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import bentoml
import mlflow.models
import mlflow.sklearn
import numpy as np
import pandas as pd
import skops.io
from training import Model

from shipyard import Settings, Workspace

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent  # the venv's console scripts: mlflow, bentoml, shipyard
HOST = "127.0.0.1"
MODEL = "bc"
ALIAS = "production"
REQUEST_TIMEOUT_S = 30.0
# The batching variant serves the native model with dynamic batching on, at most one row per
# connection of the largest load.
SHIPYARD_VARIANT_ARGS = {"shipyard-batching": ("--max-batch-size", "64")}


class ServerFailed(Exception):
    """A server could not be started, became unready, answered wrongly or died under load."""


def request_json(url: str, body: bytes | None = None) -> Any:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read()[:300].decode(errors="replace")
        raise ServerFailed(f"{url} answered {error.code}: {detail}") from error
    except (urllib.error.URLError, OSError) as error:
        raise ServerFailed(f"{url}: {error}") from error


class Server(Protocol):
    """One server under test for one model: how to start it, probe it and talk to it."""

    @property
    def name(self) -> str: ...
    @property
    def ready_path(self) -> str: ...
    @property
    def infer_path(self) -> str: ...

    def unavailable(self) -> str | None:
        """Why this server cannot run here, or None."""
        ...

    def command(self, port: int, workers: int) -> list[str]: ...
    def env(self, workers: int) -> dict[str, str]: ...
    def body(self, base_url: str, rows: pd.DataFrame) -> bytes: ...
    def probabilities(self, answer: Any) -> np.ndarray[Any, Any]: ...


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class MlflowServer:
    """``mlflow models serve`` on a model saved with the scikit-learn flavor (skops, the default
    serialization) whose pyfunc answers ``predict_proba``, in the benchmark's own environment."""

    model_path: Path
    name: ClassVar[str] = "MLflow"
    ready_path: ClassVar[str] = "/ping"
    infer_path: ClassVar[str] = "/invocations"

    @classmethod
    def prepare(cls, model: Model, folder: Path) -> MlflowServer:
        example = model.features.head(5)
        trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model.estimator))
        mlflow.sklearn.save_model(
            model.estimator,
            folder,
            input_example=example,
            signature=mlflow.models.infer_signature(example, model.expected(example)),
            pyfunc_predict_fn="predict_proba",
            skops_trusted_types=trusted,
        )
        return cls(folder)

    def unavailable(self) -> str | None:
        return None

    def command(self, port: int, workers: int) -> list[str]:
        return [
            *(str(BIN / "mlflow"), "models", "serve", "-m", str(self.model_path)),
            *("--env-manager", "local", "-h", HOST, "-p", str(port), "-w", str(workers)),
        ]

    def env(self, workers: int) -> dict[str, str]:
        return {}

    def body(self, base_url: str, rows: pd.DataFrame) -> bytes:
        split = {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}
        return dumps({"dataframe_split": split})

    def probabilities(self, answer: Any) -> np.ndarray[Any, Any]:
        return np.asarray(answer["predictions"], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class BentoServer:
    """``bentoml serve`` on ``bento_service.py``, the model saved with ``bentoml.sklearn``."""

    home: Path
    tag: str
    name: ClassVar[str] = "BentoML"
    ready_path: ClassVar[str] = "/readyz"
    infer_path: ClassVar[str] = "/predict"

    @classmethod
    def prepare(cls, model: Model, home: Path) -> BentoServer:
        os.environ["BENTOML_HOME"] = str(home)  # read by bentoml when the store is first used
        saved = bentoml.sklearn.save_model(f"bc-{model.name}", model.estimator)
        return cls(home, str(saved.tag))

    def unavailable(self) -> str | None:
        return None

    def command(self, port: int, workers: int) -> list[str]:
        return [
            *(str(BIN / "bentoml"), "serve", "bento_service:BreastCancer"),
            *("--working-dir", str(HERE), "--host", HOST, "--port", str(port)),
        ]

    def env(self, workers: int) -> dict[str, str]:
        return {
            "BENTOML_HOME": str(self.home),
            "BENTOML_DO_NOT_TRACK": "True",
            "BENCH_BENTO_MODEL": self.tag,
            "BENCH_WORKERS": str(workers),
        }

    def body(self, base_url: str, rows: pd.DataFrame) -> bytes:
        return dumps({"rows": rows.to_numpy().tolist()})

    def probabilities(self, answer: Any) -> np.ndarray[Any, Any]:
        return np.asarray(answer, dtype=np.float64)


def oip_body(inputs: Sequence[dict[str, Any]], rows: pd.DataFrame) -> bytes:
    """An OIP v2 infer body for the declared inputs: one [n, 30] tensor, or one per column."""
    if len(inputs) == 1:
        (spec,) = inputs
        tensor = {
            "name": spec["name"],
            "shape": list(rows.shape),
            "datatype": spec.get("datatype", "FP64"),
            "data": rows.to_numpy().ravel().tolist(),
        }
        return dumps({"inputs": [tensor]})
    names = [spec["name"] for spec in inputs]
    if sorted(names) != sorted(rows.columns):
        raise ServerFailed(f"cannot build a request for the declared inputs {names}")
    tensors = [
        {
            "name": spec["name"],
            "shape": [len(rows), *([1] if len(spec.get("shape", [])) == 2 else [])],
            "datatype": spec.get("datatype", "FP64"),
            "data": rows[spec["name"]].tolist(),
        }
        for spec in inputs
    ]
    return dumps({"inputs": tensors})


def oip_probabilities(answer: Any) -> np.ndarray[Any, Any]:
    """The first output whose name contains ``prob``, else the first two-dimensional one."""
    outputs = answer["outputs"]
    named = [o for o in outputs if "prob" in o["name"].lower()]
    candidates = named or [o for o in outputs if len(o["shape"]) == 2]
    if not candidates:
        raise ServerFailed(f"no probabilities among the outputs {[o['name'] for o in outputs]}")
    output = candidates[0]
    return np.asarray(output["data"], dtype=np.float64).reshape(output["shape"])


@dataclass(frozen=True, slots=True)
class FloorServer:
    """``floor.py`` under uvicorn: bare ASGI + orjson + ONNX Runtime, OIP v2 REST."""

    onnx_path: Path
    name: ClassVar[str] = "floor (ASGI+ONNX)"
    ready_path: ClassVar[str] = "/v2/health/ready"
    infer_path: ClassVar[str] = f"/v2/models/{MODEL}/infer"

    def unavailable(self) -> str | None:
        return None

    def command(self, port: int, workers: int) -> list[str]:
        return [
            *(sys.executable, "-m", "uvicorn", "floor:app", "--app-dir", str(HERE)),
            *("--host", HOST, "--port", str(port), "--workers", str(workers)),
            *("--lifespan", "off", "--no-access-log", "--log-level", "warning"),
        ]

    def env(self, workers: int) -> dict[str, str]:
        return {"BENCH_ONNX_PATH": str(self.onnx_path), "BENCH_MODEL_NAME": MODEL}

    def body(self, base_url: str, rows: pd.DataFrame) -> bytes:
        return oip_body([{"name": "input", "datatype": "FP64"}], rows)

    def probabilities(self, answer: Any) -> np.ndarray[Any, Any]:
        return oip_probabilities(answer)


def shipyard_command_missing(*words: str) -> str | None:
    """Why ``shipyard <words>`` cannot be used, or None; checked through its ``--help``."""
    executable = BIN / "shipyard"
    if not executable.exists():
        return f"{executable} not found"
    done = subprocess.run(
        [str(executable), *words, "--help"], capture_output=True, text=True, check=False
    )
    if done.returncode == 0:
        return None
    lines = (done.stderr or done.stdout).strip().splitlines()
    return f"`shipyard {' '.join(words)} --help` failed: {lines[-1] if lines else done.returncode}"


def shipyard_serve_help() -> str:
    done = subprocess.run(
        [str(BIN / "shipyard"), "serve", "--help"], capture_output=True, text=True, check=False
    )
    return done.stdout


@dataclass(frozen=True, slots=True)
class ShipyardServer:
    """``shipyard serve bc@production`` from a workspace of its own (OIP v2 REST).

    ``onnx``: the version served is the one ``shipyard models optimize`` made of the registered
    model, moved to ``production``; ``extra_args`` go to ``shipyard serve`` as they are, and
    into the name shown in the table.
    """

    home: Path | None  # None: could not be prepared, ``missing`` says why
    missing: str | None
    onnx: bool = False
    extra_args: tuple[str, ...] = ()
    ready_path: ClassVar[str] = "/v2/health/ready"
    infer_path: ClassVar[str] = f"/v2/models/{MODEL}/infer"

    @property
    def name(self) -> str:
        label = "shipyard (ONNX)" if self.onnx else "shipyard"
        return " ".join([label, *self.extra_args])

    @classmethod
    def prepare(
        cls, model: Model, home: Path, *, onnx: bool, extra_args: Sequence[str]
    ) -> ShipyardServer:
        missing = shipyard_command_missing("serve")
        if missing is None and onnx:
            missing = shipyard_command_missing("models", "optimize")
        if missing is not None:
            return cls(None, f"not available yet: {missing}", onnx, tuple(extra_args))
        ws = Workspace(Settings(home=home))
        try:
            registered = ws.register_model(
                MODEL, model.estimator, input_example=model.features.head(5)
            )
            ws.registry.set_alias(MODEL, ALIAS, registered.version)
            if onnx:
                optimize = [str(BIN / "shipyard"), "models", "optimize", MODEL]
                done = subprocess.run(
                    [*optimize, "--version", str(registered.version)],
                    env={**os.environ, "SHIPYARD_HOME": str(home)},
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode != 0:
                    reason = (done.stderr or done.stdout).strip()[-300:]
                    return cls(
                        None,
                        f"`shipyard models optimize` failed: {reason}",
                        onnx,
                        tuple(extra_args),
                    )
                newest = max(v.version for v in ws.registry.list_versions(MODEL))
                ws.registry.set_alias(MODEL, ALIAS, newest)
        finally:
            ws.close()
        return cls(home, None, onnx, tuple(extra_args))

    def unavailable(self) -> str | None:
        return self.missing

    def command(self, port: int, workers: int) -> list[str]:
        host = ["--host", HOST] if "--host" in shipyard_serve_help() else []
        return [
            *(str(BIN / "shipyard"), "serve", f"{MODEL}@{ALIAS}", *host),
            *("--port", str(port), "--workers", str(workers), *self.extra_args),
        ]

    def env(self, workers: int) -> dict[str, str]:
        return {"SHIPYARD_HOME": str(self.home)}

    def body(self, base_url: str, rows: pd.DataFrame) -> bytes:
        metadata = request_json(f"{base_url}/v2/models/{MODEL}")
        return oip_body(metadata["inputs"], rows)

    def probabilities(self, answer: Any) -> np.ndarray[Any, Any]:
        return oip_probabilities(answer)
