"""A recording replayed once into nvs_node as a user does it, every part in its own process:
`nvs-ros bag-from`, `nvs_node --ros-args --params-file config/nvs.yaml`, `nvs-ros play`.
The camera comes on TF, an RGB cloud goes out, a `~/render_pose` request is answered with an
image, and the poses `~/save` writes are right against the bag's ground truth. How soon is
bench/replay.py's measure (the temple: about 100 s on a 2-core CPU); here a timeout only, with
room for a loaded CI machine."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseStamped  # noqa: E402
from product_listener import ProductListener  # noqa: E402

from nvs_ros.io.bag_writer import DEFAULT_FRAME_ID  # noqa: E402
from nvs_ros.io.evaluation import score_against_bag  # noqa: E402
from nvs_ros.ros.point_cloud_msg import point_cloud_from_msg  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TEMPLE = ROOT.parent / "shared" / "data" / "middlebury_temple_ring"
BIN = Path(sys.executable).parent
LIMIT_S = 420.0
"""A timeout, not a measure: about 100-130 s were seen alone on a 2-core CPU."""
RECORDINGS = {
    # The temple ring as stored (16 views, 640x480, 10 Hz): the feature chain places it at 640 px.
    "temple": [str(TEMPLE)],
    # The bundled room at 30 Hz, 24 views at 128 px: a fast stream of a textured scene.
    "room-30hz": ["bundled:room", "--size", "128", "--views", "24", "--rate-hz", "30"],
}


@pytest.mark.skipif(not TEMPLE.is_dir(), reason="../shared/data/middlebury_temple_ring is absent")
@pytest.mark.timeout(LIMIT_S + 120)
@pytest.mark.parametrize("recording", RECORDINGS)
def test_a_recording_played_once_gives_tf_a_cloud_a_rendered_view_and_right_poses(recording, tmp_path, rclpy_context,
                                                                                   spin_until):
    bag, saved = tmp_path / "bag", tmp_path / "saved"
    subprocess.run([BIN / "nvs-ros", "bag-from", *RECORDINGS[recording], bag], check=True, capture_output=True)
    node = subprocess.Popen([BIN / "nvs_node", "--ros-args", "--params-file", ROOT / "config" / "nvs.yaml",
                             "-p", "reliable_qos:=true", "-p", "use_sim_time:=true", "-p", "torch_threads:=1",
                             "-p", f"output_folder:={saved}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    until = time.monotonic() + LIMIT_S

    def left() -> float:
        return until - time.monotonic()

    player = None
    try:
        user = ProductListener(rclpy_context, spin_until, name="replay_user")
        player = subprocess.Popen([BIN / "nvs-ros", "play", bag], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        user.wait(lambda: user.transforms(DEFAULT_FRAME_ID, "map"), f"map -> {DEFAULT_FRAME_ID} on TF", left())
        user.wait(lambda: "point_cloud" in user.latest and user.latest["point_cloud"].width > 100, "a cloud", left())
        xyz_P3, rgb_P3 = point_cloud_from_msg(user.latest["point_cloud"])
        assert np.isfinite(xyz_P3).all() and rgb_P3.std() > 0  # coloured, not a flat fill
        assert player.wait(timeout=10) == 0, player.stdout.read()
        assert user.status["frames_received"] == user.status["frames_accepted"]

        # A view from the first keyframe's pose, rendered on request.
        user.wait(lambda: "keyframe_path" in user.latest, "the keyframe path", left())
        request = PoseStamped(pose=user.latest["keyframe_path"].poses[0].pose)
        request.header.frame_id = "map"
        user.render_pose.publish(request)
        user.wait(lambda: "rendered_image" in user.latest, "a rendered view", left())
        rendered = user.latest["rendered_image"]
        assert rendered.encoding == "rgb8" and rendered.width > 0 and max(rendered.data) > 0

        # Every keyframe posed and trusted (TF carries it), and right.
        user.wait(lambda: user.status.get("posed_keyframes") == user.status.get("keyframes")
                  and user.status.get("keyframe_queue") == "0" and user.status.get("tf_withheld") == "",
                  "every keyframe posed by a trusted round", left())
        saved_reply = user.call("save", timeout_s=60.0)
        assert saved_reply.success, saved_reply.message
        metrics = score_against_bag(saved, bag)
        assert metrics["num_images"] >= 12 and metrics["registered"] == metrics["num_images"], metrics
        assert metrics["RRA@15"] >= 0.95, metrics
    finally:
        if player is not None and player.poll() is None:
            player.kill()
        node.terminate()
        try:
            log = node.communicate(timeout=15)[0]
        except subprocess.TimeoutExpired:
            node.kill()
            log = node.communicate()[0]
    assert "Traceback" not in log, log
