"""nvs_node: the camera front end of nvs_ros.

Today it ingests the camera (raw or compressed images + CameraInfo, or fallback intrinsics),
converts and validates every frame, skips bad input with a throttled warning, selects
keyframes into a bounded buffer, and reports ingest health on /diagnostics. Poses, point clouds and rendered views are published once the
engine is connected (see README, "ROS 2").

    nvs_node --ros-args --params-file config/nvs.yaml -r /camera/image_raw:=/my/image
"""

import sys
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from nvs_ros.core.cameras import intrinsics_matrix
from nvs_ros.core.keyframes import KeyframeBuffer, KeyframeConfig
from nvs_ros.io.image_files import downscale, rescale_intrinsics
from nvs_ros.ros.image_conversion import ImageConversionError, compressed_msg_to_rgb8, image_msg_to_rgb8
from nvs_ros.ros.params import NodeConfig, ParameterError, declare_node_config
from nvs_ros.ros.qos import IMAGE_QOS, RELIABLE_IMAGE_QOS
from nvs_ros.ros.transforms import stamp_to_ns

SKIP_LOG_PERIOD_S = 5.0
FRAMES_WAITING_FOR_CAMERA_INFO = 10
"""Frames kept while the first CameraInfo is on its way: a driver (or a bag) publishes image
and CameraInfo together, and either may arrive first."""
NO_INTRINSICS = ("no CameraInfo received yet and no fallback intrinsics set "
                 "(parameters fallback_fx/fy/cx/cy)")


@dataclass
class IngestStats:
    received: int = 0
    accepted: int = 0
    skipped: int = 0
    last_skip_reason: str = ""
    last_size: tuple[int, int] = (0, 0)
    last_latency_s: float = float("nan")
    callback_s_total: float = 0.0
    callback_s_max: float = 0.0
    callback_cpu_s_total: float = 0.0

    def record_callback(self, wall_s: float, cpu_s: float) -> None:
        """Wall time is what the next frame waits for; CPU time is the callback's own cost
        (the two differ when other processes share the cores)."""
        self.callback_s_total += wall_s
        self.callback_s_max = max(self.callback_s_max, wall_s)
        self.callback_cpu_s_total += cpu_s


class CameraIntrinsics:
    """The camera's K: from the latest valid CameraInfo, else the fallback parameters."""

    def __init__(self, config: NodeConfig):
        self._fallback = None
        if config.has_fallback_intrinsics:
            self._fallback = intrinsics_matrix(config.fallback_fx, config.fallback_fy,
                                               config.fallback_cx, config.fallback_cy)
        self._from_info: np.ndarray | None = None
        self._info_size: tuple[int, int] | None = None

    @property
    def known(self) -> bool:
        return self._from_info is not None or self._fallback is not None

    @property
    def source(self) -> str:
        if self._from_info is not None:
            return "camera_info"
        return "fallback parameters" if self._fallback is not None else "none"

    def update(self, msg: CameraInfo) -> None:
        """Take a CameraInfo; ValueError when it cannot describe a pinhole camera."""
        K_33 = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        if msg.width == 0 or msg.height == 0 or K_33[0, 0] <= 0 or K_33[1, 1] <= 0:
            raise ValueError(f"CameraInfo without a usable camera (size {msg.width}x{msg.height}, "
                             f"fx {K_33[0, 0]}, fy {K_33[1, 1]})")
        self._from_info, self._info_size = K_33, (msg.height, msg.width)

    def for_image(self, height: int, width: int) -> np.ndarray:
        """K for an image of this size; ValueError when none is known or sizes disagree."""
        if self._from_info is not None:
            if self._info_size != (height, width):
                raise ValueError(f"CameraInfo is for {self._info_size[1]}x{self._info_size[0]} "
                                 f"images, this image is {width}x{height}")
            return self._from_info
        if self._fallback is not None:
            return self._fallback
        raise ValueError(NO_INTRINSICS)


class NvsNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("nvs_node", **kwargs)
        self.config = declare_node_config(self)
        self.stats = IngestStats()
        self.intrinsics = CameraIntrinsics(self.config)
        self._waiting: deque[tuple[Time, np.ndarray]] = deque()
        self.keyframes = KeyframeBuffer(
            KeyframeConfig(capacity=self.config.keyframe_capacity,
                           min_novelty=self.config.keyframe_min_novelty),
            max_side=self.config.working_max_side)
        image_qos = RELIABLE_IMAGE_QOS if self.config.reliable_qos else IMAGE_QOS
        if self.config.image_transport == "compressed":
            self.create_subscription(CompressedImage, f"{self.config.image_topic}/compressed",
                                     lambda msg: self._on_image(msg, compressed_msg_to_rgb8), image_qos)
        else:
            self.create_subscription(Image, self.config.image_topic,
                                     lambda msg: self._on_image(msg, image_msg_to_rgb8), image_qos)
        # Best effort matches camera drivers that publish CameraInfo either way.
        self.create_subscription(CameraInfo, self.config.camera_info_topic, self._on_camera_info, IMAGE_QOS)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self.config.diagnostics_period_s, self._publish_diagnostics)
        self.get_logger().info(f"listening on {self.config.image_topic} ({self.config.image_transport}) "
                               f"and {self.config.camera_info_topic}")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self.intrinsics.update(msg)
        except ValueError as err:
            self.get_logger().warning(f"ignoring CameraInfo: {err}", throttle_duration_sec=SKIP_LOG_PERIOD_S)
            return
        while self._waiting:
            self._accept(*self._waiting.popleft())

    def _on_image(self, msg: Image | CompressedImage, to_rgb8) -> None:
        started, started_cpu = time.perf_counter(), time.thread_time()
        self.stats.received += 1
        try:
            rgb_HW3 = to_rgb8(msg)
        except ImageConversionError as err:
            self._skip(str(err))
            return
        if self.intrinsics.known:
            self._accept(msg.header.stamp, rgb_HW3)
        else:
            if len(self._waiting) == FRAMES_WAITING_FOR_CAMERA_INFO:
                self._waiting.popleft()
                self._skip(NO_INTRINSICS)
            self._waiting.append((msg.header.stamp, rgb_HW3))
        self.stats.record_callback(time.perf_counter() - started, time.thread_time() - started_cpu)

    def _accept(self, stamp: Time, rgb_HW3: np.ndarray) -> None:
        try:
            K_33 = self.intrinsics.for_image(*rgb_HW3.shape[:2])
        except ValueError as err:
            self._skip(str(err))
            return
        # The engine works at the working resolution; so does the keyframe check (blur that
        # does not show there does not matter), which keeps the callback cheap.
        small_HW3 = downscale(rgb_HW3, self.config.working_max_side)
        small_K_33 = rescale_intrinsics(K_33, rgb_HW3.shape[:2], small_HW3.shape[:2])
        self.keyframes.offer(self.stats.accepted, stamp_to_ns(stamp), small_HW3, small_K_33)
        self.stats.accepted += 1
        self.stats.last_size = rgb_HW3.shape[:2]
        self.stats.last_latency_s = (self.get_clock().now().nanoseconds - stamp_to_ns(stamp)) / 1e9

    def _skip(self, reason: str) -> None:
        self.stats.skipped += 1
        self.stats.last_skip_reason = reason
        self.get_logger().warning(f"skipping frame: {reason}", throttle_duration_sec=SKIP_LOG_PERIOD_S)

    def _publish_diagnostics(self) -> None:
        stats = self.stats
        if stats.accepted == 0:
            level, message = DiagnosticStatus.WARN, "no usable frames yet"
        elif stats.last_skip_reason:
            level, message = DiagnosticStatus.WARN, f"skipped {stats.skipped} frame(s)"
        else:
            level, message = DiagnosticStatus.OK, "receiving frames"
        timed = max(1, stats.received)
        values = {"frames_received": stats.received, "frames_accepted": stats.accepted,
                  "frames_skipped": stats.skipped, "frames_waiting_for_camera_info": len(self._waiting),
                  "last_skip_reason": stats.last_skip_reason, "keyframes": len(self.keyframes),
                  "intrinsics": self.intrinsics.source,
                  "image_size": f"{stats.last_size[1]}x{stats.last_size[0]}",
                  "latency_s": f"{stats.last_latency_s:.3f}",
                  "callback_ms_mean": f"{1e3 * stats.callback_s_total / timed:.3f}",
                  "callback_ms_max": f"{1e3 * stats.callback_s_max:.3f}",
                  "callback_cpu_ms_mean": f"{1e3 * stats.callback_cpu_s_total / timed:.3f}"}
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: camera input", message=message,
                                  hardware_id=self.config.image_topic,
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)


def main(args: list[str] | None = None) -> int:
    try:
        with rclpy.init(args=args):
            rclpy.spin(NvsNode())
    except ParameterError as err:
        print(f"nvs_node: error: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
