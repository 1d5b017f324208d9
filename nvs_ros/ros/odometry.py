"""The camera's odometry pose from TF: T_odom_camera at an image stamp, when TF connects
`odom_frame` to the camera frame (an odometry tree: odom -> base_link -> camera)."""

import numpy as np
from rclpy.impl.rcutils_logger import RcutilsLogger

from nvs_ros.ros import WARNING_PERIOD_S
from nvs_ros.ros.tf_tree import TfTree

ODOMETRY_MAX_OFFSET_NS = 100_000_000
"""A keyframe's odometry prior is the nearest TF sample within this of its stamp (odometry at
10 Hz or faster); without one (TF not there yet) the keyframe goes without a prior."""


class CameraOdometry:
    """Odometry lookups in the node's TfTree for a camera frame; counts the keyframes that got a
    prior and those that found none (/diagnostics)."""

    def __init__(self, tf_tree: TfTree, odom_frame: str, logger: RcutilsLogger) -> None:
        self.tf_tree = tf_tree
        self.odom_frame = odom_frame
        """Empty: the camera is never taken to be in an odometry tree."""
        self._logger = logger
        self.keyframes_with_odometry = 0
        self.keyframes_without_odometry = 0
        """Keyframes offered while the camera is in an odometry tree whose TF at their stamp was missing."""

    def connected(self, camera_frame: str) -> bool:
        return bool(self.odom_frame) and self.tf_tree.connected(self.odom_frame, camera_frame)

    def prior(self, camera_frame: str, stamp_ns: int) -> np.ndarray | None:
        """A keyframe's prior: T_odom_camera at its stamp when the camera is in an odometry tree
        and TF has it, else None (counted either way)."""
        if not self.connected(camera_frame):
            return None
        try:
            prior = self._at(camera_frame, stamp_ns)
        except LookupError as err:
            self.keyframes_without_odometry += 1
            self._logger.warning(f"keyframe without odometry prior: {err}", throttle_duration_sec=WARNING_PERIOD_S)
            return None
        self.keyframes_with_odometry += 1
        return prior

    def pose(self, camera_frame: str, stamp_ns: int) -> np.ndarray | None:
        """A tracked frame's T_odom_camera at its stamp, None when TF has none near it (map ->
        odom then takes the nearest sample when it is sent, as for keyframes)."""
        if not self.connected(camera_frame):
            return None
        try:
            return self._at(camera_frame, stamp_ns)
        except LookupError:
            return None

    def nearest(self, camera_frame: str, stamp_ns: int) -> np.ndarray:
        """T_odom_camera from the samples nearest `stamp_ns`, however far; LookupError when TF
        does not connect them."""
        return self.tf_tree.lookup(self.odom_frame, camera_frame, stamp_ns)

    def _at(self, camera_frame: str, stamp_ns: int) -> np.ndarray:
        return self.tf_tree.lookup(self.odom_frame, camera_frame, stamp_ns, max_offset_ns=ODOMETRY_MAX_OFFSET_NS)
