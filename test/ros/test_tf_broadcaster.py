"""TfBroadcaster / StaticTfBroadcaster in one process: QoS as tf2 listeners expect, content, latching."""

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.node import Node  # noqa: E402
from rclpy.qos import (  # noqa: E402
    DurabilityPolicy,
    HistoryPolicy,
    QoSCompatibility,
    QoSProfile,
    ReliabilityPolicy,
    qos_check_compatible,
)
from tf2_msgs.msg import TFMessage  # noqa: E402

from nvs_ros.ros.qos import TF_QOS, TF_STATIC_QOS  # noqa: E402
from nvs_ros.ros.tf_broadcaster import StaticTfBroadcaster, TfBroadcaster  # noqa: E402
from nvs_ros.ros.transforms import matrix_to_transform_stamped, transform_to_matrix  # noqa: E402

pytestmark = pytest.mark.ros
TIMEOUT_S = 10.0

# Exactly what tf2_ros.TransformListener subscribes with (geometry2 1b005c6,
# tf2_ros_py/tf2_ros/transform_listener.py), written out independently of nvs_ros.ros.qos.
TF2_LISTENER_QOS = QoSProfile(depth=100, durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
TF2_STATIC_LISTENER_QOS = QoSProfile(
    depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST
)


def translation_44(x: float, y: float, z: float) -> np.ndarray:
    T_44 = np.eye(4)
    T_44[:3, 3] = [x, y, z]
    return T_44


def by_child(msg: TFMessage) -> dict[str, tuple[str, np.ndarray]]:
    return {t.child_frame_id: (t.header.frame_id, transform_to_matrix(t)) for t in msg.transforms}


def graph_qos(node: Node, topic: str) -> QoSProfile:
    infos = node.get_publishers_info_by_topic(topic)
    assert len(infos) == 1, f"expected one publisher on {topic}, found {len(infos)}"
    return infos[0].qos_profile


def test_tf_qos_is_what_tf2_listeners_use(rclpy_context, spin_until):
    node = Node("tf_qos_test", context=rclpy_context)
    tf = TfBroadcaster(node)
    received: list[TFMessage] = []
    node.create_subscription(TFMessage, "/tf", received.append, TF2_LISTENER_QOS)

    offered = graph_qos(node, "/tf")  # what DDS advertises, not what we think we asked for
    assert offered.reliability == ReliabilityPolicy.RELIABLE
    assert offered.durability == DurabilityPolicy.VOLATILE
    assert TF_QOS.history == HistoryPolicy.KEEP_LAST and TF_QOS.depth == 100  # tf2's broadcaster depth
    compatibility, reason = qos_check_compatible(TF_QOS, TF2_LISTENER_QOS)
    assert compatibility != QoSCompatibility.ERROR, reason

    frames = {"odom": ("map", translation_44(1, 2, 3)), "camera_optical_frame": ("odom", translation_44(0, 0, 1))}
    assert spin_until(node, lambda: tf.subscription_count() > 0, TIMEOUT_S)
    tf.send([matrix_to_transform_stamped(T_44, parent, child, 42) for child, (parent, T_44) in frames.items()])
    assert spin_until(node, lambda: received, TIMEOUT_S), "tf2-style /tf subscription got nothing"
    assert len(received) == 1, "all frames of one send must go out in one TFMessage"
    got = by_child(received[0])
    assert sorted(got) == sorted(frames)
    for child, (parent, T_44) in frames.items():
        assert got[child][0] == parent
        np.testing.assert_allclose(got[child][1], T_44, atol=1e-12)


def test_static_frames_are_latched_and_resent_frames_replace(rclpy_context, spin_until):
    node = Node("tf_static_test", context=rclpy_context)
    static_tf = StaticTfBroadcaster(node)
    static_tf.send([
        matrix_to_transform_stamped(translation_44(0.1, 0, 0.2), "base_link", "camera_link", 1),
        matrix_to_transform_stamped(translation_44(0, 0, 0.5), "base_link", "imu_link", 1),
    ])
    refined_44 = translation_44(0.12, 0.01, 0.19)
    static_tf.send([matrix_to_transform_stamped(refined_44, "base_link", "camera_link", 2)])

    offered = graph_qos(node, "/tf_static")
    assert offered.reliability == ReliabilityPolicy.RELIABLE
    assert offered.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert TF_STATIC_QOS.depth == 1
    assert qos_check_compatible(TF_STATIC_QOS, TF2_STATIC_LISTENER_QOS)[0] != QoSCompatibility.ERROR

    # A late tf2-style subscriber: must get exactly the latest full set, camera_link refined.
    received: list[TFMessage] = []
    node.create_subscription(TFMessage, "/tf_static", received.append, TF2_STATIC_LISTENER_QOS)
    assert spin_until(node, lambda: received, TIMEOUT_S), "late /tf_static subscriber got nothing"
    spin_until(node, lambda: False, 0.2)  # give an (erroneous) older latched message time to arrive
    assert len(received) == 1
    got = by_child(received[0])
    assert sorted(got) == ["camera_link", "imu_link"]
    np.testing.assert_allclose(got["camera_link"][1], refined_44, atol=1e-12)
    np.testing.assert_allclose(got["imu_link"][1], translation_44(0, 0, 0.5), atol=1e-12)
    assert sorted(static_tf.frames) == ["camera_link", "imu_link"]


@pytest.mark.parametrize("broadcaster", [TfBroadcaster, StaticTfBroadcaster])
def test_send_rejects_bad_transforms(rclpy_context, broadcaster):
    sender = broadcaster(Node("tf_reject_test", context=rclpy_context))
    missing_child = matrix_to_transform_stamped(np.eye(4), "map", "camera", 0)
    missing_child.child_frame_id = ""
    with pytest.raises(ValueError, match="frame ids"):
        sender.send([missing_child])
    with pytest.raises(TypeError, match="TransformStamped"):
        sender.send([matrix_to_transform_stamped(np.eye(4), "map", "ok", 0), np.eye(4)])
    if isinstance(sender, StaticTfBroadcaster):
        assert sender.frames == {}, "a rejected batch must not be latched, not even in part"
