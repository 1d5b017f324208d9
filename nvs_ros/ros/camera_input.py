"""The camera in: raw or compressed images + CameraInfo (or fallback intrinsics), each frame
converted, validated and undistorted to a pinhole image (io.camera_models), bad input skipped with
a throttled warning and counted; a good frame goes to the FrameIntake (app/frame_intake.py) with
its intrinsics and odometry.

With `reliable_qos` the subscriptions only queue the messages and the frame queue's thread takes
them in (ros/frame_queue.py); else the callbacks do (one at a time either way: the node's default
callback group is exclusive).
"""

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from nvs_ros.app.frame_intake import FrameIntake
from nvs_ros.core.cameras import intrinsics_matrix
from nvs_ros.io.camera_models import CameraModel, camera_from_info, is_rectified_topic, undistorter
from nvs_ros.io.errors import CameraModelError, UncalibratedCameraError
from nvs_ros.ros import WARNING_PERIOD_S
from nvs_ros.ros.frame_queue import FrameQueue
from nvs_ros.ros.image_conversion import ImageConversionError, compressed_msg_to_rgb8, image_msg_to_rgb8
from nvs_ros.ros.odometry import CameraOdometry
from nvs_ros.ros.params import NodeConfig
from nvs_ros.ros.qos import IMAGE_QOS, queued_image_qos
from nvs_ros.ros.transforms import stamp_to_ns

FRAMES_WAITING_FOR_CAMERA_INFO = 10
"""Frames kept while the first CameraInfo is on its way: a driver (or a bag) publishes image
and CameraInfo together, and either may arrive first."""
NO_INTRINSICS = ("no CameraInfo received yet and no fallback intrinsics set "
                 "(parameters fallback_fx/fy/cx/cy)")
DEFAULT_CAMERA_FRAME = "camera_optical_frame"
OTHER_CLOCK_S = 3600.0
"""An image stamp further than this from the node's clock is in another clock (a bag replayed
without use_sim_time, /clock not yet received): its latency is unknown, not a figure of years."""

ToRgb8 = Callable[[Image | CompressedImage], np.ndarray]


