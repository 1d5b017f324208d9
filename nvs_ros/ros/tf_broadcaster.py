"""TF broadcasters (tf2_ros is not on PyPI): /tf and /tf_static with tf2_ros's QoS.

One broadcaster of each kind per node; send all frames for one stamp in one call, stamped
with the source image's time. Build the TransformStamped messages with
`nvs_ros.ros.transforms.matrix_to_transform_stamped`.
"""

from collections.abc import Iterable

from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from tf2_msgs.msg import TFMessage

from nvs_ros.ros.qos import TF_QOS, TF_STATIC_QOS


class TfBroadcaster:
    """Publishes tf2_msgs/TFMessage on /tf (reliable, volatile, depth 100)."""

    def __init__(self, node: Node, topic: str = "/tf") -> None:
        self._pub = node.create_publisher(TFMessage, topic, TF_QOS)

    def send(self, transforms: Iterable[TransformStamped]) -> None:
        """Publish the transforms in one TFMessage."""
        self._pub.publish(TFMessage(transforms=_checked(transforms)))

    def subscription_count(self) -> int:
        """Subscriptions matched so far (0 until discovery completes)."""
        return self._pub.get_subscription_count()


class StaticTfBroadcaster:
    """Publishes tf2_msgs/TFMessage on /tf_static (reliable, transient local, depth 1).

    Every message carries all static frames sent so far (one per child frame), so a late
    subscriber gets them all from the one latched message. Unlike tf2_ros (1b005c6), which
    keeps the first transform of a child frame, re-sending a child frame REPLACES it: a
    refined camera extrinsic takes effect.
    """

    def __init__(self, node: Node, topic: str = "/tf_static") -> None:
        self._pub = node.create_publisher(TFMessage, topic, TF_STATIC_QOS)
        self._by_child: dict[str, TransformStamped] = {}

    def send(self, transforms: Iterable[TransformStamped]) -> None:
        """Add or replace these static frames and republish the full set."""
        for transform in _checked(transforms):
            self._by_child[transform.child_frame_id] = transform
        self._pub.publish(TFMessage(transforms=list(self._by_child.values())))

    def subscription_count(self) -> int:
        """Subscriptions matched so far (0 until discovery completes)."""
        return self._pub.get_subscription_count()

    @property
    def frames(self) -> dict[str, TransformStamped]:
        """The latched static transforms by child frame id (a copy)."""
        return dict(self._by_child)


def _checked(transforms: Iterable[TransformStamped]) -> list[TransformStamped]:
    # tf2 silently drops frames with empty ids on the listener side: fail at the sender instead.
    transforms = list(transforms)
    for transform in transforms:
        if not isinstance(transform, TransformStamped):
            raise TypeError(f"expected geometry_msgs/TransformStamped, got {type(transform).__name__}")
        if not transform.header.frame_id or not transform.child_frame_id:
            raise ValueError(
                f"transform needs parent and child frame ids, got "
                f"{transform.header.frame_id!r} -> {transform.child_frame_id!r}"
            )
    return transforms
