"""Which backend runs a graph: the one named, or with "auto" the fastest available here.

"auto" tries, best first (measured, docs/runtime.md):
- on a CUDA device: TensorRT, then ONNX Runtime if it has a GPU provider, then torch on the GPU;
- on the CPU: ONNX Runtime (the encoder pass at batch 1 in 0.8 ms against torch's 2.0 ms, one
  thread of the 2-core development CPU), then torch.
A backend that cannot run here is one log line naming why, and the next is tried; torch always
runs. A backend named explicitly that cannot run raises BackendUnavailable: a configuration
asked for it, and silently running another would hide that.
"""

import logging
from collections.abc import Callable

from nvs_ros.runtime import _optional
from nvs_ros.runtime.backend import BackendUnavailable, InferenceBackend, RuntimeConfig
from nvs_ros.runtime.graph import Graph, export_onnx
from nvs_ros.runtime.onnxruntime_backend import GPU_PROVIDERS, OnnxRuntimeBackend
from nvs_ros.runtime.tensorrt_backend import TensorRTBackend
from nvs_ros.runtime.torch_backend import TorchBackend

_log = logging.getLogger(__name__)


def auto_order(config: RuntimeConfig) -> list[tuple[str, str]]:
    """(backend, why it comes at this place) for "auto", best first."""
    if config.device.startswith("cuda"):
        return [("tensorrt", "fastest on an NVIDIA GPU (fused FP16 kernels)"),
                ("onnxruntime", "a GPU execution provider where this onnxruntime has one"),
                ("torch", "torch on the GPU always runs")]
    return [("onnxruntime", "faster than torch on the CPU (encoder pass 0.8 vs 2.0 ms at batch 1)"),
            ("torch", "torch always runs")]


def open_backend(graph: Graph, config: RuntimeConfig) -> InferenceBackend:
    """A backend running `graph` as `config.backend` asks (module docstring)."""
    model: list[bytes] = []

    def onnx_model() -> bytes:  # exported once, only for a backend that needs it
        if not model:
            model.append(export_onnx(graph))
        return model[0]

    openers: dict[str, Callable[[], InferenceBackend]] = {
        "torch": lambda: TorchBackend(graph),
        "onnxruntime": lambda: _onnxruntime(onnx_model(), graph, config),
        "tensorrt": lambda: TensorRTBackend(onnx_model(), graph.spec, config)}
    if config.backend != "auto":
        backend = openers[config.backend]()
        _log.info("%s graph on %s (%s), as configured", graph.spec.name, backend.name, backend.detail)
        return backend
    for name, why in auto_order(config):
        try:
            backend = openers[name]()
        except BackendUnavailable as err:
            _log.info("auto: %s unavailable (%s); trying the next", name, err)
            continue
        _log.info("auto: %s graph on %s (%s): %s", graph.spec.name, name, backend.detail, why)
        return backend
    raise AssertionError("torch always runs")


def check_available(config: RuntimeConfig) -> None:
    """BackendUnavailable now, at start-up, where the backend named in `config` cannot run here
    (its library or a CUDA device is missing); "auto" and "torch" always pass."""
    import torch

    if config.backend == "onnxruntime":
        _optional.onnxruntime()
    elif config.backend == "tensorrt":
        _optional.tensorrt()
        if not (config.device.startswith("cuda") and torch.cuda.is_available()):
            raise BackendUnavailable(f"tensorrt needs a CUDA device; device is {config.device!r}")


def _onnxruntime(model: bytes, graph: Graph, config: RuntimeConfig) -> InferenceBackend:
    if config.device.startswith("cuda") and config.backend == "auto" \
            and not set(GPU_PROVIDERS) & set(_optional.onnxruntime().get_available_providers()):
        # on a GPU, ONNX Runtime on the CPU would be slower than torch on the GPU
        raise BackendUnavailable("this onnxruntime has no GPU execution provider (onnxruntime-gpu)")
    return OnnxRuntimeBackend(model, graph.spec, config)
