"""Rotation matrices <-> unit quaternions in (x, y, z, w) order, the order of ROS messages and
TUM trajectories, through scipy: one convention for every message, bag and file we write."""

import numpy as np
from scipy.spatial.transform import Rotation

from nvs_ros.core.errors import InputError


def quaternion_xyzw(R_33: np.ndarray) -> np.ndarray:
    """(4,) unit quaternion of a rotation matrix, w >= 0 (the same rotation always gives the
    same numbers, so messages and files compare equal)."""
    return Rotation.from_matrix(np.asarray(R_33, dtype=np.float64)).as_quat(canonical=True)


def rotation_matrix(q_xyzw: np.ndarray | list[float]) -> np.ndarray:
    """(3, 3) rotation of a quaternion (x, y, z, w), normalised first: senders round them.
    InputError for a quaternion that is no rotation (zero or not finite)."""
    q_4 = np.asarray(q_xyzw, dtype=np.float64)
    norm = float(np.linalg.norm(q_4))
    if not np.isfinite(norm) or norm < 1e-9:
        raise InputError(f"quaternion (x, y, z, w) {q_4.tolist()} is no rotation")
    return Rotation.from_quat(q_4 / norm).as_matrix()
