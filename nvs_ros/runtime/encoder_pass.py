"""The registration's encoder pass (core.registration.EncoderPass) on a runtime backend: images
in, the engine's own hypothesis dataclass out, whichever backend ran it."""

from torch import Tensor

from nvs_ros.core.diffusion import GenerativeLifting
from nvs_ros.core.forward_poses import ForwardHypotheses
from nvs_ros.core.pose_encoder import PoseHypotheses
from nvs_ros.runtime.backend import InferenceBackend, RuntimeConfig
from nvs_ros.runtime.graph import encoder_graph, hypothesis_type
from nvs_ros.runtime.selection import open_backend


class BackendEncoderPass:
    """Callable as `GenerativeLifting.predict`: images (B, 3, S, S) in [0, 1] -> hypotheses."""

    def __init__(self, backend: InferenceBackend, kind: type) -> None:
        self.backend = backend
        self._kind = kind

    def __call__(self, images_B3SS: Tensor) -> PoseHypotheses | ForwardHypotheses:
        return self._kind(**self.backend.infer({"images": images_B3SS.contiguous()}))

    @property
    def description(self) -> str:
        """"onnxruntime (CPUExecutionProvider)": what /diagnostics and logs report."""
        return f"{self.backend.name} ({self.backend.detail})"


def encoder_pass(engine: GenerativeLifting, config: RuntimeConfig) -> BackendEncoderPass:
    """The engine's encoder pass on the backend `config` chooses (runtime.selection)."""
    return BackendEncoderPass(open_backend(encoder_graph(engine), config), hypothesis_type(engine))
