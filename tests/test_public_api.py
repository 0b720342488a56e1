"""The public surface: what ``import shipyard`` offers, and what it must not drag in."""

from __future__ import annotations

import json
import subprocess
import sys

import shipyard


def test_public_names_are_pinned() -> None:
    assert sorted(shipyard.__all__) == shipyard.__all__
    assert set(shipyard.__all__) >= {
        "start_run",
        "seed_everything",
        "register_model",
        "load_model",
        "set_alias",
        "rollback",
        "Workspace",
        "Settings",
        "set_deployment_strategy",
        "create_experiment",
        "start_experiment",
        "stop_experiment",
        "analyze_experiment",
        "log_outcome",
    }
    for name in shipyard.__all__:
        assert hasattr(shipyard, name), name


def test_import_shipyard_stays_light() -> None:
    heavy = ["torch", "onnxruntime", "ray", "lightgbm", "xgboost", "grpc", "s3fs", "uvicorn"]
    heavy += ["starlette", "shipyard.server"]
    code = (
        f"import sys, json, shipyard; print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_errors_carry_status_and_code() -> None:
    assert (shipyard.ModelNotFound("x", []).status, shipyard.ModelNotFound.code) == (
        404,
        "model_not_found",
    )
    assert shipyard.InvalidInput("bad", field="f").field == "f"
    assert shipyard.Conflict("c").status == 409
    assert issubclass(shipyard.InvalidURI, shipyard.InvalidInput)
