"""nvs_ros.ros.bag_player: a bag written from the bundled scene, played over DDS with /clock;
the same as a ROS 1 bag, and cut short."""

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.node import Node  # noqa: E402
from ros1_bag import write_ros1_bag  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from nvs_ros.io.bag_writer import (DEFAULT_START_NS, image_message, serialize, tf_message,  # noqa: E402
                                   write_bag)
from nvs_ros.io.bag_files import TYPESTORE, open_reader  # noqa: E402
from nvs_ros.io.bags import IMAGE_TYPE, TF_TYPE  # noqa: E402
from nvs_ros.io.bundled_scene import render_bundled_scene  # noqa: E402
from nvs_ros.io.errors import BagError  # noqa: E402
from nvs_ros.ros.bag_player import play_bag, replay_qos  # noqa: E402
from nvs_ros.ros.image_conversion import image_msg_to_rgb8  # noqa: E402
from nvs_ros.ros.transforms import stamp_to_ns, transform_to_matrix  # noqa: E402

pytestmark = pytest.mark.ros
TIMEOUT_S = 15.0
RATE_HZ = 20.0
KEEP_ALL = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def scene():
    return render_bundled_scene("room", "ring", num_views=6, size=32)


class PlayerThread(threading.Thread):
    """play_bag in a thread of this process, with an rclpy Context of its own."""

    def __init__(self, bag, **options):
        super().__init__(daemon=True)
        self.bag, self.options, self.stop = bag, options, threading.Event()
        self.stats = self.error = None

    def run(self):
        try:
            self.stats = play_bag(self.bag, stop=self.stop, **self.options)
        except BaseException as err:  # re-raised in the test's thread by finish()
            self.error = err

    def finish(self, timeout_s=TIMEOUT_S):
        self.join(timeout_s)
        assert not self.is_alive(), "the player did not finish"
        if self.error is not None:
            raise self.error
        return self.stats


def test_subscriber_receives_the_bag_with_clock(scene, tmp_path, rclpy_context, spin_until):
    bag = write_bag(scene, tmp_path / "bag", rate_hz=RATE_HZ)
    stamps = DEFAULT_START_NS + np.round(np.arange(6) * 1e9 / RATE_HZ).astype(np.int64)
    node = Node("bag_player_test", context=rclpy_context)
    got = {"image": [], "info": [], "gt": [], "clock": []}
    node.create_subscription(Image, "/camera/image_raw", got["image"].append, KEEP_ALL)
    node.create_subscription(CameraInfo, "/camera/camera_info", got["info"].append, KEEP_ALL)
    node.create_subscription(TFMessage, "/ground_truth/tf", got["gt"].append, KEEP_ALL)
    node.create_subscription(Clock, "/clock", got["clock"].append, KEEP_ALL)

    player = PlayerThread(bag, wait_for_subscribers_s=TIMEOUT_S)
    player.start()
    # Every topic is its own DDS writer, so the last image can arrive before the last camera_info:
    # wait for all of them, not one.
    done = spin_until(node, lambda: all(len(got[key]) == 6 for key in ("image", "info", "gt"))
                      and got["clock"] and stamp_to_ns(got["clock"][-1].clock) == stamps[-1], TIMEOUT_S)
    stats = player.finish()
    assert done, {key: len(value) for key, value in got.items()}

    assert [stamp_to_ns(m.header.stamp) for m in got["image"]] == stamps.tolist()
    np.testing.assert_array_equal(np.stack([image_msg_to_rgb8(m) for m in got["image"]]), scene.images_NHW3)
    assert len(got["info"]) == 6 and np.allclose(np.reshape(got["info"][0].k, (3, 3)), scene.K_N33[0])
    c2w = np.stack([transform_to_matrix(m.transforms[0]) for m in got["gt"]])
    np.testing.assert_allclose(c2w, scene.c2w_N44, atol=1e-9)
    clock_ns = np.array([stamp_to_ns(m.clock) for m in got["clock"]])
    assert np.all(np.diff(clock_ns) >= 0) and clock_ns[0] >= stamps[0], clock_ns
    assert stats.published == {"/camera/image_raw": 6, "/camera/camera_info": 6, "/ground_truth/tf": 6}
    # Real time: the 0.25 s of bag took at least that long (the clock ticks in between too).
    assert stats.wall_s >= (stamps[-1] - stamps[0]) / 1e9 and stats.clock_messages > 18


def test_loop_rate_stop_and_topic_choice(scene, tmp_path):
    bag = write_bag(scene, tmp_path / "bag", rate_hz=RATE_HZ)
    player = PlayerThread(bag, rate=5.0, loop=True, clock=False, topics=["/camera/image_raw"])
    player.start()
    time.sleep(1.5)  # a pass is 0.25 s / 5 = 0.05 s of waiting
    player.stop.set()
    stats = player.finish()
    assert stats.loops >= 2, stats
    assert 6 * stats.loops <= stats.published["/camera/image_raw"] < 6 * (stats.loops + 1)
    assert set(stats.published) == {"/camera/image_raw"} and stats.clock_messages == 0
    assert stats.wall_s >= stats.loops * 0.25 / 5.0
    with pytest.raises(BagError, match=r"\['/nope'\] are not in the bag"):
        play_bag(bag, topics=["/nope"])


