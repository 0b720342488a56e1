"""ONNX models, served by an ONNX Runtime session on the CPU with one thread per session.

Accepts an ``onnx.ModelProto``, the serialized model as ``bytes``, or the path of a ``.onnx``
file (a model whose weights live in external data files is not supported). The answer is the
first tensor output whose name contains ``prob`` (classifiers converted by skl2onnx with
``options={"zipmap": False}``), else the first output. A model with one input gets the whole
batch as one array of that input's type; a model with several inputs gets one ``(rows, 1)``
column per input, matched by name to the signature's columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.core.signature import Batch
from shipyard.errors import InvalidInput, require_package

MODEL_FILE = "model.onnx"

_NUMPY_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint64)": "uint64",
    "tensor(uint32)": "uint32",
    "tensor(uint16)": "uint16",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


@dataclass(frozen=True, slots=True)
class LoadedSession:
    session: Any  # onnxruntime.InferenceSession
    inputs: tuple[tuple[str, np.dtype[Any]], ...]  # (name, NumPy dtype) per model input
    output: str


class ONNXFlavor:
    name = "onnx"

    def save(self, model: Any, path: Path, example: Batch) -> dict[str, Any]:
        (path / MODEL_FILE).write_bytes(_model_bytes(model))
        session = _session(path / MODEL_FILE)
        inputs = []
        for arg in session.get_inputs():
            if arg.type not in _NUMPY_TYPES:
                raise InvalidInput(
                    f"ONNX input {arg.name!r} has type {arg.type}; supported input types: "
                    f"{', '.join(_NUMPY_TYPES)}",
                    field="model",
                )
            inputs.append({"name": arg.name, "type": arg.type})
        tensors = [o.name for o in session.get_outputs() if o.type.startswith("tensor(")]
        if not tensors:
            raise InvalidInput("the ONNX model has no tensor output", field="model")
        output = next((name for name in tensors if "prob" in name.lower()), tensors[0])
        return {"inputs": inputs, "output": output}

    def load(self, path: Path, options: dict[str, Any]) -> LoadedSession:
        inputs = tuple(
            (str(i["name"]), np.dtype(_NUMPY_TYPES[str(i["type"])])) for i in options["inputs"]
        )
        return LoadedSession(_session(path / MODEL_FILE), inputs, str(options["output"]))

    def predict(self, model: LoadedSession, batch: Batch) -> np.ndarray[Any, Any]:
        feed: dict[str, np.ndarray[Any, Any]]
        if len(model.inputs) == 1:
            name, dtype = model.inputs[0]
            table = batch.table
            if table is not None:  # Batch.matrix(dtype), one call fewer
                feed = {name: table if table.dtype is dtype else table.astype(dtype)}
            elif batch.tensor is not None:
                feed = {name: np.ascontiguousarray(batch.tensor, dtype=dtype)}
            else:
                feed = {name: batch.matrix(dtype)}
        else:
            if batch.columns is None:
                raise InvalidInput(
                    f"this ONNX model takes {len(model.inputs)} named inputs "
                    f"({', '.join(n for n, _ in model.inputs)}); pass named columns",
                    field="input",
                )
            missing = [n for n, _ in model.inputs if n not in batch.columns]
            if missing:
                raise InvalidInput(
                    f"the ONNX model's input(s) {', '.join(missing)} match no column; "
                    f"columns: {', '.join(batch.columns)}",
                    field=missing[0],
                )
            feed = {
                n: np.asarray(batch.columns[n], dtype=dtype).reshape(-1, 1)
                for n, dtype in model.inputs
            }
        return np.asarray(model.session.run([model.output], feed)[0])


def _model_bytes(model: Any) -> bytes:
    if isinstance(model, bytes):
        return model
    if isinstance(model, str | Path):
        file = Path(model)
        if file.suffix != ".onnx" or not file.is_file():
            raise InvalidInput(f"{file} is not an existing .onnx file", field="model")
        return file.read_bytes()
    if hasattr(model, "SerializeToString"):
        return bytes(model.SerializeToString())
    raise InvalidInput(
        f"an ONNX model must be an onnx.ModelProto, bytes or a .onnx path, "
        f"got {type(model).__name__}",
        field="model",
    )


def _session(file: Path) -> Any:
    ort = require_package("onnxruntime", "onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
