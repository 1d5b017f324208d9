"""nvs_node's parameters, declared once, with descriptions and ranges (the only reader), and
what they set in the app's and core's configs."""

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node

from nvs_ros.core.errors import InputError
from nvs_ros.core.keyframes import KeyframeConfig
from nvs_ros.core.live_scene_config import LiveSceneConfig
from nvs_ros.io.errors import OutputFolderError
from nvs_ros.io.output_folder import check_writable
from nvs_ros.runtime.backend import BACKENDS, BackendUnavailable, RuntimeConfig
from nvs_ros.runtime.selection import check_available


class ParameterError(InputError):
    """A parameter has a wrong type or value; the message names it and what is expected."""


def _param(default: Any, doc: str, range_: tuple[float, float] | None = None,
           choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"doc": doc, "range": range_, "choices": choices})


@dataclass(frozen=True)
class NodeConfig:
    image_topic: str = _param("/camera/image_raw", "Camera image topic (sensor_msgs/Image); with "
                              "image_transport 'compressed', <image_topic>/compressed is used")
    camera_info_topic: str = _param("/camera/camera_info", "sensor_msgs/CameraInfo of the camera")
    image_transport: str = _param("raw", "How images arrive", choices=("raw", "compressed"))
    reliable_qos: bool = _param(False, "Subscribe to images reliably (bag replay) instead of "
                                "best effort (sensor data); frames then wait in a queue "
                                "(image_queue_size) and none is lost while the node is busy")
    image_queue_size: int = _param(100, "With reliable_qos: frames received and not yet processed at most; "
                                   "when full, the oldest is dropped and counted "
                                   "(frames_dropped_queue_full on /diagnostics)", (1, 100000))
    fallback_fx: float = _param(0.0, "Focal length x [px] used while no CameraInfo has arrived; "
                                "0 disables the fallback", (0.0, 1e6))
    fallback_fy: float = _param(0.0, "Fallback focal length y [px]", (0.0, 1e6))
    fallback_cx: float = _param(0.0, "Fallback principal point x [px]", (0.0, 1e6))
    fallback_cy: float = _param(0.0, "Fallback principal point y [px]", (0.0, 1e6))
    working_max_side: int = _param(128, "Keyframes are kept with their longer side at most this [px]",
                                   (16, 4096))
    keyframe_capacity: int = _param(64, "Keyframes kept at most (the most redundant is evicted)", (2, 10000))
    keyframe_min_novelty: float = _param(0.3, "Change of a frame's thumbnail (1 - NCC, 0..2) against "
                                         "every keyframe that makes it a new keyframe", (0.0, 2.0))
    keyframe_min_untracked: float = _param(0.25, "Share of the most similar keyframe's corners that do not "
                                           "track into a frame (optical flow) that makes it a new viewpoint "
                                           "even when its thumbnail looks alike (a turn around an object on a "
                                           "plain background); 0 disables", (0.0, 1.0))
    diagnostics_period_s: float = _param(1.0, "Period of the status on /diagnostics [s]", (0.05, 60.0))
    map_frame: str = _param("map", "Frame of the reconstruction (poses, point cloud, path, frusta)")
    odom_frame: str = _param("odom", "Odometry frame: when TF connects it to the camera frame, the keyframes' "
                             "odometry poses fix frame and metric scale of the products, and the node "
                             "publishes map -> odom instead of map -> camera; empty: never")
    camera_frame: str = _param("", "Optical frame of the camera (z forward) published in TF; empty: "
                               "the images' header frame_id (camera_optical_frame if that is empty too)")
    min_keyframes: int = _param(8, "Keyframes needed before training starts", (2, 10000))
    idle_round_s: float = _param(10.0, "When no new keyframe has come for this long, training starts with the "
                                 "keyframes there are (3 or more) instead of waiting for min_keyframes: a short "
                                 "capture, a recording played once; 0: always wait [s]", (0.0, 86400.0))
    round_budget_s: float = _param(60.0, "Training time of one round; the point cloud and the view from the "
                                   "newest keyframe are published after each round [s]", (0.1, 86400.0))
    train_slice_s: float = _param(1.0, "The worker trains this long between serving requests (render, save, "
                                  "reset) and publishing poses [s]", (0.05, 60.0))
    initial_poses: str = _param("auto", "Where a round's poses start when the keyframes have no odometry: auto "
                                "(SIFT features chained over the keyframes, where they place at least half of "
                                "them), none (learnt from the images alone)", choices=("auto", "none"))
    device: str = _param("cpu", "Torch device of the scene (cpu, cuda, cuda:1, ...)")
    seed: int = _param(0, "Random seed of the scene", (0, 2**31 - 1))
    torch_threads: int = _param(0, "CPU threads torch may use (0: torch's default)", (0, 1024))
    keyframe_queue_size: int = _param(16, "Keyframes waiting for the worker at most; when it falls behind, "
                                      "the oldest is dropped and counted", (1, 10000))
    cloud_max_points: int = _param(20000, "Points of the published and saved point cloud at most",
                                   (100, 10_000_000))
    frustum_size: float = _param(0.1, "Depth of the keyframe frusta as a fraction of the camera "
                                 "trajectory's extent", (0.001, 10.0))
    tf_period_s: float = _param(1.0, "The latest pose is re-sent on /tf this often (stamped now); with "
                                "tracking, only while no newer pose comes [s]", (0.01, 60.0))
    track_rate_hz: float = _param(2.0, "The newest frame is posed in the trained scene (tracking) at most this "
                                  "often, by image stamps; accepted poses go out on ~/tracked_pose and /tf. "
                                  "0 disables tracking: /tf carries keyframe poses only [Hz]", (0.0, 100.0))
    inference_backend: str = _param("auto", "What runs the registration's encoder pass (tracking, new keyframes): "
                                    "auto picks the fastest available (TensorRT on a GPU, then ONNX Runtime, then "
                                    "torch) and logs why; a named one that cannot run stops the start; "
                                    "/diagnostics reports the one in use", choices=BACKENDS)
    engine_cache_dir: str = _param("~/.cache/nvs_ros/engines", "TensorRT engines are built once per (graph, "
                                   "TensorRT version, GPU, precision, shapes) and kept here")
    enable_fp16: bool = _param(True, "Build TensorRT engines with FP16 kernels allowed")
    force_engine_update: bool = _param(False, "Rebuild TensorRT engines even when the cache holds one")
    max_workspace_size: int = _param(1 << 30, "TensorRT builder workspace limit [bytes]", (1 << 20, 1 << 40))
    output_folder: str = _param("~/.ros/nvs_ros", "Where ~/save writes poses.json, poses_tum.txt, run.json, "
                                "cloud.ply and the scene checkpoint; checked at start-up: a folder the node "
                                "may write, or may create")

    @property
    def has_fallback_intrinsics(self) -> bool:
        return self.fallback_fx > 0 and self.fallback_fy > 0

    @property
    def output_path(self) -> Path:
        return Path(self.output_folder).expanduser()

    def live_scene_config(self) -> LiveSceneConfig:
        return LiveSceneConfig(min_keyframes=self.min_keyframes, round_budget_s=self.round_budget_s,
                               idle_round_s=self.idle_round_s or None, device=self.device, seed=self.seed,
                               max_keyframes=self.keyframe_capacity)

    def runtime_config(self) -> RuntimeConfig:
        return RuntimeConfig(backend=self.inference_backend, device=self.device,
                             engine_cache_dir=Path(self.engine_cache_dir), enable_fp16=self.enable_fp16,
                             force_engine_update=self.force_engine_update, max_workspace_size=self.max_workspace_size,
                             threads=self.torch_threads)

    def keyframe_config(self) -> KeyframeConfig:
        return KeyframeConfig(capacity=self.keyframe_capacity, min_novelty=self.keyframe_min_novelty,
                              min_untracked=self.keyframe_min_untracked, viewpoint_side=self.working_max_side)


