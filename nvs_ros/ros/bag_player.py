"""Publishing a ROS bag into the ROS graph with /clock: `ros2 bag play` for machines without it.

Every topic of the bag (or the ones asked for) is published at its recorded timing, scaled by
`rate`, as the raw CDR bytes from the bag: no deserialization, so any message type whose Python
package is installed plays (topics of other types are skipped with a warning). The bag is read
by `nvs_ros.io.bag_files`: .db3 or .mcap, folder or single file, or a ROS 1 .bag (its messages
converted to the ROS 2 types of the same name); a damaged bag plays what is intact, and
`PlayStats.loss` says what was lost.

/clock (rosgraph_msgs/msg/Clock) carries the bag time: set to a message's recorded time just
before it is published, and ticking at `clock_hz` in between, so nodes with use_sim_time see
the bag's stamps. With `loop`, each pass starts over and /clock jumps back, as rosbag2's does.

Nothing is lost at the start: with `wait_for_subscribers_s`, playing starts only once the camera
topics of the bag (images, CameraInfo; every topic when it has none) have a matched subscriber,
plus `MATCH_SETTLE_S` (discovery is two-sided: the subscriber may learn of the publisher a moment
after the publisher learnt of it, and a best-effort subscriber drops what comes before), or after
the timeout with a warning. `ros2 bag play` offers the same with --wait-for-all-acked / --delay.

QoS (rosbag2's replay defaults): reliable, volatile, keep last 10; transient local for
/tf_static and for topics whose recorded publishers all offered transient local, with a depth
that keeps every recorded message for late subscribers.
"""

import importlib
import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Connection, QosDurability
from rosgraph_msgs.msg import Clock

from nvs_ros.io.bag_files import BagLoss, OpenBag, open_reader, read_messages
from nvs_ros.io.bags import CAMERA_INFO_TYPE, COMPRESSED_IMAGE_TYPE, IMAGE_TYPE
from nvs_ros.io.errors import BagError
from nvs_ros.ros.transforms import ns_to_stamp

log = logging.getLogger(__name__)

REPLAY_DEPTH = 10
"""History depth of volatile replay publishers (rclcpp's default QoS depth)."""
CLOCK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                       reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
"""/clock publisher: reliable matches both rclpy's best-effort time source and reliable subscribers."""
_ACK_TIMEOUT = Duration(seconds=2.0)
CAMERA_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE, CAMERA_INFO_TYPE)
"""Topics of these types are what a consumer of the bag (nvs_node) subscribes to: playing waits
for them, not for topics nobody may listen to (a bag's ground truth)."""
MATCH_SETTLE_S = 1.5
"""After the publishers matched their subscribers, this long for the subscribers to match the
publishers too (discovery runs on both sides), and for the bag's other topics to match."""


@dataclass
class PlayStats:
    """What `play_bag` did."""

    published: dict[str, int] = field(default_factory=dict)
    """Messages published per topic (all passes)."""
    skipped_topics: dict[str, str] = field(default_factory=dict)
    """Topics not played, and why (message type not installed)."""
    clock_messages: int = 0
    loops: int = 0
    """Complete passes over the bag."""
    wall_s: float = 0.0
    loss: BagLoss | None = None
    """What a damaged bag lost (None: nothing)."""


def play_bag(path: str | Path, *, rate: float = 1.0, loop: bool = False, clock: bool = True,
             clock_hz: float = 40.0, topics: Collection[str] | None = None, delay_s: float = 0.0,
             wait_for_subscribers_s: float = 0.0, context: Context | None = None,
             stop: threading.Event | None = None, node_name: str = "nvs_bag_player") -> PlayStats:
    """Publish the bag at `path` in real time x `rate` until it ends (or `stop` is set).

    topics: play only these (None: all). delay_s: wait this long after creating the publishers
    (discovery) before the first message. wait_for_subscribers_s: before playing, wait up to this
    long until every played topic (and /clock) has a subscriber. context: an initialised rclpy
    Context to use (None: one of its own, initialised and shut down here).
    """
    if not rate > 0 or not clock_hz > 0:
        raise BagError(f"rate and clock_hz must be > 0, got rate={rate}, clock_hz={clock_hz}")
    stop = stop or threading.Event()
    own_context = context is None
    if own_context:
        context = Context()
        rclpy.init(context=context)
    reader = open_reader(path)
    if reader.loss is not None:
        log.warning("%s: damaged bag, playing what is intact: %s", path, reader.loss)
    try:
        node = Node(node_name, context=context)
        try:
            return _play(node, reader, path, rate, loop, clock, 1.0 / clock_hz, topics, delay_s,
                         wait_for_subscribers_s, stop)
        finally:
            node.destroy_node()
    finally:
        reader.close()
        if own_context:
            context.try_shutdown()


def message_class(msgtype: str) -> type:
    """'sensor_msgs/msg/Image' -> the installed sensor_msgs.msg.Image; ImportError if absent."""
    package, kind, name = msgtype.split("/") if msgtype.count("/") == 2 else ("", "", msgtype)
    if not package:
        raise ImportError(f"message type {msgtype!r} is not of the form package/msg/Name")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except AttributeError as err:
        raise ImportError(f"{package}.{kind} has no {name}") from err


