"""The scene worker's Outbox as messages: keyframe path, point cloud, frusta, views, the tracked
pose, and the camera pose on /tf (through PoseTf).

    ~/keyframe_path           nav_msgs/Path, reliable + transient local
    ~/point_cloud             sensor_msgs/PointCloud2 x y z rgb, reliable + transient local
    ~/keyframe_frusta         visualization_msgs/MarkerArray, reliable + transient local
    ~/latest_view[_depth]     the view from the newest keyframe after each training round
    ~/rendered_image, ~/rendered_depth   the view from a pose sent to ~/render_pose, with
                              map -> RENDER_FRAME on /tf
    ~/tracked_pose            geometry_msgs/PoseWithCovarianceStamped of frames posed between keyframes
"""

from collections.abc import Callable

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Path as PathMsg
from rclpy.node import Node
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from nvs_ros.app.scene_worker import Outbox, RenderedView, TrackedFrame
from nvs_ros.core.live_scene import KeyframePoses
from nvs_ros.ros.image_conversion import numpy_to_image_msg
from nvs_ros.ros.keyframe_path import keyframe_path
from nvs_ros.ros.markers import frustum_depth, frustum_markers
from nvs_ros.ros.point_cloud_msg import point_cloud_msg
from nvs_ros.ros.pose_tf import PoseTf
from nvs_ros.ros.qos import LATCHED_QOS, RELIABLE_IMAGE_QOS
from nvs_ros.ros.tf_broadcaster import TfBroadcaster
from nvs_ros.ros.tracked_pose import tracked_pose_msg, trajectory_extent
from nvs_ros.ros.transforms import matrix_to_transform_stamped, ns_to_stamp, stamp_to_ns

RENDER_FRAME = "nvs_render_optical_frame"
"""Optical frame of views rendered on request (map -> it is sent with each one)."""


class OutboxPublisher:
    """Creates the product publishers on `node` and publishes each Outbox the worker hands over."""

    def __init__(self, node: Node, pose_tf: PoseTf, broadcaster: TfBroadcaster, map_frame: str,
                 camera_frame: Callable[[], str], frustum_size: float) -> None:
        self._pose_tf = pose_tf
        self._broadcaster = broadcaster
        self._map_frame = map_frame
        self._camera_frame = camera_frame
        self._frustum_size = frustum_size
        self._trajectory_extent = 0.0
        """Of the keyframe poses: the tracked pose's covariance is relative to it."""
        self._path_pub = node.create_publisher(PathMsg, "~/keyframe_path", LATCHED_QOS)
        self._cloud_pub = node.create_publisher(PointCloud2, "~/point_cloud", LATCHED_QOS)
        self._frusta_pub = node.create_publisher(MarkerArray, "~/keyframe_frusta", LATCHED_QOS)
        self._tracked_pub = node.create_publisher(PoseWithCovarianceStamped, "~/tracked_pose", 10)
        self._view_pubs = {name: node.create_publisher(Image, f"~/{name}", RELIABLE_IMAGE_QOS)
                           for name in ("latest_view", "latest_view_depth", "rendered_image", "rendered_depth")}

    def publish(self, outbox: Outbox, now: Time) -> None:
        if outbox.cleared:
            self._pose_tf.clear()
            self._publish_poses(KeyframePoses([], [], np.zeros((0, 4, 4)), np.zeros(0), np.zeros((0, 3, 3)),
                                              np.zeros((0, 2), int)), now)
            self._cloud_pub.publish(point_cloud_msg(np.zeros((0, 3)), np.zeros((0, 3), np.uint8),
                                                    self._map_frame, now))
        if outbox.poses is not None:  # the tracked pose's covariance is relative to their extent
            self._trajectory_extent = trajectory_extent(outbox.poses.c2w_N44)
        if outbox.tracked is not None:  # before the poses: with tracking, the newer pose wins TF
            self._publish_tracked(outbox.tracked)
        if outbox.poses is not None:
            self._publish_poses(outbox.poses, now)
        if outbox.cloud is not None:
            self._cloud_pub.publish(point_cloud_msg(*outbox.cloud, self._map_frame, now))
        if outbox.latest_view is not None:
            self._publish_view(outbox.latest_view, "latest_view", self._camera_frame())
        if outbox.rendered is not None:
            view = outbox.rendered
            self._broadcaster.send([matrix_to_transform_stamped(view.c2w_44, self._map_frame, RENDER_FRAME,
                                                                view.stamp_ns)])
            self._publish_view(view, "rendered_image", RENDER_FRAME, depth_topic="rendered_depth")

    def _publish_poses(self, poses: KeyframePoses, now: Time) -> None:
        self._path_pub.publish(keyframe_path(poses.c2w_N44, poses.stamps_ns, self._map_frame, now))
        self._frusta_pub.publish(frustum_markers(poses.K_N33, poses.c2w_N44, poses.sizes_N2, self._map_frame, now,
                                                 frustum_depth(poses.c2w_N44, self._frustum_size)))
        self._pose_tf.send_keyframe_poses(poses, stamp_to_ns(now))

    def _publish_tracked(self, tracked: TrackedFrame) -> None:
        """An accepted frame's pose on ~/tracked_pose, and on /tf when it is newer than the pose
        there; a rejected frame changes nothing (the worker counts it)."""
        if not tracked.accepted or self._pose_tf.withhold_untrusted():
            return
        self._tracked_pub.publish(tracked_pose_msg(tracked.c2w_44, tracked.confidence, self._trajectory_extent,
                                                   self._map_frame, tracked.stamp_ns))
        self._pose_tf.send_tracked(tracked)

    def _publish_view(self, view: RenderedView, topic: str, frame_id: str, depth_topic: str = "") -> None:
        header = Header(frame_id=frame_id, stamp=ns_to_stamp(view.stamp_ns))
        self._view_pubs[topic].publish(numpy_to_image_msg(view.rgb_HW3, "rgb8", header))
        self._view_pubs[depth_topic or f"{topic}_depth"].publish(
            numpy_to_image_msg(np.ascontiguousarray(view.depth_HW, dtype=np.float32), "32FC1", header))