DOC_BEGIN = "<!-- parameters: generated from nvs_ros/ros/params.py by `python -m nvs_ros.ros.params docs/ros2.md` -->"
DOC_END = "<!-- end of parameters -->"


def parameter_table() -> str:
    """The parameters as a markdown table (name, default, allowed values, meaning): what the
    node's descriptors say, so the documentation cannot drift from them."""
    rows = ["| parameter | default | allowed | meaning |", "|---|---|---|---|"]
    for spec in fields(NodeConfig):
        default = spec.default
        shown = "true" if default is True else "false" if default is False else default
        low_high, choices = spec.metadata["range"], spec.metadata["choices"]
        allowed = (" \\| ".join(choices) if choices else f"{low_high[0]:g} .. {low_high[1]:g}" if low_high
                   else "")
        rows.append(f"| `{spec.name}` | `{shown!s}` | {allowed} | {spec.metadata['doc']} |".replace("``", '`""`'))
    return "\n".join(rows)


def with_parameter_table(document: str) -> str:
    """`document` with the text between DOC_BEGIN and DOC_END replaced by `parameter_table()`."""
    head, begin, rest = document.partition(DOC_BEGIN)
    _, end, tail = rest.partition(DOC_END)
    if not begin or not end:
        raise ValueError(f"the document has no {DOC_BEGIN!r} ... {DOC_END!r} block")
    return f"{head}{DOC_BEGIN}\n{parameter_table()}\n{DOC_END}{tail}"


