"""The OpenAPI document of the REST routes, written by hand and checked against the router."""

from __future__ import annotations

from typing import Any

from shipyard import __version__

_ERROR = {
    "description": "error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {
            "type": "string",
            "enum": [
                "BOOL",
                "UINT8",
                "UINT16",
                "UINT32",
                "UINT64",
                "INT8",
                "INT16",
                "INT32",
                "INT64",
                "FP16",
                "FP32",
                "FP64",
                "BYTES",
            ],
        },
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": _TENSOR},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
            },
        },
    },
}
_INFER_RESPONSE = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": _TENSOR},
    },
}
_V1_REQUEST = {
    "type": "object",
    "properties": {
        "instances": {"type": "array"},
        "inputs": {"oneOf": [{"type": "object"}, {"type": "array"}]},
    },
}
_V1_RESPONSE = {
    "type": "object",
    "required": ["predictions", "model_name", "model_version"],
    "properties": {
        "predictions": {"type": "array"},
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
    },
}


_COLUMNS = {
    "type": "object",
    "additionalProperties": {"type": "array", "minItems": 1},
}
_ONLINE_REQUEST: dict[str, Any] = {
    "type": "object",
    "properties": {
        "features": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "feature_service": {"type": "string"},
        "entities": {**_COLUMNS, "minProperties": 1},
        "request_data": _COLUMNS,
        "full_feature_names": {"type": "boolean"},
    },
    "required": ["entities"],
}
_ONLINE_RESPONSE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "features": {"type": "object", "additionalProperties": {"type": "array"}},
        "statuses": {
            "type": "object",
            "additionalProperties": {
                "type": "array",
                "items": {"enum": ["PRESENT", "NOT_FOUND", "OUTSIDE_TTL"]},
            },
        },
    },
}


_OUTCOME: dict[str, Any] = {
    "type": "object",
    "properties": {
        "request_id": {"type": "string"},
        "row": {"type": "integer"},
        "unit_key": {"type": "string"},
        "idempotency_key": {"type": "string"},
        "label": {"type": "number"},
        "metric": {"type": "string"},
    },
    "required": ["label"],
}
_FEEDBACK_REQUEST: dict[str, Any] = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "outcomes": {"type": "array", "items": _OUTCOME, "minItems": 1},
    },
    "required": ["model"],
}


_STRATEGY_REQUEST: dict[str, Any] = {
    "type": "object",
    "properties": {
        "strategy": {
            "type": "object",
            "properties": {
                "type": {"enum": ["single", "blue_green", "canary", "shadow", "ab_test", "bandit"]}
            },
            "required": ["type"],
        },
        "reason": {"type": "string"},
    },
    "required": ["strategy"],
}


def _secured(item: dict[str, Any]) -> dict[str, Any]:
    """A path item whose every operation needs the bearer token."""
    return {
        method: {**operation, "security": [{"bearer": []}]} for method, operation in item.items()
    }


def _json(schema: dict[str, Any], description: str = "success") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _object(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


def _get(summary: str, schema: dict[str, Any], *params: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": list(params),
            "responses": {"200": _json(schema), "400": _ERROR, "404": _ERROR, "503": _ERROR},
        }
    }


def _path_param(name: str, values: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if values:
        schema["enum"] = values
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _post(
    summary: str, request: dict[str, Any], response: dict[str, Any], *params: dict[str, Any]
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": list(params),
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {
                "200": _json(response),
                "400": _ERROR,
                "401": _ERROR,
                "404": _ERROR,
                "413": _ERROR,
                "503": _ERROR,
                "504": _ERROR,
            },
        }
    }


def openapi_document(models: list[str]) -> dict[str, Any]:
    """OpenAPI 3.1 for every REST route; ``models`` (the served ones) are the only valid names."""
    model = _path_param("model", models)
    version = _path_param("version")
    target = _path_param("target", [f"{m}:predict" for m in models])
    metadata = _object(
        name={"type": "string"},
        versions={"type": "array", "items": {"type": "string"}},
        platform={"type": "string"},
        inputs={"type": "array"},
        outputs={"type": "array"},
    )
    admin_responses: dict[str, Any] = {
        "200": _json({"type": "object"}),
        "401": _ERROR,
        "404": _ERROR,
    }
    admin: dict[str, Any] = {"security": [{"bearer": []}], "responses": admin_responses}
    versioned = "/v2/models/{model}/versions/{version}"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "shipyard model server",
            "version": __version__,
            "description": "Open Inference Protocol v2 and v1 JSON. Models served: "
            + ", ".join(models),
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v2/health/live": _get("Server liveness", _object(live={"type": "boolean"})),
            "/v2/health/ready": _get("Server readiness", _object(ready={"type": "boolean"})),
            "/v2": _get("Server metadata", _object(name={"type": "string"})),
            "/v2/": _get("Server metadata", _object(name={"type": "string"})),
            "/v2/models/{model}/ready": _get(
                "Model readiness", _object(name={"type": "string"}), model
            ),
            f"{versioned}/ready": _get(
                "Model version readiness", _object(name={"type": "string"}), model, version
            ),
            "/v2/models/{model}": _get("Model metadata", metadata, model),
            versioned: _get("Model version metadata", metadata, model, version),
            "/v2/models/{model}/infer": _post(
                "Inference (OIP v2)", _INFER_REQUEST, _INFER_RESPONSE, model
            ),
            f"{versioned}/infer": _post(
                "Inference on a version (OIP v2)",
                _INFER_REQUEST,
                _INFER_RESPONSE,
                model,
                version,
            ),
            "/v1/models/{target}": _post(
                "Prediction, v1 JSON form (target is NAME:predict)",
                _V1_REQUEST,
                _V1_RESPONSE,
                target,
            ),
            "/v1/features/online": _post(
                "Online feature values with a status per value",
                _ONLINE_REQUEST,
                _ONLINE_RESPONSE,
            ),
            "/v1/feedback": _secured(
                _post("Outcomes (labels) of served predictions", _FEEDBACK_REQUEST, _object())
            ),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "exposition text"}},
                }
            },
            "/admin/reload": {"post": {"summary": "Re-resolve aliases now", **admin}},
            "/admin/status": {"get": {"summary": "Deployments and versions served", **admin}},
            "/admin/deployments/{model}/strategy": {
                "get": {
                    "summary": "A deployment's strategy and split",
                    "parameters": [model],
                    **admin,
                },
                "put": {
                    "summary": "Set a deployment's strategy (audit-logged)",
                    "parameters": [model],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _STRATEGY_REQUEST}},
                    },
                    **admin,
                    "responses": {**admin_responses, "400": _ERROR, "409": _ERROR},
                },
            },
            "/admin/deployments/{model}/switch": {
                "post": {
                    "summary": "Blue-green: switch the live colour",
                    "parameters": [model],
                    **admin,
                }
            },
            "/admin/deployments/{model}/history": {
                "get": {
                    "summary": "A deployment's strategy changes",
                    "parameters": [model],
                    **admin,
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": _json({"type": "object"})}}
            },
        },
    }