def test_uninstalled_types_are_skipped_and_tf_static_is_latched(scene, tmp_path):
    bag = tmp_path / "bag"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        custom = writer.add_connection("/custom", "no_such_pkg/msg/Thing", msgdef="int32 x",
                                       rihs01="RIHS01_" + "0" * 64)
        writer.write(custom, 1, b"\x00\x01\x00\x00\x07\x00\x00\x00")
        image = writer.add_connection("/image", IMAGE_TYPE, typestore=TYPESTORE)
        writer.write(image, 2, serialize(image_message(scene.images_NHW3[0], 2, "cam")))
        static = writer.add_connection("/tf_static", TF_TYPE, typestore=TYPESTORE)
        for t in (3, 4):
            writer.write(static, t, serialize(tf_message(np.eye(4), t, "base_link", f"cam{t}")))
    stats = play_bag(bag, rate=100.0)
    assert "/custom" in stats.skipped_topics and "no_such_pkg" in stats.skipped_topics["/custom"]
    assert stats.published == {"/image": 1, "/tf_static": 2}

    reader = open_reader(bag)
    try:
        by_topic = {c.topic: c for c in reader.connections}
        latched = replay_qos("/tf_static", [by_topic["/tf_static"]])
        assert latched.durability == DurabilityPolicy.TRANSIENT_LOCAL and latched.depth == 2
        volatile = replay_qos("/image", [by_topic["/image"]])
        assert volatile.durability == DurabilityPolicy.VOLATILE
        assert volatile.reliability == latched.reliability == ReliabilityPolicy.RELIABLE
    finally:
        reader.close()


def test_a_subscriber_that_comes_late_misses_nothing(scene, tmp_path, rclpy_context, spin_until):
    """The player starts first and waits; the subscriber (best effort, as nvs_node's default,
    which drops whatever comes before it matched) comes a second later and gets every frame."""
    bag = write_bag(scene, tmp_path / "bag", rate_hz=RATE_HZ)
    player = PlayerThread(bag, wait_for_subscribers_s=TIMEOUT_S)
    player.start()
    time.sleep(1.0)
    assert player.is_alive() and player.stats is None  # still waiting, nothing published
    node = Node("late_subscriber", context=rclpy_context)
    images: list[Image] = []
    best_effort = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
    node.create_subscription(Image, "/camera/image_raw", images.append, best_effort)
    node.create_subscription(CameraInfo, "/camera/camera_info", lambda _: None, best_effort)
    done = spin_until(node, lambda: len(images) == 6, TIMEOUT_S)
    stats = player.finish()
    assert done, len(images)
    assert stats.published["/camera/image_raw"] == 6


def test_without_subscribers_it_plays_after_the_timeout_with_a_warning(scene, tmp_path, caplog):
    bag = write_bag(scene, tmp_path / "bag", rate_hz=RATE_HZ)
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="nvs_ros.ros.bag_player"):
        stats = play_bag(bag, rate=10.0, topics=["/camera/image_raw"], wait_for_subscribers_s=0.5)
    assert time.monotonic() - started >= 0.5
    assert stats.published == {"/camera/image_raw": 6}
    assert "no subscriber on ['/camera/image_raw'] after 0.5 s: playing anyway" in caplog.text


def test_a_ros1_bag_plays_as_ros2_messages(scene, tmp_path, rclpy_context, spin_until):
    bag = write_ros1_bag(scene, tmp_path / "room.bag", rate_hz=RATE_HZ)
    node = Node("ros1_bag_player_test", context=rclpy_context)
    got = {"image": [], "info": [], "gt": []}
    node.create_subscription(Image, "/camera/image_raw", got["image"].append, KEEP_ALL)
    node.create_subscription(CameraInfo, "/camera/camera_info", got["info"].append, KEEP_ALL)
    node.create_subscription(TFMessage, "/ground_truth/tf", got["gt"].append, KEEP_ALL)
    player = PlayerThread(bag, wait_for_subscribers_s=TIMEOUT_S, clock=False)
    player.start()
    done = spin_until(node, lambda: all(len(v) == 6 for v in got.values()), TIMEOUT_S)
    stats = player.finish()
    assert done, {key: len(value) for key, value in got.items()}
    np.testing.assert_array_equal(np.stack([image_msg_to_rgb8(m) for m in got["image"]]), scene.images_NHW3)
    np.testing.assert_array_equal(np.stack([np.reshape(m.k, (3, 3)) for m in got["info"]]), scene.K_N33)
    c2w = np.stack([transform_to_matrix(m.transforms[0]) for m in got["gt"]])
    np.testing.assert_allclose(c2w, scene.c2w_N44, atol=1e-9)
    assert stats.loss is None and sum(stats.published.values()) == 18


def test_a_cut_bag_plays_what_is_intact(scene, tmp_path, caplog):
    bag = write_bag(scene, tmp_path / "bag", rate_hz=RATE_HZ)
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])  # inside its one chunk
    with caplog.at_level("WARNING", logger="nvs_ros.ros.bag_player"):
        stats = play_bag(bag, rate=10.0, clock=False)
    assert stats.loss is not None and sum(stats.published.values()) == stats.loss.messages_read
    assert stats.loss.messages_lost == 18 - stats.loss.messages_read > 0
    assert "damaged bag, playing what is intact" in caplog.text
