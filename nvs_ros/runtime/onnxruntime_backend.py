"""The ONNX Runtime backend: an InferenceSession on the exported graph, with the best execution
provider installed for the device (TensorRT, then CUDA, on "cuda"; the CPU provider always last,
so that an operator a GPU provider lacks still runs)."""

import logging

import numpy as np
import torch
from torch import Tensor

from nvs_ros.runtime import _optional
from nvs_ros.runtime.backend import BackendUnavailable, RuntimeConfig
from nvs_ros.runtime.graph import GraphSpec

_log = logging.getLogger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def providers_for(config: RuntimeConfig) -> list[str | tuple[str, dict]]:
    """Execution providers, best first, among those this onnxruntime build has."""
    available = _optional.onnxruntime().get_available_providers()
    chosen: list[str | tuple[str, dict]] = []
    if config.device.startswith("cuda"):
        if "TensorrtExecutionProvider" in available:
            # Isaac-ROS-like settings: the provider keeps its own engine cache
            chosen.append(("TensorrtExecutionProvider", {
                "trt_fp16_enable": config.enable_fp16, "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(config.cache_dir / "onnxruntime"),
                "trt_max_workspace_size": config.max_workspace_size}))
        if "CUDAExecutionProvider" in available:
            chosen.append("CUDAExecutionProvider")
    chosen.append("CPUExecutionProvider")
    return chosen


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, model: bytes, spec: GraphSpec, config: RuntimeConfig) -> None:
        ort = _optional.onnxruntime()
        options = ort.SessionOptions()
        if config.threads:
            options.intra_op_num_threads = config.threads
        providers = providers_for(config)
        if "TensorrtExecutionProvider" in str(providers):
            (config.cache_dir / "onnxruntime").mkdir(parents=True, exist_ok=True)
        try:
            self._session = ort.InferenceSession(model, options, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            raise BackendUnavailable(f"onnxruntime cannot load the {spec.name} graph: {err}") from err
        self._spec = spec
        self.detail = ", ".join(self._session.get_providers())

    def infer(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        device = next(iter(inputs.values())).device
        feeds = {t.name: np.ascontiguousarray(inputs[t.name].detach().to("cpu", torch.float32).numpy())
                 for t in self._spec.inputs}
        outputs = self._session.run([t.name for t in self._spec.outputs], feeds)
        return {t.name: torch.from_numpy(out).to(device) for t, out in zip(self._spec.outputs, outputs)}
