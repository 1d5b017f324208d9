"""A bag replayed into nvs_node over DDS loses no frame: the player waits for the node's
subscriptions, and with reliable_qos frames queue while the node is busy (counted when full)."""

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from nvs_ros.io.bag_writer import write_bag  # noqa: E402
from nvs_ros.io.bundled_scene import render_bundled_scene  # noqa: E402
from nvs_ros.ros.bag_player import play_bag  # noqa: E402
from nvs_ros.ros.node import NvsNode  # noqa: E402

pytestmark = pytest.mark.ros
FRAMES = 40
TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    scene = render_bundled_scene("room", "ring", num_views=FRAMES, size=32)
    return write_bag(scene, tmp_path_factory.mktemp("bag") / "room", rate_hz=30.0)


class RunningNode:
    """NvsNode in this process, spun by an executor thread of its own; /diagnostics read by a
    second node spun by the test."""

    def __init__(self, context, spin_until, **parameters):
        overrides = {"reliable_qos": True, "diagnostics_period_s": 0.1, "min_keyframes": 10000,
                     "track_rate_hz": 0.0, "torch_threads": 1, **parameters}
        self.node = NvsNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.listener = Node("diagnostics_listener", context=context)
        self.spin_until = spin_until
        self.status: dict[str, str] = {}
        self.statuses = 0
        self.listener.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith("camera input"):
                self.status = {kv.key: kv.value for kv in status.values}
                self.statuses += 1

    def wait_for(self, predicate, what: str) -> None:
        assert self.spin_until(self.listener, lambda: predicate(self.status), TIMEOUT_S), \
            f"timed out waiting for {what}; camera input status: {self.status}"

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.listener.destroy_node()


def play(bag, context) -> None:
    stats = play_bag(bag, context=context, clock=False, wait_for_subscribers_s=TIMEOUT_S,
                     topics=["/camera/image_raw", "/camera/camera_info"])
    assert stats.published["/camera/image_raw"] == FRAMES


def test_a_bag_played_once_reaches_the_node_frame_for_frame_even_while_it_is_busy(bag, rclpy_context, spin_until):
    node = RunningNode(rclpy_context, spin_until)
    try:
        play(bag, rclpy_context)
        node.wait_for(lambda s: s.get("frames_accepted") == str(FRAMES), f"{FRAMES} frames accepted")
        assert node.status["frames_received"] == str(FRAMES)
        assert node.status["frames_dropped_queue_full"] == "0"

        # Busy: the ingest is held (as a slow frame or the interpreter taken by training would) for
        # the whole replay; the subscription keeps taking frames into the queue meanwhile.
        with node.node.camera.frame_queue.handling:
            play(bag, rclpy_context)
            node.wait_for(lambda s: s.get("frames_received") == str(2 * FRAMES), "the second pass received")
            assert int(node.status["frames_queued"]) >= FRAMES - 1  # the first may be in hand
        node.wait_for(lambda s: s.get("frames_accepted") == str(2 * FRAMES), "the second pass taken in")
        assert node.status["frames_dropped_queue_full"] == "0" and node.status["frames_queued"] == "0"
    finally:
        node.close()


def test_a_full_queue_drops_the_oldest_frames_and_counts_them(bag, rclpy_context, spin_until):
    node = RunningNode(rclpy_context, spin_until, image_queue_size=4)
    try:
        with node.node.camera.frame_queue.handling:
            play(bag, rclpy_context)
            node.wait_for(lambda s: s.get("frames_received") == str(FRAMES), "every frame received")
        node.wait_for(lambda s: s.get("frames_queued") == "0" and int(s["frames_accepted"]) > 0, "the queue drained")
        time.sleep(0.3)  # one more status after the last frame was taken in
        node.wait_for(lambda s: int(s["frames_accepted"]) + int(s["frames_dropped_queue_full"]) == FRAMES,
                      "every frame either taken in or counted as dropped")
        # What the queue held at the end (frames and CameraInfos), + one in hand.
        assert 1 <= int(node.status["frames_accepted"]) <= 5, node.status
    finally:
        node.close()


@pytest.mark.parametrize("use_sim_time", [True, False])
def test_latency_is_in_the_clock_of_the_stamps_or_unknown(bag, rclpy_context, spin_until, use_sim_time):
    """The bag's stamps are in 2023: with use_sim_time the player's /clock is the node's clock and
    the latency is that of the replay; without it the stamps are in another clock (unknown)."""
    node = RunningNode(rclpy_context, spin_until, use_sim_time=use_sim_time)
    try:
        stats = play_bag(bag, context=rclpy_context, clock=True, wait_for_subscribers_s=TIMEOUT_S)
        assert stats.published["/camera/image_raw"] == FRAMES
        # the clock is what this test is about; that every frame is taken in, the tests above
        node.wait_for(lambda s: s.get("frames_received") == str(FRAMES) and int(s["frames_accepted"]) > 0,
                      f"{FRAMES} frames received and some taken in")
        latency_s = float(node.status["latency_s"])
        if use_sim_time:
            assert 0.0 <= latency_s < 5.0 and node.status["latency_note"] == "", node.status
            assert node.status["clock"] == "sim time (/clock)"
        else:
            assert np.isnan(latency_s) and "use_sim_time:=true" in node.status["latency_note"], node.status
            assert node.status["clock"] == "system time"
        # The bag's clock stands once it is played: the status goes on all the same (a timer on
        # the node's clock would stop with /clock and leave a replay's last figures unsaid).
        seen = node.statuses
        node.wait_for(lambda s: node.statuses >= seen + 3, "three more statuses after the bag ended")
    finally:
        node.close()
