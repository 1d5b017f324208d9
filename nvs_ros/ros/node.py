"""nvs_node: camera in; TF, keyframe path, point cloud, frusta and synthesized views out.

The image callback ingests the camera (raw or compressed images + CameraInfo, or fallback
intrinsics), converts and validates every frame, skips bad input with a throttled warning and
selects keyframes; accepted keyframes are queued for the scene worker (app/scene_worker.py),
which owns the LiveScene, trains it in slices and hands back poses, the cloud and rendered
views. This node publishes them (REP 103/105, see README "ROS 2"):
    /tf                       map -> camera optical frame (or map -> odom, see below)
    ~/keyframe_path           nav_msgs/Path, reliable + transient local
    ~/point_cloud             sensor_msgs/PointCloud2 x y z rgb, reliable + transient local
    ~/keyframe_frusta         visualization_msgs/MarkerArray, reliable + transient local
    ~/latest_view[_depth]     the view from the newest keyframe after each training round
    ~/rendered_image, ~/rendered_depth   the view from a pose sent to ~/render_pose
    ~/tracked_pose            geometry_msgs/PoseWithCovarianceStamped of frames posed between
                              keyframes (tracking, `track_rate_hz`), also sent on /tf
    /diagnostics              camera input + scene status
and serves ~/save and ~/reset (std_srvs/Trigger). When TF already connects `odom_frame` to
the camera frame (odometry tree), each keyframe takes the camera's odometry pose at its stamp
as a prior: the scene's products are then in the odometry frame and metres (map is odom as the
images correct it), and the node publishes map -> odom, never a second parent. Until the priors
fix the scale (two keyframes with odometry, apart), map -> odom is withheld: a monocular pose
has an arbitrary scale, and composed with metric odometry it would put the camera anywhere.

Tracking: at most `track_rate_hz` (by image stamps) the newest frame goes to the worker, which
poses it in the trained scene (one registration, not added to the scene) between training
slices. With tracking, /tf carries the newest pose by image stamp, tracked or keyframe, stamped
with that image's stamp; a pose older than the one already sent is not sent (stamps on /tf
never go backwards). Without it, /tf carries the newest keyframe's pose stamped now.

    nvs_node --ros-args --params-file config/nvs.yaml -r /camera/image_raw:=/my/image
"""

import logging
import sys
import time
from collections import deque
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rclpy
import torch
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from nav_msgs.msg import Path as PathMsg
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from nvs_ros.baselines.feature_chaining import chained_keyframe_poses
from nvs_ros.baselines.feature_tracking import CornerTracking
from nvs_ros.core.cameras import intrinsics_matrix
from nvs_ros.core.keyframes import KeyframeBuffer, KeyframeConfig
from nvs_ros.core.live_scene import KeyframePoses
from nvs_ros.core.live_scene_config import PRIOR_SOURCE, LiveSceneConfig
from nvs_ros.core.self_check import CONVERGED
from nvs_ros.io.image_files import downscale, rescale_intrinsics
from nvs_ros.ros.image_conversion import (ImageConversionError, compressed_msg_to_rgb8, image_msg_to_rgb8,
                                          numpy_to_image_msg)
from nvs_ros.ros.keyframe_path import keyframe_path
from nvs_ros.ros.frame_queue import FrameQueue
from nvs_ros.ros.markers import frustum_depth, frustum_markers
from nvs_ros.ros.params import NodeConfig, ParameterError, declare_node_config
from nvs_ros.ros.point_cloud_msg import point_cloud_msg
from nvs_ros.ros.qos import (IMAGE_QOS, LATCHED_QOS, RELIABLE_IMAGE_QOS, TF_LISTENER_QOS,
                             TF_STATIC_LISTENER_QOS, queued_image_qos)
from nvs_ros.app.scene_worker import (QueuedKeyframe, RenderedView, RenderRequest, SceneWorker, TrackedFrame,
                                      TrackRequest)
from nvs_ros.ros.tf_broadcaster import TfBroadcaster
from nvs_ros.ros.tf_tree import TfTree, map_to_odom
from nvs_ros.ros.tracked_pose import tracked_pose_msg, trajectory_extent
from nvs_ros.ros.transforms import matrix_to_transform_stamped, ns_to_stamp, pose_to_matrix, stamp_to_ns

