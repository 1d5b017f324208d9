"""nvs_node: camera in; TF, keyframe path, point cloud, frusta and synthesized views out.

This module composes the node from its parts and runs it:
    ros/camera_input.py       subscriptions, conversion, intrinsics, skipped frames     (ingest)
    app/frame_intake.py       keyframe selection and tracking hand-over at the working size
    app/scene_worker.py       the thread that owns the LiveScene, trains it and serves requests
    ros/odometry.py           the camera's odometry pose from TF (priors, map -> odom)
    ros/pose_tf.py            which pose /tf carries, withholds and re-sends
    ros/outbox_publisher.py   the worker's products as messages
    ros/diagnostics.py        the two statuses on /diagnostics
    ros/params.py             the parameters and the configs they set
Here: the requests (~/render_pose, the ~/save and ~/reset services, std_srvs/Trigger), the
timers, and main(). REP 103/105 and every topic: README "ROS 2" and docs/ros2.md.

    nvs_node --ros-args --params-file config/nvs.yaml -r /camera/image_raw:=/my/image
"""

import logging
import sys
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import asdict

import rclpy
import rclpy.logging
import torch
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from nvs_ros.app.frame_intake import FrameIntake
from nvs_ros.app.scene_worker import RenderRequest, SceneWorker
from nvs_ros.baselines.feature_chaining import chained_keyframe_poses
from nvs_ros.core.errors import NvsError
from nvs_ros.core.live_scene_config import LiveSceneConfig
from nvs_ros.io.datasets import FEATURE_MAX_SIDE
from nvs_ros.ros import WARNING_PERIOD_S
from nvs_ros.ros.camera_input import CameraInput
from nvs_ros.ros.diagnostics import camera_input_status, scene_status
from nvs_ros.ros.odometry import CameraOdometry
from nvs_ros.ros.outbox_publisher import OutboxPublisher
from nvs_ros.ros.params import ParameterError, declare_node_config
from nvs_ros.ros.pose_tf import PoseTf
from nvs_ros.ros.qos import TF_LISTENER_QOS, TF_STATIC_LISTENER_QOS
from nvs_ros.ros.tf_broadcaster import TfBroadcaster
from nvs_ros.ros.tf_tree import TfTree
from nvs_ros.ros.transforms import pose_to_matrix, stamp_to_ns

RCLError = rclpy_implementation.RCLError
SERVICE_SLACK_S = 120.0
"""A service waits for the worker at most one training round + one slice + this."""
EXIT_ERROR = 1
"""A mistake the user can correct (nvs_ros.core.errors.NvsError) stopped the start: one log line."""
EXIT_PARAMETER = 2
"""A parameter has a wrong type or value (ParameterError; argparse's code for a bad argument)."""


