"""Model → ONNX, with the converters each library's community keeps.

scikit-learn estimators and Pipelines go through skl2onnx, LightGBM and XGBoost boosters through
onnxmltools, PyTorch modules through ``torch.onnx.export`` (the ``torch.export``-based exporter,
which needs onnxscript). Every converted model takes one tensor named ``input`` whose first axis is
rows — for a columnar signature, the numeric columns as one ``[None, n_columns]`` matrix in
signature order, which is what the ONNX flavor feeds a one-input model — and gives one output:
the probabilities of a classifier (no ZipMap), the values of a regressor. That output is fitted
to the source model's own answer on the example: a trailing axis of one is dropped, a binary
classifier answering ``P(1)`` alone keeps the second probability column, a float32 output is cast
to the source's float64, so the ONNX version's signature says what the source's says.

String and datetime columns are refused, naming them: encode them as numbers inside the model's
input, or keep that version in its own flavor.

Precision: tree ensembles are converted to float32 (ONNX Runtime's tree kernels compare and sum in
float32: about 1e-7 on probabilities, about 1e-7 *relative* on regression values); scikit-learn
models other than trees can be converted to float64. A torch module keeps its own dtype. A float64
input lying above a split threshold by less than float32 rounding (t < x, float32(x) ==
float32(t)) goes the other way in a float32 tree: scikit-learn and LightGBM thresholds are float64,
XGBoost's are float32 like its inputs. Random rows almost never land there; rows built to sit one
float64 step above each threshold flip about half the splits (up to 0.3 in probability).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from shipyard.core.signature import Batch, Signature, TensorSpec
from shipyard.errors import InvalidInput, MissingDependency, require_package

INPUT_NAME = "input"
PRECISIONS = ("float32", "float64")
TORCH_DTYPES = ("float16", "float32", "float64")
_DEFAULT_OPSET = 15  # for the nodes fitting the output, when a graph imports no default domain
_MAX_MESSAGE = 300


def check_convertible(signature: Signature) -> None:
    """Refuse inputs that cannot become one numeric tensor: string and datetime columns."""
    if isinstance(signature.inputs, TensorSpec):
        if signature.inputs.dtype == "string" or signature.inputs.dtype.startswith("datetime"):
            raise InvalidInput(
                f"cannot convert to ONNX: the input tensor is {signature.inputs.dtype}; "
                "ONNX conversion takes numeric input only",
                field="input",
            )
        return
    refused = [c for c in signature.inputs if c.dtype == "string" or c.dtype.startswith("datetime")]
    if refused:
        listed = ", ".join(f"{c.name} ({c.dtype})" for c in refused)
        raise InvalidInput(
            f"cannot convert to ONNX: column(s) {listed} are not numeric; the converted model "
            "takes one float tensor of numeric columns, so encode those columns as numbers "
            "before the model (or keep this version in its own flavor)",
            field=refused[0].name,
        )


def sklearn_to_onnx(
    model: Any, example: Batch, expected: np.ndarray[Any, Any], *, precision: str | None = None
) -> bytes:
    """A scikit-learn estimator or Pipeline as ONNX, its input in ``precision`` (float32 by
    default; ONNX Runtime runs tree ensembles in float32 only)."""
    skl2onnx = require_package("skl2onnx", "onnx")
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    precision = _precision(precision, allowed=PRECISIONS, what="a scikit-learn model")
    x = _features(example, precision)
    tensor_type = FloatTensorType if precision == "float32" else DoubleTensorType
    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    with _converting(type(model).__name__):
        proto = skl2onnx.convert_sklearn(
            model,
            initial_types=[(INPUT_NAME, tensor_type([None, x.shape[1]]))],
            options=options,
            custom_conversion_functions=_int_attribute_converters(),
        )
    return fit_output(proto, x, expected)


def lightgbm_to_onnx(
    booster: Any, example: Batch, expected: np.ndarray[Any, Any], *, precision: str | None = None
) -> bytes:
    """A LightGBM booster as ONNX (float32 input: the only precision its converter writes)."""
    onnxmltools = require_package("onnxmltools", "onnx")
    tensor_types = require_package("onnxmltools.convert.common.data_types", "onnx")

    _precision(precision, allowed=("float32",), what="a LightGBM model")
    x = _features(example, "float32")
    with _converting("LightGBM booster"):
        proto = onnxmltools.convert_lightgbm(
            booster,
            initial_types=[(INPUT_NAME, tensor_types.FloatTensorType([None, x.shape[1]]))],
            zipmap=False,
        )
    return fit_output(proto, x, expected)


def xgboost_to_onnx(
    booster: Any,
    example: Batch,
    expected: np.ndarray[Any, Any],
    *,
    iteration_range: tuple[int, int] = (0, 0),
    softmax: bool = False,
    missing: float = math.nan,
    precision: str | None = None,
) -> bytes:
    """An XGBoost booster as ONNX (float32 input, as XGBoost itself computes): only the trees
    in ``iteration_range`` ((0, 0): all), and for ``multi:softmax`` the class probabilities
    (``multi:softprob``), as the XGBoost flavor answers."""
    onnxmltools = require_package("onnxmltools", "onnx")
    tensor_types = require_package("onnxmltools.convert.common.data_types", "onnx")

    _precision(precision, allowed=("float32",), what="an XGBoost model")

    if not math.isnan(missing):
        raise InvalidInput(
            f"cannot convert an XGBoost model whose missing value is {missing}: ONNX tree "
            "ensembles treat only NaN as missing",
            field="model",
        )
    start, stop = iteration_range
    if (start, stop) != (0, 0):
        booster = booster[start:stop]
    if softmax:  # the flavor answers softmax over margins, which is what softprob computes
        booster = booster.copy()
        booster.set_param({"objective": "multi:softprob"})
    x = _features(example, "float32")
    with _converting("XGBoost booster"):
        proto = onnxmltools.convert_xgboost(
            booster, initial_types=[(INPUT_NAME, tensor_types.FloatTensorType([None, x.shape[1]]))]
        )
    return fit_output(proto, x, expected)


def torch_to_onnx(
    module: Any,
    example: Batch,
    expected: np.ndarray[Any, Any],
    *,
    dtype: str,
    precision: str | None = None,
) -> bytes:
    """A torch module taking one tensor of ``dtype`` as ONNX, with a dynamic batch axis; the
    ONNX model keeps the module's dtype."""
    torch = require_package("torch", "torch")
    require_package("torch.export", "torch")
    require_package("onnxscript", "onnx")  # torch.onnx.export's exporter is built on it
    if dtype not in TORCH_DTYPES:
        raise InvalidInput(
            f"cannot convert a torch model taking {dtype}; convertible dtypes: "
            f"{', '.join(TORCH_DTYPES)}",
            field="model",
        )
    _precision(precision, allowed=(dtype,), what=f"this torch model (its parameters are {dtype})")
    x = example.matrix(dtype) if example.tensor is None else np.array(example.tensor, dtype=dtype)
    sample = torch.from_numpy(x[:16] if len(x) > 1 else np.concatenate((x, x)))
    with _converting("torch module"), warnings.catch_warnings():
        # A module loaded from a torch.export program has no eval(); its graph was captured in
        # eval mode when the version was saved, so the exporter's training-mode warning is moot.
        warnings.filterwarnings("ignore", "Exporting a model while it is in training mode")
        program = torch.onnx.export(
            module,
            (sample,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=["output"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    return fit_output(program.model_proto, x, expected)


def fit_output(model: Any, x: np.ndarray[Any, Any], expected: np.ndarray[Any, Any]) -> bytes:
    """``model`` (an ``onnx.ModelProto``) reduced to the one output that answers like the
    source model did on ``x`` (``expected``), reshaped and cast to match it; serialized."""
    helper = require_package("onnx.helper", "onnx")
    numpy_helper = require_package("onnx.numpy_helper", "onnx")
    want = np.asarray(expected)
    names = [o.name for o in model.graph.output]
    if want.dtype.kind in "iub":  # the source answers labels
        name = next((n for n in names if "label" in n.lower()), names[0])
    else:
        name = next((n for n in names if "prob" in n.lower()), names[0])
    got = _run(model.SerializeToString(), x, name)
    nodes: list[Any] = []
    current = name
    if got.shape != want.shape:
        if want.ndim == 1 and got.ndim == 2 and got.shape[1] == 1:
            shape = numpy_helper.from_array(np.array([-1], dtype=np.int64), "fit_shape")
            model.graph.initializer.append(shape)
            nodes.append(helper.make_node("Reshape", [current, "fit_shape"], ["fit_flat"]))
            current = "fit_flat"
        elif want.ndim == 1 and got.ndim == 2 and got.shape[1] == 2 and "prob" in name.lower():
            index = numpy_helper.from_array(np.array(1, dtype=np.int64), "fit_index")
            model.graph.initializer.append(index)
            nodes.append(helper.make_node("Gather", [current, "fit_index"], ["fit_p1"], axis=1))
            current = "fit_p1"
        else:
            raise InvalidInput(
                f"the converted model answers with shape {got.shape[1:]} per row where the "
                f"source answers {want.shape[1:]}; cannot convert this model",
                field="model",
            )
    elem_type = helper.np_dtype_to_tensor_dtype(got.dtype)
    if got.dtype != want.dtype and got.dtype.kind == "f" and want.dtype.kind == "f":
        elem_type = helper.np_dtype_to_tensor_dtype(want.dtype)
        nodes.append(helper.make_node("Cast", [current], ["fit_cast"], to=elem_type))
        current = "fit_cast"
    if nodes:  # the fitted tensor takes the converter's output name, which gets a suffix
        current = _rename_tensor(model.graph, name, f"{name}_unfitted")
        nodes[0].input[0] = current
        nodes[-1].output[0] = current = name
        model.graph.node.extend(nodes)
        if not any(o.domain in ("", "ai.onnx") for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid("", _DEFAULT_OPSET))
    output = helper.make_tensor_value_info(current, elem_type, [None, *want.shape[1:]])
    del model.graph.output[:]
    model.graph.output.append(output)
    return bytes(model.SerializeToString())


def _rename_tensor(graph: Any, old: str, new: str) -> str:
    """Rename the tensor ``old`` wherever the graph's nodes produce or consume it."""
    for node in graph.node:
        for names in (node.input, node.output):
            for i, name in enumerate(names):
                if name == old:
                    names[i] = new
    return new


def _precision(precision: str | None, *, allowed: tuple[str, ...], what: str) -> str:
    """The precision asked for, or the first allowed one; refused when not allowed."""
    if precision is None:
        return allowed[0]
    if precision not in allowed:
        raise InvalidInput(
            f"precision {precision!r} is not available for {what}; choose {' or '.join(allowed)}",
            field="precision",
        )
    return precision


def _features(example: Batch, precision: str) -> np.ndarray[Any, Any]:
    """The example as the 2-D matrix a tree or scikit-learn model's ONNX input takes."""
    if example.tensor is not None and example.tensor.ndim != 2:
        raise InvalidInput(
            f"cannot convert a model taking a tensor of shape {example.tensor.shape[1:]} per "
            "row; this converter takes one row of features per input row",
            field="input",
        )
    return example.matrix(np.dtype(precision))


def _run(model: bytes, x: np.ndarray[Any, Any], output: str) -> np.ndarray[Any, Any]:
    ort = require_package("onnxruntime", "onnx")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: converters declare label shapes loosely
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return np.asarray(session.run([output], {INPUT_NAME: x})[0])
    except Exception as exc:  # ONNX Runtime raises its own exception types
        raise InvalidInput(
            f"ONNX Runtime cannot run the converted model: {_short(exc)}", field="model"
        ) from exc


@contextmanager
def _converting(what: str) -> Iterator[None]:
    """Converter failures as one clear error; the converters' own deprecation chatter hidden."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    except (InvalidInput, MissingDependency):
        raise
    except Exception as exc:  # converters raise many types; the message says what failed
        raise InvalidInput(
            f"cannot convert the {what} to ONNX: {_short(exc)}", field="model"
        ) from exc


def _short(exc: Exception) -> str:
    """An exception's first line, cut to a readable length (converters dump whole graphs)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _int_attribute_converters() -> dict[type, Any]:
    """skl2onnx's HistGradientBoosting converters, made to pass booleans as ints.

    skl2onnx (1.20) writes a Python ``False`` into an ONNX integer attribute for every leaf of a
    HistGradientBoosting tree, which protobuf 7.34 and later rejects ("Expected an int, got a
    boolean"). The original converter runs unchanged; only the attributes it writes are cast.
    """
    from skl2onnx import get_model_alias
    from skl2onnx.common._registration import get_converter
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    def wrapped(model_type: type) -> Any:
        original = get_converter(get_model_alias(model_type))

        def convert(scope: Any, operator: Any, container: Any) -> Any:
            return original(scope, operator, _IntAttributes(container))

        return convert

    return {t: wrapped(t) for t in (HistGradientBoostingClassifier, HistGradientBoostingRegressor)}


class _IntAttributes:
    """A skl2onnx container whose ``add_node`` writes boolean attributes as ints."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, *args: Any, **attributes: Any) -> Any:
        return self._container.add_node(*args, **{k: _no_bools(v) for k, v in attributes.items()})


def _no_bools(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, list):
        return [int(v) if isinstance(v, bool | np.bool_) else v for v in value]
    return value
