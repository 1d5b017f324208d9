"""Acceptance test: TF and images cross a process boundary over loopback DDS intact.

The publisher is a child Python process (test/ros/publisher_process.py, same interpreter, so
the ROS wheels' library path and conftest's ROS environment are inherited). Every wait is for
an event (a line from the child, discovery, a message), bounded by TIMEOUT_S, never a fixed sleep.
"""

import contextlib
import importlib.util
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from nvs_ros.ros.image_conversion import image_msg_to_numpy, image_msg_to_rgb8  # noqa: E402
from nvs_ros.ros.qos import (  # noqa: E402
    IMAGE_QOS,
    RELIABLE_IMAGE_QOS,
    TF_LISTENER_QOS,
    TF_STATIC_LISTENER_QOS,
)
from nvs_ros.ros.transforms import stamp_to_ns, transform_to_matrix  # noqa: E402

CHILD_SCRIPT = Path(__file__).with_name("publisher_process.py")
TIMEOUT_S = 30.0

_spec = importlib.util.spec_from_file_location("publisher_process", CHILD_SCRIPT)
child = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(child)

pytestmark = pytest.mark.ros


@contextlib.contextmanager
def publisher_process(tmp_path: Path) -> Iterator[subprocess.Popen]:
    """Start the publisher child; always stop it (stdin EOF, then kill) and keep its stderr."""
    stderr_path = tmp_path / "publisher_stderr.txt"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD_SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
        )
    proc.stderr_path = stderr_path
    try:
        yield proc
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def child_report(proc: subprocess.Popen) -> str:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=0.5)  # a child that just crashed: report its exit status
    state = "running" if proc.returncode is None else f"exited with {proc.returncode}"
    return f"publisher process {state}; its stderr:\n{proc.stderr_path.read_text()[-3000:]}"


def wait_for_line(proc: subprocess.Popen, expected: str, timeout_s: float) -> None:
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    line = proc.stdout.readline().decode().strip() if ready else "<nothing>"
    assert line == expected, f"expected {expected!r} from the publisher within {timeout_s} s, got {line!r}; " + (
        child_report(proc)
    )


def assert_frames(msg: TFMessage, expected: dict[str, tuple[str, np.ndarray]]) -> None:
    got = {t.child_frame_id: t for t in msg.transforms}
    assert sorted(got) == sorted(expected)
    for child_frame, (parent, T_44) in expected.items():
        assert got[child_frame].header.frame_id == parent
        assert stamp_to_ns(got[child_frame].header.stamp) == child.STAMP_NS
        np.testing.assert_allclose(transform_to_matrix(got[child_frame]), T_44, atol=1e-12)


def test_tf_and_images_cross_process(rclpy_context, spin_until, tmp_path):
    received: dict[str, list] = {"tf": [], "large": [], "small": []}
    with publisher_process(tmp_path) as proc:
        # Join after the child's participant exists: discovery then takes ~0.1 s; the other
        # way round it often waits for the child's next 3 s participant announcement.
        wait_for_line(proc, "static-sent", TIMEOUT_S)
        node = Node("cross_process_listener", context=rclpy_context)
        node.create_subscription(TFMessage, "/tf", received["tf"].append, TF_LISTENER_QOS)
        # Reliable for the 0.9 MB image: best effort drops most fragmented samples when the CPU
        # is busy. The small image goes through the node's default best-effort profile.
        node.create_subscription(Image, child.LARGE_IMAGE_TOPIC, received["large"].append, RELIABLE_IMAGE_QOS)
        node.create_subscription(Image, child.SMALL_IMAGE_TOPIC, received["small"].append, IMAGE_QOS)
        got_all = spin_until(node, lambda: all(received.values()), TIMEOUT_S)
        counts = {topic: len(msgs) for topic, msgs in received.items()}
        assert got_all, f"not everything arrived within {TIMEOUT_S} s: {counts}; " + child_report(proc)
    assert proc.returncode == 0, child_report(proc)

    assert_frames(received["tf"][0], {c: (p, T) for p, c, T in child.dynamic_frames()})
    large, small = received["large"][0], received["small"][0]
    assert (large.height, large.width, large.encoding) == (480, 640, "rgb8")
    assert large.header.frame_id == child.CAMERA_FRAME
    assert stamp_to_ns(large.header.stamp) == child.STAMP_NS
    np.testing.assert_array_equal(image_msg_to_rgb8(large), child.pattern_rgb8(480, 640))
    assert small.encoding == "bgr8"
    np.testing.assert_array_equal(image_msg_to_numpy(small), child.pattern_rgb8(5, 7)[:, :, ::-1])
    np.testing.assert_array_equal(image_msg_to_rgb8(small), child.pattern_rgb8(5, 7))


def test_late_subscriber_gets_latched_static_frames(rclpy_context, spin_until, tmp_path):
    with publisher_process(tmp_path) as proc:
        wait_for_line(proc, "static-sent", TIMEOUT_S)
        # Subscribe only now: the frames were published before this subscription existed.
        node = Node("late_static_listener", context=rclpy_context)
        static: list[TFMessage] = []
        node.create_subscription(TFMessage, "/tf_static", static.append, TF_STATIC_LISTENER_QOS)
        got = spin_until(node, lambda: static, TIMEOUT_S)
        assert got, f"no latched /tf_static message within {TIMEOUT_S} s; " + child_report(proc)
        spin_until(node, lambda: False, 0.3)  # a second latched message would be a bug; catch it
    assert proc.returncode == 0, child_report(proc)

    assert len(static) == 1, f"expected one latched message (depth 1), got {len(static)}"
    # Both static frames, with camera_link's re-sent transform replacing the first one.
    assert_frames(static[0], child.expected_static_frames())
