"""Named QoS profiles: every publisher and subscription in nvs_ros picks one of these.

The TF profiles are the ones tf2_ros uses (geometry2 1b005c6, `tf2_ros_py/tf2_ros/
transform_broadcaster.py`, `static_transform_broadcaster.py`, `transform_listener.py`), so
RViz, `tf2_echo` and any TransformListener receive what nvs_ros broadcasts.
"""

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

IMAGE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=5,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
"""Camera images in (the sensor-data profile): a best-effort subscription matches both
best-effort and reliable camera drivers, and a slow consumer drops frames, never stalls."""

RELIABLE_IMAGE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=5,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
"""Images when every frame matters (bag replay, synthesized views out). Only matches
reliable publishers when used for a subscription."""

def queued_image_qos(depth: int) -> QoSProfile:
    """Images with `reliable_qos` (bag replay): reliable, and a history as deep as the node's frame
    queue, so that frames wait in DDS rather than being overwritten while the executor thread
    is held up (a loaded CPU, the interpreter taken by training)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
"""Slow-changing products (point cloud, keyframe path): a late subscriber (RViz started
afterwards) gets the latest one at once."""

TF_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
"""`/tf` publisher, as tf2_ros.TransformBroadcaster (QoSProfile(depth=100))."""

TF_STATIC_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
"""`/tf_static` publisher, as tf2_ros.StaticTransformBroadcaster: each message carries
the full set of static frames, so depth 1 is enough for late joiners."""

TF_LISTENER_QOS = TF_QOS
"""`/tf` subscription, as tf2_ros.TransformListener: the same profile as its publisher."""

TF_STATIC_LISTENER_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
"""`/tf_static` subscription, as tf2_ros.TransformListener (transient local: receives the
frames latched before it started)."""