class NvsNode(Node):
    """The node's parts wired to one rclpy Node; the requests are served here."""

    def __init__(self, **kwargs) -> None:
        super().__init__("nvs_node", **kwargs)
        self.config = config = declare_node_config(self)
        self._started_at = time.monotonic()
        if config.torch_threads:
            torch.set_num_threads(config.torch_threads)
        self.worker = SceneWorker(
            config.live_scene_config(), slice_s=config.train_slice_s, queue_size=config.keyframe_queue_size,
            cloud_points=config.cloud_max_points, run_info={"config": asdict(config)},
            on_products=lambda: self._products_ready.trigger(),
            chained_poses=chained_keyframe_poses if config.initial_poses == "auto" else None,
            runtime=config.runtime_config())

        self.tf_tree = TfTree(ignored_parents=[config.map_frame])
        self.create_subscription(TFMessage, "/tf", self.tf_tree.add, TF_LISTENER_QOS)
        self.create_subscription(TFMessage, "/tf_static", lambda msg: self.tf_tree.add(msg, static=True),
                                 TF_STATIC_LISTENER_QOS)
        self.odometry = CameraOdometry(self.tf_tree, config.odom_frame, self.get_logger())
        intake = FrameIntake(self.worker, config.keyframe_config(), config.working_max_side, config.track_rate_hz,
                             features_max_side=FEATURE_MAX_SIDE if config.initial_poses == "auto" else None)
        self.camera = CameraInput(self, config, intake, self.odometry)
        self.create_subscription(PoseStamped, "~/render_pose", self._on_render_pose, 10)

        broadcaster = TfBroadcaster(self)
        self.pose_tf = PoseTf(broadcaster, self.get_clock(), self.get_logger(), self.worker, self.odometry,
                              config.map_frame, lambda: self.camera.frame,
                              tracking=config.track_rate_hz > 0, period_s=config.tf_period_s)
        self._outbox_publisher = OutboxPublisher(self, self.pose_tf, broadcaster, config.map_frame,
                                                lambda: self.camera.frame, config.frustum_size)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._products_ready = self.create_guard_condition(self._publish_products)
        # /diagnostics on the steady clock: with use_sim_time a replay's /clock stops with the bag,
        # and the status (frames taken in, rounds, the verdict) must go on after it.
        self.create_timer(config.diagnostics_period_s, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_timer(config.tf_period_s, self.pose_tf.resend)
        # Services wait for the worker: their own group lets the executor's other thread keep
        # taking images meanwhile.
        services = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "~/save", self._on_save, callback_group=services)
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=services)
        _forward_logs(self)
        self.worker.start()
        self.get_logger().info(f"listening on {config.image_topic} ({config.image_transport}) "
                               f"and {config.camera_info_topic}; training starts at "
                               f"{config.min_keyframes} keyframes on {config.device}"
                               + (f" (or at {LiveSceneConfig.min_round_keyframes} or more after {config.idle_round_s:g} s without a new one)"
                                  if config.idle_round_s else ""))

    def destroy_node(self) -> None:
        # rclpy's shutdown destroys a node whose __init__ failed (bad parameter): parts may be missing.
        if hasattr(self, "camera"):
            self.camera.stop()
        if hasattr(self, "worker"):
            self.worker.stop()
        super().destroy_node()

    # --- requests -----------------------------------------------------------------------
    def _on_render_pose(self, msg: PoseStamped) -> None:
        frame = msg.header.frame_id.lstrip("/")
        if frame not in ("", self.config.map_frame):
            self.get_logger().warning(f"render pose ignored: it is in frame {frame!r}, expected "
                                      f"{self.config.map_frame!r}", throttle_duration_sec=WARNING_PERIOD_S)
            return
        if self.camera.intake.render_camera is None:
            self.get_logger().warning("render pose ignored: no camera frame received yet (its intrinsics "
                                      "are the rendered view's)", throttle_duration_sec=WARNING_PERIOD_S)
            return
        try:
            c2w_44 = pose_to_matrix(msg.pose)
        except ValueError as err:
            self.get_logger().warning(f"render pose ignored: {err}", throttle_duration_sec=WARNING_PERIOD_S)
            return
        K_33, width, height = self.camera.intake.render_camera
        self.worker.request_render(RenderRequest(K_33, c2w_44, width, height, stamp_to_ns(msg.header.stamp)))

    def _on_save(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._wait_for(self.worker.request_save(self.config.output_path), response, "save")

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._wait_for(self.worker.request_reset(), response, "reset")

    def _wait_for(self, future: Future, response: Trigger.Response, what: str) -> Trigger.Response:
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
        self._outbox_publisher.publish(self.worker.take_products(), self.get_clock().now().to_msg())

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray(status=[camera_input_status(self.get_name(), self.camera, self.config.image_topic),
                                        scene_status(self.get_name(), self.worker, self.pose_tf, self.odometry,
                                                     self.config, self._waiting_s())])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)

    def _waiting_s(self) -> float:
        """How long the scene has waited for its first products: since the first keyframe (or
        since the node started, when none has come)."""
        first = self.worker.stats.first_frame_at
        return time.monotonic() - (first if first is not None else self._started_at)


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
            try:
                node = NvsNode()
            except NvsError as err:
                # A mistake the user can correct: its one line, no traceback (anything else is a bug).
                rclpy.logging.get_logger("nvs_node").error(str(err))
                return EXIT_PARAMETER if isinstance(err, ParameterError) else EXIT_ERROR
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
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
