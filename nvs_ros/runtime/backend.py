"""The protocol every inference backend follows, and the settings that choose and build them.

A backend runs one exported graph (runtime.graph.GraphSpec): named float32 tensors in, named
tensors out, on the device it was made for. Tensors are torch tensors on every backend (ONNX
Runtime's numpy arrays and TensorRT's device buffers are converted at its boundary), so a
caller never sees which backend ran.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from torch import Tensor

from nvs_ros.core.errors import NvsError

BackendName = Literal["auto", "torch", "onnxruntime", "tensorrt"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime", "tensorrt")


class BackendUnavailable(NvsError, RuntimeError):
    """A backend cannot run here (its library, a GPU or an operator is missing); the message says which."""


class InferenceBackend(Protocol):
    name: str
    """"torch", "onnxruntime" or "tensorrt"."""
    detail: str
    """Where it runs, for logs and /diagnostics ("cpu", "CPUExecutionProvider", "fp16 on NVIDIA ...")."""

    def infer(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Outputs by name for inputs by name (as the graph's spec names them)."""
        ...


@dataclass(frozen=True)
class RuntimeConfig:
    """Which backend runs inference, and how TensorRT engines are built (names as Isaac ROS's)."""

    backend: BackendName = "auto"
    """"auto": the fastest available here (runtime.selection); a named backend that cannot run is
    an error at start-up."""
    device: str = "cpu"
    """Torch device of the scene; CUDA backends and providers are considered only on "cuda"."""
    engine_cache_dir: Path = Path("~/.cache/nvs_ros/engines")
    """TensorRT engines are built once per (graph, TensorRT version, GPU, precision, shapes) and kept here."""
    enable_fp16: bool = True
    """Build TensorRT engines with FP16 kernels allowed (inputs and outputs stay float32)."""
    force_engine_update: bool = False
    """Rebuild TensorRT engines even when the cache holds one for the same key."""
    max_workspace_size: int = 1 << 30
    """TensorRT builder workspace limit [bytes]."""
    max_batch: int = 8
    """Largest batch a TensorRT engine accepts (its optimisation profile spans 1 .. max_batch)."""
    threads: int = 0
    """ONNX Runtime intra-op threads (0: its default, one per core)."""

    @property
    def cache_dir(self) -> Path:
        return Path(self.engine_cache_dir).expanduser()