def _descriptor(metadata: dict) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=metadata["doc"], read_only=True)
    if metadata["range"] and isinstance(low_high := metadata["range"], tuple):
        low, high = low_high
        if isinstance(low, int) and isinstance(high, int):
            descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=1)]
        else:
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high))]
    if metadata["choices"]:
        descriptor.additional_constraints = f"one of: {', '.join(metadata['choices'])}"
    return descriptor


def declare_node_config(node: Node) -> NodeConfig:
    """Declare every parameter on `node` and return their values; ParameterError on bad input
    (a device torch cannot use and an output folder that cannot be written included)."""
    values = {}
    for spec in fields(NodeConfig):
        try:
            value = node.declare_parameter(spec.name, spec.default, _descriptor(spec.metadata)).value
        except InvalidParameterTypeException as err:
            raise ParameterError(f"parameter '{spec.name}' must be a {type(spec.default).__name__} "
                                 f"(default {spec.default!r}): {err}") from err
        except InvalidParameterValueException as err:
            raise ParameterError(f"parameter '{spec.name}' is out of range: {err}") from err
        choices = spec.metadata["choices"]
        if choices and value not in choices:
            raise ParameterError(f"parameter '{spec.name}' is {value!r}; expected one of {choices}")
        values[spec.name] = value
    config = NodeConfig(**values)
    _check_device(config.device)
    try:
        check_available(config.runtime_config())
    except BackendUnavailable as err:
        raise ParameterError(f"parameter 'inference_backend' is {config.inference_backend!r}: {err}") from err
    try:
        check_writable(config.output_path)
    except OutputFolderError as err:
        raise ParameterError(f"parameter 'output_folder' is {config.output_folder!r}: {err}") from err
    return config


def _check_device(device: str) -> None:
    """ParameterError unless torch can use `device` (a typo or a missing GPU fails at start-up,
    not in the first training round minutes later)."""
    try:
        kind = torch.device(device).type
    except RuntimeError as err:
        raise ParameterError(f"parameter 'device' is {device!r}: {err}") from err
    if kind == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"parameter 'device' is {device!r} but torch sees no CUDA device")


if __name__ == "__main__":
    import sys
    from pathlib import Path

    for path in map(Path, sys.argv[1:]):
        path.write_text(with_parameter_table(path.read_text()))
