"""nvs_ros.ros.transforms: 4x4 <-> Transform / Pose round trips, quaternion convention, stamps."""

import numpy as np
import pytest

pytest.importorskip("rclpy")
from builtin_interfaces.msg import Time  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from nvs_ros.ros.transforms import (  # noqa: E402
    matrix_to_pose,
    matrix_to_transform_stamped,
    ns_to_stamp,
    pose_to_matrix,
    stamp_to_ns,
    transform_to_matrix,
)


def random_rigid_N44(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    T_N44 = np.tile(np.eye(4), (n, 1, 1))
    T_N44[:, :3, :3] = Rotation.random(n, random_state=seed).as_matrix()
    T_N44[:, :3, 3] = rng.uniform(-10, 10, (n, 3))
    return T_N44


def test_transform_round_trip_and_quaternion_convention():
    for T_44 in random_rigid_N44(20):
        msg = matrix_to_transform_stamped(T_44, "map", "camera_optical_frame", 5)
        assert (msg.header.frame_id, msg.child_frame_id) == ("map", "camera_optical_frame")
        q = msg.transform.rotation
        assert np.isclose(np.linalg.norm([q.x, q.y, q.z, q.w]), 1.0) and q.w >= 0.0
        np.testing.assert_allclose(transform_to_matrix(msg), T_44, atol=1e-12)
        np.testing.assert_allclose(transform_to_matrix(msg.transform), T_44, atol=1e-12)


def test_known_rotation_is_xyzw():
    T_44 = np.eye(4)
    T_44[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # +90 degrees about z
    T_44[:3, 3] = [1.0, 2.0, 3.0]
    tf = matrix_to_transform_stamped(T_44, "a", "b", 0).transform
    s = np.sqrt(0.5)
    np.testing.assert_allclose([tf.rotation.x, tf.rotation.y, tf.rotation.z, tf.rotation.w], [0, 0, s, s])
    assert (tf.translation.x, tf.translation.y, tf.translation.z) == (1.0, 2.0, 3.0)


def test_pose_round_trip():
    for T_44 in random_rigid_N44(20, seed=1):
        pose = matrix_to_pose(T_44)
        assert (pose.position.x, pose.position.y, pose.position.z) == tuple(T_44[:3, 3])
        np.testing.assert_allclose(pose_to_matrix(pose), T_44, atol=1e-12)


def test_unnormalised_quaternion_is_normalised_on_read():
    pose = matrix_to_pose(np.eye(4))
    pose.orientation.z, pose.orientation.w = 2.0, 2.0  # 90 degrees about z, length 2.83
    R_33 = pose_to_matrix(pose)[:3, :3]
    np.testing.assert_allclose(R_33, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)


@pytest.mark.parametrize(
    ("T_44", "match"),
    [
        (np.diag([2.0, 2.0, 2.0, 1.0]), "not a rotation"),
        (np.diag([1.0, 1.0, -1.0, 1.0]), "not a rotation"),  # a reflection
        (np.full((4, 4), np.nan), "non-finite"),
        (np.eye(3), "4x4"),
        (np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1.0]]), "last row"),
    ],
)
def test_non_rigid_matrices_are_rejected(T_44, match):
    with pytest.raises(ValueError, match=match):
        matrix_to_transform_stamped(T_44, "map", "camera", 0)
    with pytest.raises(ValueError, match=match):
        matrix_to_pose(T_44)


def test_frame_ids_are_checked():
    with pytest.raises(ValueError, match="non-empty"):
        matrix_to_transform_stamped(np.eye(4), "", "camera", 0)
    with pytest.raises(ValueError, match="twice"):
        matrix_to_transform_stamped(np.eye(4), "map", "map", 0)


def test_zero_quaternion_is_rejected():
    pose = matrix_to_pose(np.eye(4))
    pose.orientation.w = 0.0
    with pytest.raises(ValueError, match="quaternion"):
        pose_to_matrix(pose)


@pytest.mark.parametrize("stamp_ns", [0, 1, 1_700_000_000_123_456_789, -1, -1_500_000_000, 2**31 * 10**9 - 1])
def test_stamp_round_trip(stamp_ns):
    stamp = ns_to_stamp(stamp_ns)
    assert 0 <= stamp.nanosec < 1_000_000_000
    assert stamp_to_ns(stamp) == stamp_ns


def test_stamp_conversions_match_rclpy_and_stamp_arguments():
    from rclpy.time import Time as RclpyTime

    stamp_ns = 1_700_000_000_987_654_321
    assert ns_to_stamp(stamp_ns) == RclpyTime(nanoseconds=stamp_ns).to_msg()
    from_int = matrix_to_transform_stamped(np.eye(4), "a", "b", np.int64(stamp_ns)).header.stamp
    from_msg = matrix_to_transform_stamped(np.eye(4), "a", "b", Time(sec=3, nanosec=4)).header.stamp
    assert stamp_to_ns(from_int) == stamp_ns
    assert (from_msg.sec, from_msg.nanosec) == (3, 4)
    with pytest.raises(ValueError, match="int32"):
        ns_to_stamp(2**31 * 10**9)
