"""A tracked frame's pose as geometry_msgs/PoseWithCovarianceStamped, its covariance from the
registration's confidence.

The confidence (core.registration: how well the pose explains the frame, 0..1, frames below 0.5
rejected) is no calibrated uncertainty, so the covariance is a scale for consumers that weigh
poses (an EKF), not a measurement: diagonal, standard deviations
    position    TRACKED_POSITION_SIGMA x the keyframe trajectory's extent / confidence
    orientation TRACKED_ROTATION_SIGMA_RAD / confidence  (about the map's x, y, z axes)
so an accepted frame's lie between 1 and 2 times those of a perfect fit. The position's is
relative to the trajectory because monocular poses have no metric scale (with odometry the
map is in metres and so is the covariance).
"""

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped

from nvs_ros.ros.transforms import matrix_to_pose, ns_to_stamp

TRACKED_POSITION_SIGMA = 0.05
"""Position standard deviation at confidence 1, as a fraction of the trajectory's extent."""
TRACKED_ROTATION_SIGMA_RAD = 0.05
"""Orientation standard deviation at confidence 1 (about 3 degrees: registration's median error
on chair is 2.8)."""
MIN_CONFIDENCE = 0.01
"""Confidences are clamped to this (a rejected frame's may be 0)."""


def trajectory_extent(c2w_N44: np.ndarray) -> float:
    """Largest distance of a camera centre from their centroid (0 for fewer than two poses)."""
    centres_N3 = np.asarray(c2w_N44, dtype=np.float64).reshape(-1, 4, 4)[:, :3, 3]
    centres_N3 = centres_N3[np.isfinite(centres_N3).all(axis=1)]
    if len(centres_N3) < 2:
        return 0.0
    return float(np.linalg.norm(centres_N3 - centres_N3.mean(axis=0), axis=1).max())


def tracked_pose_msg(c2w_44: np.ndarray, confidence: float, extent: float, frame_id: str,
                     stamp_ns: int) -> PoseWithCovarianceStamped:
    """Camera-to-`frame_id` pose (optical axes) at the frame's stamp, covariance as above."""
    scale = 1.0 / max(float(confidence), MIN_CONFIDENCE)
    position_var = (TRACKED_POSITION_SIGMA * extent * scale) ** 2
    rotation_var = (TRACKED_ROTATION_SIGMA_RAD * scale) ** 2
    msg = PoseWithCovarianceStamped()
    msg.header.frame_id = frame_id
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.pose.pose = matrix_to_pose(c2w_44)
    msg.pose.covariance = np.diag([position_var] * 3 + [rotation_var] * 3).ravel().tolist()
    return msg
