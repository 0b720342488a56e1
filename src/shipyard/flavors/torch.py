"""PyTorch modules, stored as a ``torch.export`` program: loading needs no class and no pickle.

The module is exported in eval mode on the input example, with a dynamic batch axis, so the
saved graph answers for any number of rows. Inputs are converted to the dtype of the module's
first floating parameter (float32 when it has none) and run under ``torch.inference_mode()``.
The model must take one tensor and return one tensor. Torch's global thread settings are left
as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.core.signature import Batch
from shipyard.errors import InvalidInput, require_package

MODEL_FILE = "model.pt2"
DEFAULT_DTYPE = "float32"
_NUMPY_FLOATS = ("float16", "float32", "float64")


def _torch() -> Any:
    """torch, with ``torch.export`` loaded (it is not imported by ``import torch``)."""
    require_package("torch.export", "torch")
    return require_package("torch", "torch")


@dataclass(frozen=True, slots=True)
class LoadedModule:
    module: Any  # the exported program as a callable module
    dtype: str  # torch dtype name of the input, e.g. "float32"


class TorchFlavor:
    name = "torch"

    def save(self, model: Any, path: Path, example: Batch) -> dict[str, Any]:
        torch = _torch()
        dtype = _input_dtype(model)
        sample = _as_tensor(torch, example, dtype)
        if sample.shape[0] == 1:  # a one-row example would pin the batch axis to 1
            sample = torch.cat((sample, sample))
        was_training = model.training
        model.eval()
        try:
            program = torch.export.export(
                model, (sample,), dynamic_shapes=({0: torch.export.Dim("batch")},)
            )
        finally:
            model.train(was_training)
        torch.export.save(program, str(path / MODEL_FILE))
        return {"dtype": dtype}

    def load(self, path: Path, options: dict[str, Any]) -> LoadedModule:
        module = _torch().export.load(str(path / MODEL_FILE)).module()
        return LoadedModule(module, str(options["dtype"]))

    def predict(self, model: LoadedModule, batch: Batch) -> np.ndarray[Any, Any]:
        torch = _torch()
        with torch.inference_mode():
            output = model.module(_as_tensor(torch, batch, model.dtype))
        if not isinstance(output, torch.Tensor):
            raise InvalidInput(
                f"a torch model must return one tensor, got {type(output).__name__}",
                field="model",
            )
        return np.asarray(output.detach().cpu().numpy())


def _as_tensor(torch: Any, batch: Batch, dtype: str) -> Any:
    """The batch as a tensor of ``dtype``: a tensor input keeps its shape, columns form a matrix."""
    values = [batch.tensor] if batch.tensor is not None else list((batch.columns or {}).values())
    if any(v.dtype.kind not in "fiub" for v in values):
        raise InvalidInput("a torch model needs numeric input", field="input")
    np_dtype = dtype if dtype in _NUMPY_FLOATS else "float32"  # bfloat16 has no NumPy dtype
    if batch.tensor is None:
        array = batch.matrix(np_dtype)
    else:
        array = batch.tensor.astype(np_dtype, copy=False)
        if not (array.flags.writeable and array.flags.c_contiguous):
            array = np.array(array, order="C")  # torch warns on read-only NumPy memory
    return torch.from_numpy(array).to(getattr(torch, dtype))


def _input_dtype(model: Any) -> str:
    """The dtype name of the model's first floating parameter, float32 when it has none."""
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return str(parameter.dtype).removeprefix("torch.")
    return DEFAULT_DTYPE
