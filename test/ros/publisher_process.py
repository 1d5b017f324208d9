"""Child process for test_cross_process.py: a separate ROS 2 participant that publishes
/tf, /tf_static and two images, through nvs_ros's own broadcasters and converters.

Protocol with the parent: after the static frames are sent it prints "static-sent" on stdout;
it waits until every dynamic topic has a subscriber (discovery), then republishes the same
messages at 10 Hz (best-effort subscribers may drop some) until its stdin closes, SIGTERM, or
MAX_LIFETIME_S. It exits 0 after a clean rclpy shutdown.

The test imports this file by path for the expected contents, so they are defined only here.
"""

import signal
import sys
import threading
import time

_T0 = time.monotonic()

import numpy as np
from geometry_msgs.msg import TransformStamped
from scipy.spatial.transform import Rotation

LARGE_IMAGE_TOPIC = "/nvs_test/image_large"
SMALL_IMAGE_TOPIC = "/nvs_test/image_small"
STAMP_NS = 1_700_000_000_123_456_789
CAMERA_FRAME = "camera_optical_frame"
PUBLISH_PERIOD_S = 0.1
MAX_LIFETIME_S = 60.0


def pattern_rgb8(height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 with every channel different along x and y, so a swapped channel,
    a transposed image or a shifted row changes it."""
    y_HW, x_HW = np.mgrid[0:height, 0:width]
    return np.stack([x_HW % 256, y_HW % 256, (7 * x_HW + 13 * y_HW) % 256], axis=-1).astype(np.uint8)


def rigid_44(rotvec_3: list[float], t_3: list[float]) -> np.ndarray:
    T_44 = np.eye(4)
    T_44[:3, :3] = Rotation.from_rotvec(rotvec_3).as_matrix()
    T_44[:3, 3] = t_3
    return T_44


def dynamic_frames() -> list[tuple[str, str, np.ndarray]]:
    """(parent, child, T_parent_child_44) sent on /tf."""
    return [
        ("map", "odom", rigid_44([0.0, 0.0, 0.3], [1.0, -2.0, 0.0])),
        ("odom", CAMERA_FRAME, rigid_44([0.1, -0.2, 0.7], [0.25, 0.5, 1.5])),
    ]


def static_frames_first() -> list[tuple[str, str, np.ndarray]]:
    return [
        ("base_link", "camera_link", rigid_44([0.0, 0.0, 0.0], [0.1, 0.0, 0.2])),
        ("camera_link", CAMERA_FRAME, rigid_44([-np.pi / 2, 0.0, -np.pi / 2], [0.0, 0.0, 0.0])),
    ]


def static_frames_update() -> list[tuple[str, str, np.ndarray]]:
    """Re-sends camera_link with refined extrinsics: it must replace the first one."""
    return [("base_link", "camera_link", rigid_44([0.0, 0.05, 0.0], [0.12, 0.01, 0.19]))]


def expected_static_frames() -> dict[str, tuple[str, np.ndarray]]:
    """child -> (parent, T_parent_child_44) that a late /tf_static subscriber must receive."""
    frames = {child: (parent, T_44) for parent, child, T_44 in static_frames_first()}
    frames.update({child: (parent, T_44) for parent, child, T_44 in static_frames_update()})
    return frames


def _stamped(frames: list[tuple[str, str, np.ndarray]]) -> list[TransformStamped]:
    from nvs_ros.ros.transforms import matrix_to_transform_stamped

    return [matrix_to_transform_stamped(T_44, parent, child, STAMP_NS) for parent, child, T_44 in frames]


def _log(event: str) -> None:
    # The parent shows our stderr when a test fails: say how far we got and when.
    print(f"[publisher_process {time.monotonic() - _T0:.2f} s] {event}", file=sys.stderr, flush=True)


def main() -> int:
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from nvs_ros.ros.image_conversion import numpy_to_image_msg
    from nvs_ros.ros.qos import RELIABLE_IMAGE_QOS
    from nvs_ros.ros.tf_broadcaster import StaticTfBroadcaster, TfBroadcaster
    from nvs_ros.ros.transforms import ns_to_stamp

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # The parent closing our stdin (or dying) is the normal stop signal; the timer a safety net.
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    safety_net = threading.Timer(MAX_LIFETIME_S, stop.set)
    safety_net.daemon = True
    safety_net.start()

    with rclpy.init():
        node = Node("nvs_test_publisher")
        tf = TfBroadcaster(node)
        static_tf = StaticTfBroadcaster(node)
        large_pub = node.create_publisher(Image, LARGE_IMAGE_TOPIC, RELIABLE_IMAGE_QOS)
        small_pub = node.create_publisher(Image, SMALL_IMAGE_TOPIC, RELIABLE_IMAGE_QOS)
        static_tf.send(_stamped(static_frames_first()))
        static_tf.send(_stamped(static_frames_update()))
        print("static-sent", flush=True)
        _log("node up, static frames sent")

        header = Header(frame_id=CAMERA_FRAME, stamp=ns_to_stamp(STAMP_NS))
        large = numpy_to_image_msg(pattern_rgb8(480, 640), "rgb8", header)
        small = numpy_to_image_msg(pattern_rgb8(5, 7)[:, :, ::-1], "bgr8", header)
        dynamic = _stamped(dynamic_frames())

        counts = [tf.subscription_count, large_pub.get_subscription_count, small_pub.get_subscription_count]
        while not stop.is_set() and min(count() for count in counts) == 0:
            stop.wait(0.02)
        _log(f"subscriptions matched: {[count() for count in counts]}")
        while not stop.is_set():
            tf.send(dynamic)
            large_pub.publish(large)
            small_pub.publish(small)
            stop.wait(PUBLISH_PERIOD_S)
        node.destroy_node()
    _log("clean shutdown")
    return 0


if __name__ == "__main__":
    sys.exit(main())