RCLError = rclpy_implementation.RCLError
SKIP_LOG_PERIOD_S = 5.0
FRAMES_WAITING_FOR_CAMERA_INFO = 10
"""Frames kept while the first CameraInfo is on its way: a driver (or a bag) publishes image
and CameraInfo together, and either may arrive first."""
NO_INTRINSICS = ("no CameraInfo received yet and no fallback intrinsics set "
                 "(parameters fallback_fx/fy/cx/cy)")
DEFAULT_CAMERA_FRAME = "camera_optical_frame"
RENDER_FRAME = "nvs_render_optical_frame"
"""Optical frame of views rendered on request (map -> it is sent with each one)."""
SERVICE_SLACK_S = 120.0
"""A service waits for the worker at most one training round + one slice + this."""
ODOMETRY_MAX_OFFSET_NS = 100_000_000
"""A keyframe's odometry prior is the nearest TF sample within this of its stamp (odometry at
10 Hz or faster); without one (TF not there yet) the keyframe goes without a prior."""
NO_SCALE = "none (monocular, arbitrary)"
OTHER_CLOCK_S = 3600.0
"""An image stamp further than this from the node's clock is in another clock (a bag replayed
without use_sim_time, /clock not yet received): its latency is unknown, not a figure of years."""


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
    keyframes_with_odometry: int = 0
    keyframes_without_odometry: int = 0
    """Keyframes offered while the camera is in an odometry tree whose TF at their stamp was missing."""
    tracked_older_than_tf: int = 0
    """Accepted tracked poses not sent on /tf: TF already carried a newer pose."""

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
        _check_device(self.config.device)
        self._started_at = time.monotonic()
        self.stats = IngestStats()
        self.intrinsics = CameraIntrinsics(self.config)
        self._waiting: deque[tuple[Header, np.ndarray]] = deque()
        self.keyframes = self._new_keyframe_buffer()
        self._camera_frame = self.config.camera_frame or DEFAULT_CAMERA_FRAME
        self._render_camera: tuple[np.ndarray, int, int] | None = None
        """K and (width, height) of the newest frame at the working size: rendered views use them."""
        self._last_tf: tuple[np.ndarray, str, str] | None = None
        """(T_parent_child, parent, child) last sent on /tf."""
        self._last_tf_stamp_ns: int | None = None
        self._last_tf_sent_ns = 0
        """The node's clock when /tf was last sent."""
        self._tf_pose_stamp_ns: int | None = None
        """Image stamp of the pose on /tf (keyframe or tracked frame)."""
        self._tracking = self.config.track_rate_hz > 0
        self._last_track_stamp_ns: int | None = None
        """Stamp of the last frame handed over for tracking."""
        self._trajectory_extent = 0.0
        """Of the keyframe poses: the tracked pose's covariance is relative to it."""
        self._tf_withheld = ""
        """Why the latest poses went out without TF (empty: they did not)."""
        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        self.worker = SceneWorker(
            LiveSceneConfig(min_keyframes=self.config.min_keyframes, round_budget_s=self.config.round_budget_s,
                            idle_round_s=self.config.idle_round_s or None,
                            device=self.config.device, seed=self.config.seed,
                            max_keyframes=self.config.keyframe_capacity),
            slice_s=self.config.train_slice_s, queue_size=self.config.keyframe_queue_size,
            cloud_points=self.config.cloud_max_points, run_info={"config": asdict(self.config)},
            on_products=lambda: self._products_ready.trigger(),
            chained_poses=chained_keyframe_poses if self.config.initial_poses == "auto" else None)
        self._keyframes_generation = self.worker.generation

        # With reliable_qos the camera is taken in by the frame queue's thread, else by the
        # callbacks (one at a time either way: the default callback group is exclusive).
        self._frame_queue: FrameQueue | None = None
        if self.config.reliable_qos:
            self._frame_queue = FrameQueue(lambda take_in: take_in(), self.config.image_queue_size)
            image_qos, on_image = queued_image_qos(self.config.image_queue_size), self._queue_image
            on_camera_info = self._queue_camera_info
        else:
            image_qos, on_image, on_camera_info = IMAGE_QOS, self._on_image, self._on_camera_info
        if self.config.image_transport == "compressed":
            self.create_subscription(CompressedImage, f"{self.config.image_topic}/compressed",
                                     lambda msg: on_image(msg, compressed_msg_to_rgb8), image_qos)
        else:
            self.create_subscription(Image, self.config.image_topic,
                                     lambda msg: on_image(msg, image_msg_to_rgb8), image_qos)
        # Best effort matches camera drivers that publish CameraInfo either way.
        self.create_subscription(CameraInfo, self.config.camera_info_topic, on_camera_info, IMAGE_QOS)
        self.create_subscription(PoseStamped, "~/render_pose", self._on_render_pose, 10)
        self.tf_tree = TfTree(ignored_parents=[self.config.map_frame])
        self.create_subscription(TFMessage, "/tf", self.tf_tree.add, TF_LISTENER_QOS)
        self.create_subscription(TFMessage, "/tf_static", lambda msg: self.tf_tree.add(msg, static=True),
                                 TF_STATIC_LISTENER_QOS)

        self._tf = TfBroadcaster(self)
        self._path_pub = self.create_publisher(PathMsg, "~/keyframe_path", LATCHED_QOS)
        self._cloud_pub = self.create_publisher(PointCloud2, "~/point_cloud", LATCHED_QOS)
        self._frusta_pub = self.create_publisher(MarkerArray, "~/keyframe_frusta", LATCHED_QOS)
        self._tracked_pub = self.create_publisher(PoseWithCovarianceStamped, "~/tracked_pose", 10)
        self._view_pubs = {name: self.create_publisher(Image, f"~/{name}", RELIABLE_IMAGE_QOS)
                           for name in ("latest_view", "latest_view_depth", "rendered_image", "rendered_depth")}
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._products_ready = self.create_guard_condition(self._publish_products)
        # /diagnostics on the steady clock: with use_sim_time a replay's /clock stops with the bag,
        # and the status (frames taken in, rounds, the verdict) must go on after it.
        self.create_timer(self.config.diagnostics_period_s, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_timer(self.config.tf_period_s, self._resend_tf)
        # Services wait for the worker: their own group lets the executor's other thread keep
        # taking images meanwhile.
        services = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "~/save", self._on_save, callback_group=services)
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=services)
        _forward_logs(self)
        self.worker.start()
        self.get_logger().info(f"listening on {self.config.image_topic} ({self.config.image_transport}) "
                               f"and {self.config.camera_info_topic}; training starts at "
                               f"{self.config.min_keyframes} keyframes on {self.config.device}"
                               + (f" (or at {LiveSceneConfig.min_round_keyframes} or more after {self.config.idle_round_s:g} s without a new one)"
                                  if self.config.idle_round_s else ""))

    def destroy_node(self) -> None:
        # rclpy's shutdown destroys a node whose __init__ failed (bad parameter): no worker yet.
        if getattr(self, "_frame_queue", None) is not None:
            self._frame_queue.stop()
        if hasattr(self, "worker"):
            self.worker.stop()
        super().destroy_node()

    def _new_keyframe_buffer(self) -> KeyframeBuffer:
        return KeyframeBuffer(KeyframeConfig(capacity=self.config.keyframe_capacity,
                                             min_novelty=self.config.keyframe_min_novelty,
                                             min_untracked=self.config.keyframe_min_untracked,
                                             viewpoint_side=self.config.working_max_side),
                              max_side=self.config.working_max_side, viewpoint_cue=CornerTracking())

    # --- camera in ----------------------------------------------------------------------
    def _queue_camera_info(self, msg: CameraInfo) -> None:
        """reliable_qos: queued behind the frames before it (ros/frame_queue.py)."""
        self._frame_queue.put(lambda: self._on_camera_info(msg), frame=False)

    def _queue_image(self, msg: Image | CompressedImage, to_rgb8) -> None:
        """reliable_qos: only counted and queued here; taken in by the queue's thread."""
        self.stats.received += 1
        self._frame_queue.put(lambda: self._ingest(msg, to_rgb8))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self.intrinsics.update(msg)
        except ValueError as err:
            self.get_logger().warning(f"ignoring CameraInfo: {err}", throttle_duration_sec=SKIP_LOG_PERIOD_S)
            return
        while self._waiting:
            self._accept(*self._waiting.popleft())

    def _on_image(self, msg: Image | CompressedImage, to_rgb8) -> None:
        self.stats.received += 1
        self._ingest(msg, to_rgb8)

    def _ingest(self, msg: Image | CompressedImage, to_rgb8) -> None:
        started, started_cpu = time.perf_counter(), time.thread_time()
        try:
            rgb_HW3 = to_rgb8(msg)
        except ImageConversionError as err:
            self._skip(str(err))
            return
        if self.intrinsics.known:
            self._accept(msg.header, rgb_HW3)
        else:
            if len(self._waiting) == FRAMES_WAITING_FOR_CAMERA_INFO:
                self._waiting.popleft()
                self._skip(NO_INTRINSICS)
            self._waiting.append((msg.header, rgb_HW3))
        self.stats.record_callback(time.perf_counter() - started, time.thread_time() - started_cpu)

    def _accept(self, header: Header, rgb_HW3: np.ndarray) -> None:
        try:
            K_33 = self.intrinsics.for_image(*rgb_HW3.shape[:2])
        except ValueError as err:
            self._skip(str(err))
            return
        if self._keyframes_generation != self.worker.generation:  # ~/reset happened
            self.keyframes, self._keyframes_generation = self._new_keyframe_buffer(), self.worker.generation
        if header.frame_id and not self.config.camera_frame:
            self._camera_frame = header.frame_id.lstrip("/")
        # The engine works at the working resolution; so does the keyframe check (blur that
        # does not show there does not matter), which keeps the callback cheap.
        small_HW3 = downscale(rgb_HW3, self.config.working_max_side)
        small_K_33 = rescale_intrinsics(K_33, rgb_HW3.shape[:2], small_HW3.shape[:2])
        stamp_ns = stamp_to_ns(header.stamp)
        decision = self.keyframes.offer(self.stats.accepted, stamp_ns, small_HW3, small_K_33)
        if decision.accepted:
            name = f"frame_{self.stats.accepted:06d}"
            self.worker.offer_keyframe(QueuedKeyframe(small_HW3, small_K_33, stamp_ns, name,
                                                      self._keyframes_generation, self._odometry_prior(stamp_ns)))
        if self._tracking_due(stamp_ns):
            # Only a hand-over here: the worker registers it (the callback stays cheap).
            self.worker.request_tracking(TrackRequest(small_HW3, small_K_33, stamp_ns, self._odometry_pose(stamp_ns)))
            self._last_track_stamp_ns = stamp_ns
        self._render_camera = (small_K_33, small_HW3.shape[1], small_HW3.shape[0])
        self.stats.accepted += 1
        self.stats.last_size = rgb_HW3.shape[:2]
        self._record_latency(stamp_ns)

    def _record_latency(self, stamp_ns: int) -> None:
        """Latency in the clock the node uses (ROS time: /clock with use_sim_time), unknown when
        the stamps are in another one."""
        latency_s = (self.get_clock().now().nanoseconds - stamp_ns) / 1e9
        if abs(latency_s) <= OTHER_CLOCK_S:
            self.stats.last_latency_s, self.stats.latency_note = latency_s, ""
            return
        clock = "sim time (/clock)" if self._use_sim_time() else "system time"
        self.stats.last_latency_s = float("nan")
        self.stats.latency_note = (f"unknown: image stamps are {latency_s:.3g} s from the node's {clock}; "
                                   "a bag replayed with /clock needs use_sim_time:=true")

    def _use_sim_time(self) -> bool:
        return bool(self.get_parameter("use_sim_time").value)

    def _tracking_due(self, stamp_ns: int) -> bool:
        """At most track_rate_hz by image stamps (a stamp that jumps back, a looped bag, counts)."""
        if not self._tracking:
            return False
        last = self._last_track_stamp_ns
        return last is None or abs(stamp_ns - last) >= 1e9 / self.config.track_rate_hz

    def _odometry_prior(self, stamp_ns: int) -> np.ndarray | None:
        """A keyframe's prior: T_odom_camera at its stamp when the camera is in an odometry tree
        and TF has it, else None (counted either way)."""
        if not self._in_odometry_tree():
            return None
        try:
            prior = self._odometry_at(stamp_ns)
        except LookupError as err:
            self.stats.keyframes_without_odometry += 1
            self.get_logger().warning(f"keyframe without odometry prior: {err}",
                                      throttle_duration_sec=SKIP_LOG_PERIOD_S)
            return None
        self.stats.keyframes_with_odometry += 1
        return prior

    def _odometry_pose(self, stamp_ns: int) -> np.ndarray | None:
        """A tracked frame's T_odom_camera at its stamp, None when TF has none near it (map ->
        odom then takes the nearest sample when it is sent, as for keyframes)."""
        if not self._in_odometry_tree():
            return None
        try:
            return self._odometry_at(stamp_ns)
        except LookupError:
            return None

    def _odometry_at(self, stamp_ns: int) -> np.ndarray:
        return self.tf_tree.lookup(self.config.odom_frame, self._camera_frame, stamp_ns,
                                   max_offset_ns=ODOMETRY_MAX_OFFSET_NS)

    def _in_odometry_tree(self) -> bool:
        odom = self.config.odom_frame
        return bool(odom) and self.tf_tree.connected(odom, self._camera_frame)

    def _skip(self, reason: str) -> None:
        self.stats.skipped += 1
        self.stats.last_skip_reason = reason
        self.get_logger().warning(f"skipping frame: {reason}", throttle_duration_sec=SKIP_LOG_PERIOD_S)

    # --- requests -----------------------------------------------------------------------
    def _on_render_pose(self, msg: PoseStamped) -> None:
        frame = msg.header.frame_id.lstrip("/")
        if frame not in ("", self.config.map_frame):
            self.get_logger().warning(f"render pose ignored: it is in frame {frame!r}, expected "
                                      f"{self.config.map_frame!r}", throttle_duration_sec=SKIP_LOG_PERIOD_S)
            return
        if self._render_camera is None:
            self.get_logger().warning("render pose ignored: no camera frame received yet (its intrinsics "
                                      "are the rendered view's)", throttle_duration_sec=SKIP_LOG_PERIOD_S)
            return
        try:
            c2w_44 = pose_to_matrix(msg.pose)
        except ValueError as err:
            self.get_logger().warning(f"render pose ignored: {err}", throttle_duration_sec=SKIP_LOG_PERIOD_S)
            return
        K_33, width, height = self._render_camera
        self.worker.request_render(RenderRequest(K_33, c2w_44, width, height, stamp_to_ns(msg.header.stamp)))

    def _on_save(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._wait_for(self.worker.request_save(Path(self.config.output_folder).expanduser()),
                              response, "save")

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._wait_for(self.worker.request_reset(), response, "reset")

    def _wait_for(self, future, response: Trigger.Response, what: str) -> Trigger.Response:
        timeout_s = self.config.round_budget_s + self.config.train_slice_s + SERVICE_SLACK_S
        try:
            response.message, response.success = future.result(timeout=timeout_s), True
        except FutureTimeoutError:
            response.message = f"{what}: the scene worker did not answer within {timeout_s:.0f} s"
        except Exception as err:  # noqa: BLE001 -- the caller gets the reason
            response.message = f"{what} failed: {err}"
        # Two call sites: rclpy's logger refuses one call site with two severities.
        if response.success:
            self.get_logger().info(response.message)
        else:
            self.get_logger().error(response.message)
        return response

    # --- products out -------------------------------------------------------------------
    def _publish_products(self) -> None:
        outbox = self.worker.take_products()
        now = self.get_clock().now().to_msg()
        if outbox.cleared:
            self._last_tf, self._tf_withheld, self._tf_pose_stamp_ns = None, "", None
            self._publish_poses(KeyframePoses([], [], np.zeros((0, 4, 4)), np.zeros(0), np.zeros((0, 3, 3)),
                                              np.zeros((0, 2), int)), now)
            self._cloud_pub.publish(point_cloud_msg(np.zeros((0, 3)), np.zeros((0, 3), np.uint8),
                                                    self.config.map_frame, now))
        if outbox.poses is not None:  # the tracked pose's covariance is relative to their extent
            self._trajectory_extent = trajectory_extent(outbox.poses.c2w_N44)
        if outbox.tracked is not None:  # before the poses: with tracking, the newer pose wins TF
            self._publish_tracked(outbox.tracked)
        if outbox.poses is not None:
            self._publish_poses(outbox.poses, now)
        if outbox.cloud is not None:
            self._cloud_pub.publish(point_cloud_msg(*outbox.cloud, self.config.map_frame, now))
        if outbox.latest_view is not None:
            self._publish_view(outbox.latest_view, "latest_view", self._camera_frame)
        if outbox.rendered is not None:
            view = outbox.rendered
            self._tf.send([matrix_to_transform_stamped(view.c2w_44, self.config.map_frame, RENDER_FRAME,
                                                       view.stamp_ns)])
            self._publish_view(view, "rendered_image", RENDER_FRAME, depth_topic="rendered_depth")

    def _publish_poses(self, poses: KeyframePoses, now: Time) -> None:
        map_frame = self.config.map_frame
        self._path_pub.publish(keyframe_path(poses.c2w_N44, poses.stamps_ns, map_frame, now))
        self._frusta_pub.publish(frustum_markers(poses.K_N33, poses.c2w_N44, poses.sizes_N2, map_frame, now,
                                                 frustum_depth(poses.c2w_N44, self.config.frustum_size)))
        finite = [i for i in range(len(poses.names)) if np.isfinite(poses.c2w_N44[i]).all()]
        if not finite:
            return
        newest = max(finite, key=lambda i: poses.stamps_ns[i])
        c2w_44, stamp_ns = poses.c2w_N44[newest], poses.stamps_ns[newest]
        if not self._tracking:
            # Stamped now: poses of old keyframes keep improving, and tf2 ignores a re-sent stamp.
            self._send_tf(c2w_44, stamp_ns, poses.scale_source, stamp_to_ns(now))
        elif self._tf_pose_stamp_ns is None or stamp_ns > self._tf_pose_stamp_ns:
            self._send_tf(c2w_44, stamp_ns, poses.scale_source, stamp_ns)

    def _publish_tracked(self, tracked: TrackedFrame) -> None:
        """An accepted frame's pose on ~/tracked_pose, and on /tf when it is newer than the pose
        there; a rejected frame changes nothing (the worker counts it)."""
        if not tracked.accepted or self._withhold_untrusted():
            return
        self._tracked_pub.publish(tracked_pose_msg(tracked.c2w_44, tracked.confidence, self._trajectory_extent,
                                                   self.config.map_frame, tracked.stamp_ns))
        if self._tf_pose_stamp_ns is not None and tracked.stamp_ns <= self._tf_pose_stamp_ns:
            self.stats.tracked_older_than_tf += 1
            return
        self._send_tf(tracked.c2w_44, tracked.stamp_ns, tracked.scale_source, tracked.stamp_ns,
                      tracked.odometry_c2w_44)

    def _withhold_untrusted(self) -> bool:
        """True (and said on /diagnostics) unless the scene trusts its last round's poses
        (LiveStatus.trusted). TF keeps the last trusted pose."""
        status = self.worker.stats.status
        if status is not None and status.trusted:
            return False
        self._tf_withheld = f"the last round's poses are {status.verdict if status else None}: TF keeps the last trusted pose"
        self.get_logger().warning(self._tf_withheld, throttle_duration_sec=SKIP_LOG_PERIOD_S)
        return True

    def _send_tf(self, T_map_camera_44: np.ndarray, pose_stamp_ns: int, scale_source: str | None,
                 tf_stamp_ns: int, T_odom_camera_44: np.ndarray | None = None) -> None:
        """map -> camera, or map -> odom when TF links odom to the camera (REP 105: one parent),
        composed with T_odom_camera at the pose's image stamp (looked up when not given).

        map -> odom only once the map poses are in odometry's scale (metres): before that it is
        withheld (a previous one, from metric poses, stays). With tracking, a stamp not newer
        than the last one sent is not sent: /tf never goes backwards.
        """
        if self._tracking and self._last_tf_stamp_ns is not None and tf_stamp_ns <= self._last_tf_stamp_ns:
            return
        odom, camera = self.config.odom_frame, self._camera_frame
        if self._in_odometry_tree():
            if scale_source != PRIOR_SOURCE:
                self._tf_withheld = f"map -> {odom} withheld: the poses are not in odometry's scale yet"
                self.get_logger().warning(self._tf_withheld, throttle_duration_sec=SKIP_LOG_PERIOD_S)
                return
            if self._withhold_untrusted():
                return
            if T_odom_camera_44 is None:
                T_odom_camera_44 = self.tf_tree.lookup(odom, camera, pose_stamp_ns)
            self._last_tf = (map_to_odom(T_map_camera_44, T_odom_camera_44), self.config.map_frame, odom)
        elif self._withhold_untrusted():
            return
        else:
            self._last_tf = (T_map_camera_44, self.config.map_frame, camera)
        self._tf_withheld = ""
        self._tf_pose_stamp_ns = pose_stamp_ns
        self._send_last_tf(tf_stamp_ns)

    def _send_last_tf(self, stamp_ns: int) -> None:
        self._tf.send([matrix_to_transform_stamped(*self._last_tf, stamp_ns)])
        self._last_tf_stamp_ns = stamp_ns
        self._last_tf_sent_ns = self.get_clock().now().nanoseconds

    def _resend_tf(self) -> None:
        # /tf is volatile: a listener that starts late still gets the pose within a period. Not
        # while the clock stands (a paused bag): tf2 warns about a re-sent stamp.
        now_ns = self.get_clock().now().nanoseconds
        if self._last_tf is None or now_ns == self._last_tf_stamp_ns:
            return
        if not self._tracking:
            self._send_last_tf(now_ns)
            return
        # With tracking, only while no newer pose comes (none sent for a period, no frame being
        # posed: a re-sent stamp newer than that frame's would keep its pose off TF), stamped
        # in the images' time (not the node's clock, which may be another: a bag without
        # use_sim_time): the pose's stamp advanced by the time since it was sent.
        since_sent_ns = now_ns - self._last_tf_sent_ns
        if since_sent_ns >= self.config.tf_period_s * 1e9 and not self.worker.tracking_pending:
            self._send_last_tf(self._last_tf_stamp_ns + since_sent_ns)

    def _publish_view(self, view: RenderedView, topic: str, frame_id: str, depth_topic: str = "") -> None:
        header = Header(frame_id=frame_id, stamp=ns_to_stamp(view.stamp_ns))
        self._view_pubs[topic].publish(numpy_to_image_msg(view.rgb_HW3, "rgb8", header))
        self._view_pubs[depth_topic or f"{topic}_depth"].publish(
            numpy_to_image_msg(np.ascontiguousarray(view.depth_HW, dtype=np.float32), "32FC1", header))

    # --- diagnostics --------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray(status=[self._input_status(), self._scene_status()])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)

    def _input_status(self) -> DiagnosticStatus:
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
                  "frames_queued": len(self._frame_queue) if self._frame_queue is not None else 0,
                  "frames_dropped_queue_full": self._frame_queue.dropped if self._frame_queue is not None else 0,
                  "last_skip_reason": stats.last_skip_reason, "keyframes": len(self.keyframes),
                  "intrinsics": self.intrinsics.source,
                  "image_size": f"{stats.last_size[1]}x{stats.last_size[0]}",
                  "latency_s": f"{stats.last_latency_s:.3f}", "latency_note": stats.latency_note,
                  "clock": "sim time (/clock)" if self._use_sim_time() else "system time",
                  "callback_ms_mean": f"{1e3 * stats.callback_s_total / timed:.3f}",
                  "callback_ms_max": f"{1e3 * stats.callback_s_max:.3f}",
                  "callback_cpu_ms_mean": f"{1e3 * stats.callback_cpu_s_total / timed:.3f}"}
        return _status(f"{self.get_name()}: camera input", level, message, self.config.image_topic, values)

    def _waiting_s(self) -> float:
        """How long the scene has waited for its first products: since the first keyframe (or
        since the node started, when none has come)."""
        first = self.worker.stats.first_frame_at
        return time.monotonic() - (first if first is not None else self._started_at)

    def _scene_status(self) -> DiagnosticStatus:
        stats = self.worker.stats
        status = stats.status
        served = stats.tracked_frames + stats.tracking_rejected
        ready = bool(status and status.ready)
        if stats.failing:
            level, message = DiagnosticStatus.ERROR, stats.last_error
        elif ready and status.verdict != CONVERGED:
            level, message = DiagnosticStatus.WARN, f"poses {status.verdict}: {status.verdict_reasons}"
        elif ready:
            level, message = DiagnosticStatus.OK, "publishing poses"
        else:
            waiting = status.waiting_for if status else f"{self.config.min_keyframes} keyframes"
            level, message = DiagnosticStatus.WARN, f"waiting for {waiting}" if waiting else "first training round"
        values = {"scene_keyframes": status.keyframes if status else 0,
                  "posed_keyframes": status.posed_keyframes if status else 0,
                  "training_step": status.step if status else 0,
                  "loss": "" if not status or status.loss is None else f"{status.loss:.5f}",
                  "rounds": status.rounds if status else 0, "ready": ready,
                  "waiting_for": "" if ready else (status.waiting_for if status else
                                                   f"{self.config.min_keyframes} keyframes") or "first training round",
                  "waiting_s": "" if ready else _seconds(self._waiting_s()),
                  "keyframe_queue": self.worker.queue_length, "dropped_keyframes": stats.dropped_keyframes,
                  "train_s_total": f"{stats.train_s_total:.1f}", "renders": stats.renders,
                  "renders_refused": stats.renders_refused,
                  "tracked_frames": stats.tracked_frames, "tracking_rejected": stats.tracking_rejected,
                  "tracking_against_odometry": stats.tracking_against_odometry,
                  "tracked_older_than_tf": self.stats.tracked_older_than_tf,
                  "tracking_register_ms_mean": _mean_ms(stats.tracking_register_s_total, served),
                  "tracking_latency_ms_mean": _mean_ms(stats.tracking_latency_s_total, served),
                  "last_tracking_confidence": "" if stats.last_tracking_confidence is None
                  else f"{stats.last_tracking_confidence:.3f}",
                  "first_poses_after_s": _seconds(stats.first_poses_after_s),
                  "first_cloud_after_s": _seconds(stats.first_cloud_after_s),
                  "tf": f"{self._last_tf[1]} -> {self._last_tf[2]}" if self._last_tf else "",
                  "tf_withheld": self._tf_withheld,
                  "scale_source": status.scale_source if status and status.scale_source else NO_SCALE,
                  "prior_residual_m": "" if not status or status.prior_residual is None
                  else f"{status.prior_residual:.3f}",
                  "pose_start": status.pose_start if status and status.pose_start else "",
                  "verdict": status.verdict if status and status.verdict else "",
                  "verdict_reasons": status.verdict_reasons if status else "",
                  "keyframes_with_odometry": self.stats.keyframes_with_odometry,
                  "keyframes_without_odometry": self.stats.keyframes_without_odometry,
                  "device": self.config.device,
                  "errors": stats.errors, "last_error": stats.last_error}
        return _status(f"{self.get_name()}: scene", level, message, self.config.device, values)


