"""Message builders of nvs_node's products, without DDS: cloud, frusta, path, TF tree."""

import numpy as np
import pytest

pytest.importorskip("rclpy")
from geometry_msgs.msg import TransformStamped  # noqa: E402
from sensor_msgs.msg import PointField  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from nvs_ros.core.cameras import intrinsics_matrix  # noqa: E402
from nvs_ros.ros.keyframe_path import keyframe_path  # noqa: E402
from nvs_ros.ros.markers import frustum_depth, frustum_markers  # noqa: E402
from nvs_ros.ros.point_cloud_msg import (pack_rgb, point_cloud_from_msg, point_cloud_msg,  # noqa: E402
                                         unpack_rgb)
from nvs_ros.ros.tf_tree import TfTree, map_to_odom  # noqa: E402
from nvs_ros.ros.transforms import (matrix_to_transform_stamped, ns_to_stamp, pose_to_matrix,  # noqa: E402
                                    stamp_to_ns)


def random_pose(rng: np.random.Generator) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    T_44 = np.eye(4)
    T_44[:3, :3] = Rotation.from_rotvec(rng.normal(size=3)).as_matrix()
    T_44[:3, 3] = rng.normal(size=3)
    return T_44


def test_rgb_packing_is_rviz_layout_and_round_trips():
    rgb_P3 = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [18, 52, 86]], np.uint8)
    packed_P = pack_rgb(rgb_P3)
    assert packed_P.dtype == np.float32
    assert packed_P.view(np.uint32).tolist() == [0xFF0000, 0x00FF00, 0x0000FF, 0x123456]
    every_P3 = np.random.default_rng(0).integers(0, 256, (1000, 3), dtype=np.uint8)
    np.testing.assert_array_equal(unpack_rgb(pack_rgb(every_P3)), every_P3)
    with pytest.raises(ValueError, match="uint8"):
        pack_rgb(every_P3.astype(np.float32))


def test_point_cloud_msg_fields_offsets_and_round_trip():
    rng = np.random.default_rng(1)
    xyz_P3 = rng.normal(size=(50, 3)).astype(np.float32)
    xyz_P3[7] = np.nan  # dropped: RViz and PCL expect is_dense clouds to be finite
    rgb_P3 = rng.integers(0, 256, (50, 3), dtype=np.uint8)
    msg = point_cloud_msg(xyz_P3, rgb_P3, "map", ns_to_stamp(5))
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1), ("rgb", 12, PointField.FLOAT32, 1)]
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 49, 16, 16 * 49)
    assert msg.is_dense and len(msg.data) == 16 * 49 and msg.header.frame_id == "map"
    back_xyz, back_rgb = point_cloud_from_msg(msg)
    keep = np.arange(50) != 7
    np.testing.assert_array_equal(back_xyz, xyz_P3[keep])
    np.testing.assert_array_equal(back_rgb, rgb_P3[keep])
    empty = point_cloud_msg(np.zeros((0, 3)), np.zeros((0, 3), np.uint8), "map", ns_to_stamp(0))
    assert empty.width == 0 and len(empty.data) == 0


def test_frustum_markers_one_line_list_per_finite_pose_after_a_delete_all():
    rng = np.random.default_rng(2)
    c2w_N44 = np.stack([random_pose(rng) for _ in range(3)])
    c2w_N44[1] = np.nan
    K_N33 = np.stack([intrinsics_matrix(40.0, 40.0, 16.0, 12.0)] * 3)
    sizes_N2 = np.array([[32, 24]] * 3)
    depth = frustum_depth(c2w_N44[[0, 2]], 0.1)
    markers = frustum_markers(K_N33, c2w_N44, sizes_N2, "map", ns_to_stamp(1), depth).markers
    assert markers[0].action == Marker.DELETEALL
    assert [m.id for m in markers[1:]] == [0, 2]
    for marker, c2w_44 in zip(markers[1:], c2w_N44[[0, 2]]):
        assert marker.type == Marker.LINE_LIST and marker.header.frame_id == "map"
        points_P3 = np.array([[p.x, p.y, p.z] for p in marker.points])
        assert len(points_P3) == 16  # 8 segments: 4 edges from the centre + 4 image-rectangle sides
        np.testing.assert_allclose(points_P3[0], c2w_44[:3, 3])
        # Every far corner sits `depth` in front of the camera along its optical axis.
        corners_cam = (points_P3[1:8:2] - c2w_44[:3, 3]) @ c2w_44[:3, :3]
        np.testing.assert_allclose(corners_cam[:, 2], depth)
    assert markers[-1].color != markers[1].color  # the newest keyframe stands out
    centres = c2w_N44[[0, 2], :3, 3]
    assert depth == pytest.approx(0.1 * np.linalg.norm(centres - centres.mean(0), axis=1).max())


def test_keyframe_path_sorted_by_stamp_skipping_unposed():
    rng = np.random.default_rng(3)
    c2w_N44 = np.stack([random_pose(rng) for _ in range(3)])
    c2w_N44[0] = np.nan
    path = keyframe_path(c2w_N44, [30, 10, 20], "map", ns_to_stamp(99))
    assert path.header.frame_id == "map"
    assert [stamp_to_ns(p.header.stamp) for p in path.poses] == [10, 20]
    np.testing.assert_allclose(pose_to_matrix(path.poses[0].pose), c2w_N44[1], atol=1e-9)


def tf_message(*transforms: TransformStamped) -> TFMessage:
    return TFMessage(transforms=list(transforms))


def test_tf_tree_finds_the_camera_under_odom_and_gives_map_to_odom():
    rng = np.random.default_rng(4)
    T_odom_base_at = {100: random_pose(rng), 200: random_pose(rng)}
    T_base_cam = random_pose(rng)
    tree = TfTree(ignored_parents=["map"])
    tree.add(tf_message(matrix_to_transform_stamped(T_base_cam, "base_link", "cam_optical", 0)), static=True)
    assert not tree.connected("odom", "cam_optical")
    for stamp, T in T_odom_base_at.items():
        tree.add(tf_message(matrix_to_transform_stamped(T, "odom", "base_link", stamp)))
    # nvs_node's own map -> camera on /tf must not make map the camera's parent.
    tree.add(tf_message(matrix_to_transform_stamped(np.eye(4), "map", "cam_optical", 150)))
    assert tree.ancestors("cam_optical") == ["base_link", "odom"]
    assert tree.connected("odom", "cam_optical")

    T_odom_cam = tree.lookup("odom", "cam_optical", 190)  # nearest sample: 200
    np.testing.assert_allclose(T_odom_cam, T_odom_base_at[200] @ T_base_cam, atol=1e-9)
    # A keyframe's prior needs odometry near its stamp (static links have no stamp to check).
    np.testing.assert_allclose(tree.lookup("odom", "cam_optical", 190, max_offset_ns=10), T_odom_cam)
    with pytest.raises(LookupError, match="within"):
        tree.lookup("odom", "cam_optical", 260, max_offset_ns=50)
    T_map_cam = random_pose(rng)
    T_map_odom = map_to_odom(T_map_cam, T_odom_cam)
    np.testing.assert_allclose(T_map_odom @ T_odom_cam, T_map_cam, atol=1e-9)
    with pytest.raises(LookupError, match="no TF chain"):
        tree.lookup("odom", "other_frame")
