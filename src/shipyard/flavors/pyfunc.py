"""Python models: a user's class with ``load_context(context)`` and ``predict(context, data)``.

Nothing is pickled. Saving copies the source file of the model's class (and any ``code_paths``)
into ``code/`` and the ``artifacts`` into ``artifacts/``. Loading imports the packaged file,
creates the class with no arguments and calls ``load_context`` with the artifacts' local paths,
so every piece of state the model needs must come from its artifacts, not from ``__init__``
arguments. The class's module must import on its own: it is loaded as a top-level module (no
relative imports), and its top-level code runs on every load.

``predict`` receives a pandas DataFrame for a columnar signature, or the NumPy array for a
tensor signature; whatever it returns is answered as a NumPy array.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import re
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from shipyard.core.signature import Batch
from shipyard.errors import InvalidInput

CODE_DIR = "code"
ARTIFACTS_DIR = "artifacts"

_ARTIFACT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_IMPORT_LOCK = threading.Lock()  # sys.path, sys.modules and the bytecode flag change together


@dataclass(frozen=True)
class PythonModelPackage:
    """A Python model with the files it needs: ``artifacts`` (name → file or folder), handed to
    ``load_context`` as ``context.artifacts``, and ``code_paths`` (modules or packages) that the
    model's module imports."""

    model: Any
    artifacts: dict[str, str | Path] = field(default_factory=dict)
    code_paths: list[Path] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PythonModelContext:
    """What ``load_context`` and ``predict`` receive: local paths of the model's artifacts."""

    artifacts: dict[str, Path]


@dataclass(frozen=True, slots=True)
class LoadedPythonModel:
    model: Any
    context: PythonModelContext


def is_python_model(model: Any) -> bool:
    """Whether ``model`` is a :class:`PythonModelPackage` or has the Python-model methods."""
    return isinstance(model, PythonModelPackage) or (
        callable(getattr(model, "load_context", None)) and callable(getattr(model, "predict", None))
    )


class PythonModelFlavor:
    name = "pyfunc"

    def save(self, model: Any, path: Path, example: Batch) -> dict[str, Any]:
        package = model if isinstance(model, PythonModelPackage) else PythonModelPackage(model)
        cls = type(package.model)
        if not is_python_model(package.model):
            raise InvalidInput(
                f"a Python model needs methods load_context(context) and predict(context, data); "
                f"{cls.__qualname__} lacks them",
                field="model",
            )
        try:
            source = inspect.getsourcefile(cls)
        except TypeError:
            source = None
        if source is None or not Path(source).is_file():
            raise InvalidInput(
                f"the source file of class {cls.__qualname__} cannot be found; define it in a "
                ".py module (not a notebook cell or the interpreter)",
                field="model",
            )
        if "<locals>" in cls.__qualname__:
            raise InvalidInput(
                f"class {cls.__qualname__} is defined inside a function; define it at the top "
                "level of its module so that it can be imported",
                field="model",
            )
        module_file = Path(source).resolve()
        code = path / CODE_DIR
        code.mkdir()
        shutil.copyfile(module_file, code / module_file.name)
        for extra in package.code_paths:
            if Path(extra).resolve() != module_file:
                _copy_into(Path(extra), code, what="code path")
        artifacts = {}
        for name, value in package.artifacts.items():
            if not _ARTIFACT_NAME.fullmatch(name):
                raise InvalidInput(
                    f"artifact name {name!r} must be letters, digits, '_', '.' or '-'",
                    field="artifacts",
                )
            folder = path / ARTIFACTS_DIR / name
            folder.mkdir(parents=True)
            copied = _copy_into(Path(value), folder, what=f"artifact {name!r}")
            artifacts[name] = copied.relative_to(path).as_posix()
        return {
            "module": module_file.stem,
            "qualname": cls.__qualname__,
            "artifacts": artifacts,
        }

    def load(self, path: Path, options: dict[str, Any]) -> LoadedPythonModel:
        module = _import_packaged(path / CODE_DIR, str(options["module"]))
        target: Any = module
        for part in str(options["qualname"]).split("."):
            target = getattr(target, part)
        model = target()
        context = PythonModelContext(
            {str(name): path / rel for name, rel in dict(options["artifacts"]).items()}
        )
        model.load_context(context)
        return LoadedPythonModel(model, context)

    def predict(self, model: LoadedPythonModel, batch: Batch) -> np.ndarray[Any, Any]:
        data: Any = batch.frame() if batch.columns is not None else batch.tensor
        return np.asarray(model.model.predict(model.context, data))


def _copy_into(source: Path, folder: Path, *, what: str) -> Path:
    """Copy a file or folder (without bytecode caches) into ``folder``; return the copy."""
    target = folder / source.name
    if target.exists():
        raise InvalidInput(
            f"{what} {source} clashes with another file named {source.name}", field="model"
        )
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    elif source.is_file():
        shutil.copyfile(source, target)
    else:
        raise InvalidInput(f"{what} {source} is not an existing file or folder", field="model")
    return target


def _import_packaged(code: Path, name: str) -> ModuleType:
    """Import ``code/<name>.py``: as ``name`` unless another file already holds that name, in
    which case under a name unique to the file's contents. ``code`` joins the end of sys.path so
    that the module finds its ``code_paths``; no bytecode is written into the model folder."""
    file = code / f"{name}.py"
    with _IMPORT_LOCK:
        if str(code) not in sys.path:
            sys.path.append(str(code))
        existing = sys.modules.get(name)
        if existing is not None:
            loaded_from = getattr(existing, "__file__", None)
            if loaded_from is not None and Path(loaded_from).resolve() == file.resolve():
                return existing
            digest = hashlib.sha256(file.read_bytes()).hexdigest()[:16]
            name = f"{name}__shipyard_{digest}"
            if name in sys.modules:
                return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise InvalidInput(f"cannot import the model's module from {file}", field="model")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        writes_bytecode = sys.dont_write_bytecode
        sys.dont_write_bytecode = True
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        finally:
            sys.dont_write_bytecode = writes_bytecode
        return module