@dataclass
class IngestStats:
    received: int = 0
    accepted: int = 0
    skipped: int = 0
    last_skip_reason: str = ""
    last_size: tuple[int, int] = (0, 0)
    last_latency_s: float = float("nan")
    """Node clock minus the newest image's stamp; NaN when the stamp is in another clock."""
    latency_note: str = ""
    """Why the latency is unknown (empty: it is known)."""
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
    """The camera: from the latest usable CameraInfo (its lens undistorted by io.camera_models;
    on an image_rect topic, P), else the fallback parameters (a pinhole camera)."""

    def __init__(self, config: NodeConfig) -> None:
        self._fallback = None
        if config.has_fallback_intrinsics:
            self._fallback = intrinsics_matrix(config.fallback_fx, config.fallback_fy,
                                               config.fallback_cx, config.fallback_cy)
        self._rectified = is_rectified_topic(config.image_topic)
        self.camera: CameraModel | None = None
        """The camera of the latest usable CameraInfo."""

    @property
    def known(self) -> bool:
        return self.camera is not None or self._fallback is not None

    @property
    def source(self) -> str:
        if self.camera is not None:
            return "camera_info"
        return "fallback parameters" if self._fallback is not None else "none"

    def describe(self) -> str:
        if self.camera is not None:
            return self.camera.describe() + (", undistorted" if self.camera.distorted else "")
        return "" if self._fallback is None else "pinhole (fallback parameters)"

    def update(self, msg: CameraInfo) -> bool:
        """Take a CameraInfo; True when it describes another camera than before. CameraModelError
        (UncalibratedCameraError for K[0] = 0) when it describes none."""
        camera = camera_from_info(msg, rectified=self._rectified)
        changed, self.camera = camera != self.camera, camera
        return changed

    def to_pinhole(self, rgb_HW3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the image undistorted, its K); ValueError when no camera is known or sizes disagree."""
        if self.camera is not None:
            if (self.camera.height, self.camera.width) != rgb_HW3.shape[:2]:
                raise ValueError(f"CameraInfo is for {self.camera.width}x{self.camera.height} images, "
                                 f"this image is {rgb_HW3.shape[1]}x{rgb_HW3.shape[0]}")
            pinhole = undistorter(self.camera)  # maps built once per camera
            return pinhole(rgb_HW3), pinhole.K_33
        if self._fallback is not None:
            return rgb_HW3, self._fallback
        raise ValueError(NO_INTRINSICS)


class CameraInput:
    """Subscribes `node` to the camera and takes every frame in."""

    def __init__(self, node: Node, config: NodeConfig, intake: FrameIntake, odometry: CameraOdometry) -> None:
        self._node = node
        self._config = config
        self.intake = intake
        self._odometry = odometry
        self.stats = IngestStats()
        self.intrinsics = CameraIntrinsics(config)
        self.frame = config.camera_frame or DEFAULT_CAMERA_FRAME
        """The camera's optical frame: the parameter, else the images' header frame_id."""
        self.waiting: deque[tuple[Header, np.ndarray]] = deque()
        """Frames that came before the first CameraInfo."""
        self.frame_queue: FrameQueue | None = None
        if config.reliable_qos:
            self.frame_queue = FrameQueue(lambda take_in: take_in(), config.image_queue_size)
            image_qos, on_image = queued_image_qos(config.image_queue_size), self._queue_image
            on_camera_info = self._queue_camera_info
        else:
            image_qos, on_image, on_camera_info = IMAGE_QOS, self._on_image, self._on_camera_info
        if config.image_transport == "compressed":
            node.create_subscription(CompressedImage, f"{config.image_topic}/compressed",
                                     lambda msg: on_image(msg, compressed_msg_to_rgb8), image_qos)
        else:
            node.create_subscription(Image, config.image_topic, lambda msg: on_image(msg, image_msg_to_rgb8),
                                     image_qos)
        # Best effort matches camera drivers that publish CameraInfo either way.
        node.create_subscription(CameraInfo, config.camera_info_topic, on_camera_info, IMAGE_QOS)

    def stop(self) -> None:
        if self.frame_queue is not None:
            self.frame_queue.stop()

    def clock_name(self) -> str:
        """The clock of the node (and of its latency figure)."""
        return "sim time (/clock)" if self._node.get_parameter("use_sim_time").value else "system time"

    def _queue_camera_info(self, msg: CameraInfo) -> None:
        """reliable_qos: queued behind the frames before it (ros/frame_queue.py)."""
        self.frame_queue.put(lambda: self._on_camera_info(msg), frame=False)

    def _queue_image(self, msg: Image | CompressedImage, to_rgb8: ToRgb8) -> None:
        """reliable_qos: only counted and queued here; taken in by the queue's thread."""
        self.stats.received += 1
        self.frame_queue.put(lambda: self._ingest(msg, to_rgb8))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            changed = self.intrinsics.update(msg)
        except UncalibratedCameraError as err:
            then = (f"using {self.intrinsics.describe() or 'the last calibrated CameraInfo'}"
                    if self.intrinsics.known else "frames wait: set fallback_fx/fy/cx/cy or calibrate the camera")
            self._node.get_logger().warning(f"ignoring CameraInfo: {err}; {then}",
                                            throttle_duration_sec=WARNING_PERIOD_S)
            return
        except CameraModelError as err:
            self._node.get_logger().warning(f"ignoring CameraInfo: {err}", throttle_duration_sec=WARNING_PERIOD_S)
            return
        if changed:
            self._node.get_logger().info(f"camera: {self.intrinsics.describe()}")
        while self.waiting:
            self._accept(*self.waiting.popleft())

    def _on_image(self, msg: Image | CompressedImage, to_rgb8: ToRgb8) -> None:
        self.stats.received += 1
        self._ingest(msg, to_rgb8)

    def _ingest(self, msg: Image | CompressedImage, to_rgb8: ToRgb8) -> None:
        started, started_cpu = time.perf_counter(), time.thread_time()
        try:
            rgb_HW3 = to_rgb8(msg)
        except ImageConversionError as err:
            self._skip(str(err))
            return
        if self.intrinsics.known:
            self._accept(msg.header, rgb_HW3)
        else:
            if len(self.waiting) == FRAMES_WAITING_FOR_CAMERA_INFO:
                self.waiting.popleft()
                self._skip(NO_INTRINSICS)
            self.waiting.append((msg.header, rgb_HW3))
        self.stats.record_callback(time.perf_counter() - started, time.thread_time() - started_cpu)

    def _accept(self, header: Header, rgb_HW3: np.ndarray) -> None:
        try:
            rgb_HW3, K_33 = self.intrinsics.to_pinhole(rgb_HW3)
        except ValueError as err:
            self._skip(str(err))
            return
        if header.frame_id and not self._config.camera_frame:
            self.frame = header.frame_id.lstrip("/")
        stamp_ns = stamp_to_ns(header.stamp)
        self.intake.take(self.stats.accepted, rgb_HW3, K_33, stamp_ns,
                         odometry_prior=lambda stamp: self._odometry.prior(self.frame, stamp),
                         odometry_pose=lambda stamp: self._odometry.pose(self.frame, stamp))
        self.stats.accepted += 1
        self.stats.last_size = rgb_HW3.shape[:2]
        self._record_latency(stamp_ns)

    def _record_latency(self, stamp_ns: int) -> None:
        """Latency in the clock the node uses (ROS time: /clock with use_sim_time), unknown when
        the stamps are in another one."""
        latency_s = (self._node.get_clock().now().nanoseconds - stamp_ns) / 1e9
        if abs(latency_s) <= OTHER_CLOCK_S:
            self.stats.last_latency_s, self.stats.latency_note = latency_s, ""
            return
        self.stats.last_latency_s = float("nan")
        self.stats.latency_note = (f"unknown: image stamps are {latency_s:.3g} s from the node's {self.clock_name()}; "
                                   "a bag replayed with /clock needs use_sim_time:=true")

    def _skip(self, reason: str) -> None:
        self.stats.skipped += 1
        self.stats.last_skip_reason = reason
        self._node.get_logger().warning(f"skipping frame: {reason}", throttle_duration_sec=WARNING_PERIOD_S)
