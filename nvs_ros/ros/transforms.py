"""4x4 rigid transforms <-> geometry_msgs Transform / Pose, and stamps <-> nanoseconds.

A 4x4 `T_parent_child_44` maps points in the child frame to the parent frame (for a camera
pose, camera-to-world = `T_map_camera_44`), the same meaning as a TransformStamped with
`header.frame_id = parent` and `child_frame_id = child`. Quaternions are (x, y, z, w) as in
geometry_msgs, unit length, with w >= 0. Matrices are float64.
"""

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, Quaternion, Transform, TransformStamped, Vector3

from nvs_ros.core.rotations import quaternion_xyzw, rotation_matrix

_NS_PER_S = 1_000_000_000
_INT32_MAX = 2**31 - 1
_ROTATION_TOLERANCE = 1e-4  # |R^T R - I|: float32 round-off passes, a scaled matrix does not


def ns_to_stamp(stamp_ns: int) -> Time:
    """Integer nanoseconds since the epoch -> builtin_interfaces/Time (nanosec in [0, 1e9))."""
    sec, nanosec = divmod(int(stamp_ns), _NS_PER_S)
    if not -_INT32_MAX - 1 <= sec <= _INT32_MAX:
        raise ValueError(f"stamp {stamp_ns} ns does not fit builtin_interfaces/Time (int32 seconds)")
    return Time(sec=sec, nanosec=nanosec)


def stamp_to_ns(stamp: Time) -> int:
    """builtin_interfaces/Time -> integer nanoseconds since the epoch."""
    return stamp.sec * _NS_PER_S + stamp.nanosec


def matrix_to_transform(T_44: np.ndarray) -> Transform:
    """Rigid 4x4 -> geometry_msgs/Transform. Raises ValueError for a non-rigid or NaN matrix."""
    R_33, t_3 = _check_rigid(T_44)
    x, y, z, w = _quaternion_xyzw(R_33)
    return Transform(
        translation=Vector3(x=float(t_3[0]), y=float(t_3[1]), z=float(t_3[2])),
        rotation=Quaternion(x=x, y=y, z=z, w=w),
    )


def matrix_to_transform_stamped(
    T_parent_child_44: np.ndarray, parent: str, child: str, stamp: Time | int
) -> TransformStamped:
    """Rigid 4x4 child-to-parent -> TransformStamped `parent -> child`.

    `stamp` is a builtin_interfaces/Time or integer nanoseconds (take it from the source image).
    """
    if not parent or not child:
        raise ValueError(f"frame ids must be non-empty, got parent={parent!r} child={child!r}")
    if parent == child:
        raise ValueError(f"a transform needs two different frames, got {parent!r} twice")
    msg = TransformStamped(child_frame_id=child, transform=matrix_to_transform(T_parent_child_44))
    msg.header.frame_id = parent
    msg.header.stamp = stamp if isinstance(stamp, Time) else ns_to_stamp(stamp)
    return msg


def transform_to_matrix(transform: Transform | TransformStamped) -> np.ndarray:
    """geometry_msgs/Transform (or TransformStamped) -> 4x4 float64 child-to-parent."""
    if isinstance(transform, TransformStamped):
        transform = transform.transform
    t, q = transform.translation, transform.rotation
    return _matrix([t.x, t.y, t.z], [q.x, q.y, q.z, q.w])


def matrix_to_pose(T_44: np.ndarray) -> Pose:
    """Rigid 4x4 -> geometry_msgs/Pose (position = translation column)."""
    R_33, t_3 = _check_rigid(T_44)
    x, y, z, w = _quaternion_xyzw(R_33)
    return Pose(
        position=Point(x=float(t_3[0]), y=float(t_3[1]), z=float(t_3[2])),
        orientation=Quaternion(x=x, y=y, z=z, w=w),
    )


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4 float64."""
    p, q = pose.position, pose.orientation
    return _matrix([p.x, p.y, p.z], [q.x, q.y, q.z, q.w])


def _check_rigid(T_44: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (R_33, t_3) of a rigid 4x4; a NaN, scaled or reflecting matrix is a ValueError."""
    T_44 = np.asarray(T_44, dtype=np.float64)
    if T_44.shape != (4, 4):
        raise ValueError(f"expected a 4x4 transform, got shape {T_44.shape}")
    if not np.all(np.isfinite(T_44)):
        raise ValueError(f"transform has non-finite values:\n{T_44}")
    if not np.allclose(T_44[3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError(f"transform's last row must be [0, 0, 0, 1], got {T_44[3]}")
    R_33 = T_44[:3, :3]
    error = np.abs(R_33.T @ R_33 - np.eye(3)).max()
    if error > _ROTATION_TOLERANCE or np.linalg.det(R_33) < 0:
        raise ValueError(
            f"transform's 3x3 block is not a rotation (|R^T R - I| = {error:.2e}, "
            f"det = {np.linalg.det(R_33):.4f})"
        )
    return R_33, T_44[:3, 3]


def _quaternion_xyzw(R_33: np.ndarray) -> tuple[float, float, float, float]:
    x, y, z, w = quaternion_xyzw(R_33)
    return float(x), float(y), float(z), float(w)


def _matrix(t_3: list[float], q_xyzw: list[float]) -> np.ndarray:
    if not np.all(np.isfinite(t_3)):
        raise ValueError(f"invalid transform: translation {t_3}")
    T_44 = np.eye(4)
    T_44[:3, :3] = rotation_matrix(q_xyzw)
    T_44[:3, 3] = t_3
    return T_44
