"""Keyframe poses as nav_msgs/Path: one PoseStamped per posed keyframe, oldest first."""

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path

from nvs_ros.ros.transforms import matrix_to_pose, ns_to_stamp


def keyframe_path(c2w_N44: np.ndarray, stamps_ns: list[int], frame_id: str, stamp: Time) -> Path:
    """Camera-to-`frame_id` poses (optical axes) -> Path sorted by capture time.

    Each pose keeps its keyframe's capture stamp; keyframes without a finite pose are left out.
    """
    if len(c2w_N44) != len(stamps_ns):
        raise ValueError(f"{len(c2w_N44)} poses but {len(stamps_ns)} stamps")
    path = Path()
    path.header.frame_id = frame_id
    path.header.stamp = stamp
    for i in np.argsort(np.asarray(stamps_ns, dtype=np.int64), kind="stable"):
        if not np.isfinite(c2w_N44[i]).all():
            continue
        pose = PoseStamped(pose=matrix_to_pose(c2w_N44[i]))
        pose.header.frame_id = frame_id
        pose.header.stamp = ns_to_stamp(stamps_ns[i])
        path.poses.append(pose)
    return path
