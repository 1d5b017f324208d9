"""What a user of nvs_node watches, as one rclpy node: the products (the latest of each), every
transform on /tf, each keyframe path by its stamp, the tracked poses, /diagnostics, a
`~/render_pose` publisher and the node's Trigger services. Shared by the tests that run the node."""

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from nav_msgs.msg import Path as PathMsg
from rclpy.node import Node
from sensor_msgs.msg import Image, PointCloud2
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from nvs_ros.ros.qos import LATCHED_QOS, RELIABLE_IMAGE_QOS, TF_LISTENER_QOS

PRODUCTS = [("point_cloud", PointCloud2, LATCHED_QOS), ("keyframe_path", PathMsg, LATCHED_QOS),
            ("keyframe_frusta", MarkerArray, LATCHED_QOS), ("latest_view", Image, RELIABLE_IMAGE_QOS),
            ("rendered_image", Image, RELIABLE_IMAGE_QOS), ("rendered_depth", Image, RELIABLE_IMAGE_QOS)]


class ProductListener:
    """Subscribes to everything nvs_node publishes and keeps it (module docstring)."""

    def __init__(self, context, spin_until, name: str = "nvs_products_listener", timeout_s: float = 45.0) -> None:
        self.node = Node(name, context=context)
        self.spin_until = spin_until
        self.timeout_s = timeout_s
        """How long `wait` and `call` wait unless told."""
        self.latest: dict[str, object] = {}
        self.tf: list = []
        self.paths: dict[tuple[int, int], PathMsg] = {}
        """Every keyframe path by its stamp (the TF sent with it carries the same stamp)."""
        self.tracked: list[PoseWithCovarianceStamped] = []
        self.scene_status: dict[str, str] = {}
        """The key-values of the scene's diagnostic status."""
        self.status: dict[str, str] = {}
        """The key-values of every status nvs_node reports (intake, tracking, scene)."""
        for topic, kind, qos in PRODUCTS:
            self.node.create_subscription(kind, f"/nvs_node/{topic}",
                                          lambda msg, topic=topic: self.latest.__setitem__(topic, msg), qos)
        self.node.create_subscription(PathMsg, "/nvs_node/keyframe_path", lambda msg: self.paths.__setitem__(
            (msg.header.stamp.sec, msg.header.stamp.nanosec), msg), LATCHED_QOS)
        self.node.create_subscription(TFMessage, "/tf", lambda msg: self.tf.extend(msg.transforms), TF_LISTENER_QOS)
        self.node.create_subscription(PoseWithCovarianceStamped, "/nvs_node/tracked_pose", self.tracked.append, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.render_pose = self.node.create_publisher(PoseStamped, "/nvs_node/render_pose", 10)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            self.status.update(values)
            if status.name.endswith(": scene"):
                self.scene_status = values

    def wait(self, predicate, what: str, timeout_s: float | None = None) -> None:
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        assert self.spin_until(self.node, predicate, max(0.0, timeout_s)), \
            f"timed out waiting for {what}; /diagnostics: {self.status}"

    def call(self, service: str, timeout_s: float | None = None) -> Trigger.Response:
        client = self.node.create_client(Trigger, f"/nvs_node/{service}")
        self.wait(lambda: client.service_is_ready(), f"service {service}", timeout_s)
        future = client.call_async(Trigger.Request())
        self.wait(future.done, f"the {service} response", timeout_s)
        return future.result()

    def transforms(self, child: str, parent: str | None = None) -> list:
        return [t for t in self.tf if t.child_frame_id == child and parent in (None, t.header.frame_id)]