def _check_device(device: str) -> None:
    """ParameterError unless torch can use `device` (a typo or a missing GPU fails at start-up,
    not in the first training round minutes later)."""
    try:
        kind = torch.device(device).type
    except RuntimeError as err:
        raise ParameterError(f"parameter 'device' is {device!r}: {err}") from err
    if kind == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"parameter 'device' is {device!r} but torch sees no CUDA device")


def _status(name: str, level: bytes, message: str, hardware_id: str, values: dict) -> DiagnosticStatus:
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _mean_ms(total_s: float, count: int) -> str:
    return "" if count == 0 else f"{1e3 * total_s / count:.1f}"


class _RosLogHandler(logging.Handler):
    """Forwards nvs_ros.* log records (engine, worker) to the node's logger."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self._logger = node.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        message = f"{record.name}: {record.getMessage()}"
        if record.levelno >= logging.ERROR:
            self._logger.error(message)
        elif record.levelno >= logging.WARNING:
            self._logger.warning(message)
        else:
            self._logger.info(message)


def _forward_logs(node: Node) -> None:
    package_log = logging.getLogger("nvs_ros")
    package_log.setLevel(logging.INFO)
    package_log.addHandler(_RosLogHandler(node))


def main(args: list[str] | None = None) -> int:
    try:
        with rclpy.init(args=args):
            node = NvsNode()
            # Two threads: the services wait for the worker while images keep coming in.
            executor = MultiThreadedExecutor(num_threads=2)
            executor.add_node(node)
            try:
                executor.spin()
            except RCLError:
                # A signal shuts the context down while an executor thread is about to wait:
                # rclpy raises this instead of ExternalShutdownException. Anything else is real.
                if rclpy.ok():
                    raise
            finally:
                node.destroy_node()
    except ParameterError as err:
        print(f"nvs_node: error: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
