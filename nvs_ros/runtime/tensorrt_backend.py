"""The TensorRT backend (TensorRT 10 Python API): the exported ONNX graph parsed by the ONNX
parser, built into a serialized engine (`build_serialized_network`, FP16 allowed when
`enable_fp16`, one optimisation profile spanning batch 1 .. `max_batch`), cached
(runtime.engine_cache), and run by `execute_async_v3` on torch CUDA tensors whose addresses are
bound with `set_tensor_address`, on torch's current stream.

Inputs and outputs stay float32 (FP16 is a builder permission for inner layers, as Isaac ROS's
`enable_fp16`). tensorrt cannot be installed on the machines this was written on: this path
follows the API's documentation and its test skips where tensorrt or a GPU is absent.
"""

import logging

import torch
from torch import Tensor

from nvs_ros.runtime import _optional
from nvs_ros.runtime.backend import BackendUnavailable, RuntimeConfig
from nvs_ros.runtime.engine_cache import EngineKey, cached_engine
from nvs_ros.runtime.graph import GraphSpec, onnx_hash

_log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int32": torch.int32, "int64": torch.int64}


def profile_shapes(spec: GraphSpec, max_batch: int) -> tuple[tuple[str, tuple[int, ...], tuple[int, ...],
                                                                      tuple[int, ...]], ...]:
    """(name, min, opt, max) per input: the dynamic first dimension from 1 to max_batch, tuned for 1
    (a camera's frames come one at a time)."""
    return tuple((t.name, (1, *t.shape[1:]), (1, *t.shape[1:]), (max_batch, *t.shape[1:])) for t in spec.inputs)


def engine_key(model: bytes, spec: GraphSpec, config: RuntimeConfig, tensorrt_version: str,
               compute_capability: tuple[int, int]) -> EngineKey:
    return EngineKey(graph=spec.name, onnx_sha256=onnx_hash(model), tensorrt_version=tensorrt_version,
                     compute_capability=f"{compute_capability[0]}.{compute_capability[1]}",
                     precision="fp16" if config.enable_fp16 else "fp32",
                     input_shapes=profile_shapes(spec, config.max_batch))


def build_engine(model: bytes, spec: GraphSpec, config: RuntimeConfig) -> bytes:
    """A serialized TensorRT engine of the ONNX model (BackendUnavailable where the parser or the
    builder refuses it: the message holds TensorRT's errors, e.g. an unsupported operator)."""
    trt = _optional.tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendUnavailable(f"TensorRT's ONNX parser refuses the {spec.name} graph: {errors}")
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.max_workspace_size)
    if config.enable_fp16:
        builder_config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, low, opt, high in profile_shapes(spec, config.max_batch):
        profile.set_shape(name, low, opt, high)
    builder_config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise BackendUnavailable(f"TensorRT could not build the {spec.name} engine (see its log above)")
    return bytes(serialized)


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, model: bytes, spec: GraphSpec, config: RuntimeConfig) -> None:
        trt = _optional.tensorrt()
        if not torch.cuda.is_available() or not config.device.startswith("cuda"):
            raise BackendUnavailable(f"TensorRT needs a CUDA device (device is {config.device!r}, "
                                     f"torch sees {torch.cuda.device_count()} GPU(s))")
        self._device = torch.device(config.device)
        capability = torch.cuda.get_device_capability(self._device)
        key = engine_key(model, spec, config, trt.__version__, capability)
        engine_bytes = cached_engine(config.cache_dir, key, lambda: build_engine(model, spec, config),
                                     config.force_engine_update)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise BackendUnavailable(f"TensorRT cannot load the cached {spec.name} engine "
                                     f"{config.cache_dir / key.file_name()} (set force_engine_update)")
        self._context = self._engine.create_execution_context()
        self._spec = spec
        self.detail = f"{key.precision} on {torch.cuda.get_device_name(self._device)}"

    def infer(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        device = next(iter(inputs.values())).device
        bound = {}  # kept alive until the stream has run
        for t in self._spec.inputs:
            x = inputs[t.name].detach().to(self._device, _DTYPES[t.dtype]).contiguous()
            self._context.set_input_shape(t.name, tuple(x.shape))
            self._context.set_tensor_address(t.name, x.data_ptr())
            bound[t.name] = x
        outputs = {}
        for t in self._spec.outputs:
            shape = tuple(self._context.get_tensor_shape(t.name))
            out = torch.empty(shape, dtype=_DTYPES[t.dtype], device=self._device)
            self._context.set_tensor_address(t.name, out.data_ptr())
            outputs[t.name] = out
        stream = torch.cuda.current_stream(self._device)
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to run the {self._spec.name} engine")
        stream.synchronize()
        return {name: out.to(device) for name, out in outputs.items()}
