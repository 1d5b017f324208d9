"""The one place that imports the optional inference libraries (onnxruntime, tensorrt).

Imported lazily, on first use, so that importing nvs_ros never pays for them nor fails without
them; a missing library is a BackendUnavailable naming the import error.
"""

import importlib
from types import ModuleType

from nvs_ros.runtime.backend import BackendUnavailable

_modules: dict[str, ModuleType | ImportError] = {}


def _load(name: str) -> ModuleType:
    if name not in _modules:
        try:
            _modules[name] = importlib.import_module(name)
        except ImportError as err:  # an absent library, or one whose native part does not load
            _modules[name] = err
    found = _modules[name]
    if isinstance(found, ImportError):
        raise BackendUnavailable(f"{name} is not installed ({found})")
    return found


def onnxruntime() -> ModuleType:
    """The onnxruntime module; BackendUnavailable without it."""
    return _load("onnxruntime")


def tensorrt() -> ModuleType:
    """The tensorrt module (TensorRT 10 Python API); BackendUnavailable without it."""
    return _load("tensorrt")