def replay_qos(topic: str, connections: list[Connection]) -> QoSProfile:
    """The QoS a topic is replayed with (see the module docstring)."""
    offered = [q for c in connections for q in getattr(c.ext, "offered_qos_profiles", [])]
    latched = topic == "/tf_static" or (
        bool(offered) and all(q.durability == QosDurability.TRANSIENT_LOCAL for q in offered))
    depth = max(1, sum(c.msgcount for c in connections)) if latched else REPLAY_DEPTH
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def _play(node: Node, reader: OpenBag, path: str | Path, rate: float, loop: bool, clock: bool,
          clock_period_s: float, topics: Collection[str] | None, delay_s: float,
          wait_for_subscribers_s: float, stop: threading.Event) -> PlayStats:
    stats = PlayStats(loss=reader.loss)
    connections = _selected(reader.connections, topics, path)
    publishers = _publishers(node, connections, stats)
    if not publishers:
        raise BagError(f"{path}: nothing to play ({stats.skipped_topics or 'no messages'})")
    clock_pub = node.create_publisher(Clock, "/clock", CLOCK_QOS) if clock else None
    played = [c for c in connections if c.topic in publishers]
    all_pubs = [*publishers.values(), *([clock_pub] if clock_pub else [])]
    camera = [publishers[c.topic] for c in played if c.msgtype in CAMERA_TYPES]
    if _wait_for_subscribers(list(dict.fromkeys(camera)) or list(publishers.values()),
                             wait_for_subscribers_s, stop):
        stop.wait(MATCH_SETTLE_S)
    stop.wait(delay_s)
    started = time.monotonic()
    while not stop.is_set():
        if not _play_once(reader, played, path, publishers, clock_pub, rate, clock_period_s, stop, stats):
            break
        stats.loops += 1
        if not loop:
            break
    for publisher in all_pubs:  # let reliable subscribers receive the last messages
        publisher.wait_for_all_acked(_ACK_TIMEOUT)
    stats.wall_s = time.monotonic() - started
    log.info("played %s: %s in %.2f s (%d passes)", path, stats.published, stats.wall_s, stats.loops)
    return stats


def _selected(connections: list[Connection], topics: Collection[str] | None,
              path: str | Path) -> list[Connection]:
    if topics is None:
        return list(connections)
    missing = set(topics) - {c.topic for c in connections}
    if missing:
        raise BagError(f"{path}: topics {sorted(missing)} are not in the bag; it has "
                       f"{sorted({c.topic for c in connections})}")
    return [c for c in connections if c.topic in set(topics)]


def _publishers(node: Node, connections: list[Connection], stats: PlayStats) -> dict[str, Publisher]:
    publishers: dict[str, Publisher] = {}
    for topic in dict.fromkeys(c.topic for c in connections):
        group = [c for c in connections if c.topic == topic]
        msgtypes = {c.msgtype for c in group}
        try:
            if len(msgtypes) > 1:
                raise ImportError(f"several message types {sorted(msgtypes)} on one topic")
            msg_class = message_class(group[0].msgtype)
        except ImportError as err:
            stats.skipped_topics[topic] = str(err)
            log.warning("not playing %s (%s): %s", topic, group[0].msgtype, err)
            continue
        publishers[topic] = node.create_publisher(msg_class, topic, replay_qos(topic, group))
        stats.published[topic] = 0
    return publishers


def _wait_for_subscribers(publishers: list[Publisher], timeout_s: float, stop: threading.Event) -> bool:
    """True once every publisher has a subscriber; False when not waiting, stopped or timed out."""
    deadline = time.monotonic() + timeout_s
    while timeout_s > 0 and not stop.is_set():
        waiting = [p.topic_name for p in publishers if p.get_subscription_count() == 0]
        if not waiting:
            log.info("subscribers matched on %s", [p.topic_name for p in publishers])
            return True
        if time.monotonic() > deadline:
            log.warning("no subscriber on %s after %.1f s: playing anyway", waiting, timeout_s)
            return False
        stop.wait(0.05)
    return False


def _play_once(reader: OpenBag, connections: list[Connection], path: str | Path,
               publishers: dict[str, Publisher], clock_pub: Publisher | None, rate: float,
               clock_period_s: float, stop: threading.Event, stats: PlayStats) -> bool:
    """One pass over the bag; False when stopped before its end."""
    bag_start_ns = wall_start = None
    for connection, bag_ns, raw in read_messages(reader, connections, path):
        if bag_start_ns is None:
            bag_start_ns, wall_start = bag_ns, time.monotonic()
        due = wall_start + (bag_ns - bag_start_ns) / 1e9 / rate
        while (now := time.monotonic()) < due:
            if clock_pub is not None:
                _publish_clock(clock_pub, bag_start_ns + int((now - wall_start) * rate * 1e9), stats)
            if stop.wait(min(clock_period_s, due - now)):
                return False
        if stop.is_set():
            return False
        if clock_pub is not None:
            _publish_clock(clock_pub, bag_ns, stats)
        publishers[connection.topic].publish(bytes(raw))
        stats.published[connection.topic] += 1
    return True


def _publish_clock(publisher: Publisher, bag_ns: int, stats: PlayStats) -> None:
    publisher.publish(Clock(clock=ns_to_stamp(bag_ns)))
    stats.clock_messages += 1
