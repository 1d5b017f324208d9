"""nvs_node started as users start it (console script + params file), driven over DDS."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402

from lens_scene import blurred_error, lens_views, pinhole_views, plumb_bob_camera  # noqa: E402

from nvs_ros.core.errors import InputError  # noqa: E402
from nvs_ros.io.camera_models import undistorter  # noqa: E402
from nvs_ros.ros import node as node_module  # noqa: E402
from nvs_ros.ros.camera_input import CameraIntrinsics  # noqa: E402
from nvs_ros.ros.image_conversion import numpy_to_image_msg, rgb8_to_compressed_msg  # noqa: E402
from nvs_ros.ros.params import NodeConfig  # noqa: E402
from nvs_ros.ros.qos import RELIABLE_IMAGE_QOS  # noqa: E402

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[2]
NVS_NODE = Path(sys.executable).with_name("nvs_node")
PARAMS = ROOT / "config" / "nvs.yaml"
TIMEOUT_S = 30.0


def start_node(*ros_args: str) -> subprocess.Popen:
    assert NVS_NODE.is_file(), f"{NVS_NODE} is missing: run scripts/setup.sh"
    return subprocess.Popen([str(NVS_NODE), "--ros-args", "--params-file", str(PARAMS), *ros_args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_node(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


class CameraDriver:
    """Publishes like a camera driver and listens to the node's /diagnostics."""

    def __init__(self, context, spin_until, compressed: bool = False):
        self.node = Node("fake_camera", context=context)
        self.spin_until = spin_until
        image_type, topic = (CompressedImage, "/camera/image_raw/compressed") if compressed \
            else (Image, "/camera/image_raw")
        self.images = self.node.create_publisher(image_type, topic, RELIABLE_IMAGE_QOS)
        self.infos = self.node.create_publisher(CameraInfo, "/camera/camera_info", RELIABLE_IMAGE_QOS)
        self.status: dict[str, str] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith("camera input"):
                self.status = {kv.key: kv.value for kv in status.values}

    def wait_for_node(self) -> None:
        found = self.spin_until(self.node, lambda: self.images.get_subscription_count() > 0
                                and self.status, TIMEOUT_S)
        assert found, "nvs_node did not subscribe to the camera or publish /diagnostics in time"

    def wait_for(self, key: str, value: str) -> None:
        reached = self.spin_until(self.node, lambda: self.status.get(key) == value, TIMEOUT_S)
        assert reached, f"diagnostics never showed {key}={value}; last status: {self.status}"

    def send_camera_info(self, width: int, height: int) -> None:
        info = CameraInfo(width=width, height=height, k=[50.0, 0, width / 2, 0, 50.0, height / 2, 0, 0, 1])
        deadline = time.monotonic() + TIMEOUT_S
        while self.status.get("intrinsics") != "camera_info" and time.monotonic() < deadline:
            self.infos.publish(info)
            self.spin_until(self.node, lambda: self.status.get("intrinsics") == "camera_info", 0.5)
        assert self.status.get("intrinsics") == "camera_info", self.status


def test_node_accepts_good_frames_and_skips_bad_input_while_running(rclpy_context, spin_until):
    proc = start_node("-p", "diagnostics_period_s:=0.1", "-p", "reliable_qos:=true")
    try:
        camera = CameraDriver(rclpy_context, spin_until)
        camera.wait_for_node()
        rgb_HW3 = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)

        # Frames before the first CameraInfo wait for it (10 at most: older ones are dropped).
        for count in range(1, 13):  # one at a time: a burst would overrun the depth-5 history
            camera.images.publish(numpy_to_image_msg(rgb_HW3, "rgb8"))
            camera.wait_for("frames_received", str(count))
        camera.wait_for("frames_skipped", "2")
        assert "no CameraInfo" in camera.status["last_skip_reason"]
        assert camera.status["frames_waiting_for_camera_info"] == "10"

        camera.send_camera_info(32, 24)
        camera.wait_for("frames_accepted", "10")
        camera.images.publish(numpy_to_image_msg(rgb_HW3, "rgb8"))
        camera.wait_for("frames_accepted", "11")

        wrong_encoding = numpy_to_image_msg(rgb_HW3, "rgb8")
        wrong_encoding.encoding = "yuv422_yuy2"
        truncated = numpy_to_image_msg(rgb_HW3, "rgb8")
        truncated.data = truncated.data[:100]
        depth = numpy_to_image_msg(np.ones((24, 32), np.float32), "32FC1")
        other_size = numpy_to_image_msg(rgb_HW3[:12], "rgb8")
        for count, bad in enumerate([wrong_encoding, Image(encoding="rgb8"), truncated, depth, other_size]):
            camera.images.publish(bad)
            camera.wait_for("frames_skipped", str(3 + count))
        assert "CameraInfo is for 32x24" in camera.status["last_skip_reason"]

        camera.images.publish(numpy_to_image_msg(rgb_HW3[:, :, ::-1].copy(), "bgr8"))
        camera.wait_for("frames_accepted", "12")
        assert proc.poll() is None, "nvs_node exited on bad input"
        assert camera.status["image_size"] == "32x24"
        assert camera.status["keyframes"] == "1"  # the same picture over and over adds nothing
        assert float(camera.status["callback_ms_max"]) > 0
    finally:
        log = stop_node(proc)
    assert "skipping frame" in log


def test_compressed_transport_decodes_jpeg_and_skips_garbage(rclpy_context, spin_until):
    proc = start_node("-p", "image_transport:=compressed", "-p", "diagnostics_period_s:=0.1",
                      "-p", "reliable_qos:=true", "-p", "fallback_fx:=40.0", "-p", "fallback_fy:=40.0",
                      "-p", "fallback_cx:=16.0", "-p", "fallback_cy:=12.0")
    try:
        camera = CameraDriver(rclpy_context, spin_until, compressed=True)
        camera.wait_for_node()
        assert camera.status["intrinsics"] == "fallback parameters"
        camera.images.publish(CompressedImage(format="jpeg", data=b"\xff\xd8 not a jpeg"))
        camera.wait_for("frames_skipped", "1")
        rgb_HW3 = np.full((24, 32, 3), 128, np.uint8)
        camera.images.publish(rgb8_to_compressed_msg(rgb_HW3, "jpeg"))
        camera.wait_for("frames_accepted", "1")
        assert proc.poll() is None
    finally:
        stop_node(proc)


def camera_info_msg(camera, **fields) -> CameraInfo:
    return CameraInfo(width=camera.width, height=camera.height, k=list(camera.k), d=list(camera.d),
                      distortion_model=camera.lens, **fields)


def test_camera_info_lens_is_undistorted_and_image_rect_uses_p():
    camera = plumb_bob_camera()
    raw_HW3 = lens_views(camera, num_views=1).images_NHW3[0]
    intrinsics = CameraIntrinsics(NodeConfig())
    assert intrinsics.update(camera_info_msg(camera)) and not intrinsics.update(camera_info_msg(camera))
    rgb_HW3, K_33 = intrinsics.to_pinhole(raw_HW3)
    np.testing.assert_allclose(K_33, undistorter(camera).K_33)
    assert blurred_error(rgb_HW3, pinhole_views(K_33, camera.width, camera.height, 1)[0]) < 3.0
    assert "plumb_bob" in intrinsics.describe() and "undistorted" in intrinsics.describe()

    rect = CameraIntrinsics(NodeConfig(image_topic="/camera/image_rect"))
    P_34 = np.hstack([K_33, np.zeros((3, 1))])
    rect.update(camera_info_msg(camera, p=list(P_34.ravel())))
    same_HW3, K_rect_33 = rect.to_pinhole(rgb_HW3)
    assert same_HW3 is rgb_HW3
    np.testing.assert_allclose(K_rect_33, K_33)


def test_node_falls_back_on_uncalibrated_camera_info_then_undistorts_a_lens(rclpy_context, spin_until):
    proc = start_node("-p", "diagnostics_period_s:=0.1", "-p", "reliable_qos:=true",
                      "-p", "fallback_fx:=80.0", "-p", "fallback_fy:=80.0",
                      "-p", "fallback_cx:=47.5", "-p", "fallback_cy:=47.5")
    try:
        driver = CameraDriver(rclpy_context, spin_until)
        driver.wait_for_node()
        camera = plumb_bob_camera()
        raw_HW3 = lens_views(camera, num_views=1).images_NHW3[0]
        uncalibrated = camera_info_msg(camera)
        uncalibrated.k = [0.0] * 9
        driver.infos.publish(uncalibrated)
        driver.images.publish(numpy_to_image_msg(raw_HW3, "rgb8"))
        driver.wait_for("frames_accepted", "1")
        assert driver.status["intrinsics"] == "fallback parameters"
        assert driver.status["camera"] == "pinhole (fallback parameters)"

        deadline_spins = 0
        while driver.status.get("intrinsics") != "camera_info" and deadline_spins < 60:
            driver.infos.publish(camera_info_msg(camera))
            spin_until(driver.node, lambda: driver.status.get("intrinsics") == "camera_info", 0.5)
            deadline_spins += 1
        assert driver.status["camera"].startswith("96x96 fx 92.2") and "plumb_bob" in driver.status["camera"]
        assert driver.status["camera"].endswith("undistorted")
        driver.images.publish(numpy_to_image_msg(raw_HW3, "rgb8"))
        driver.wait_for("frames_accepted", "2")
    finally:
        log = stop_node(proc)
    assert "CameraInfo is uncalibrated (K[0] = 0" in log and "using pinhole (fallback parameters)" in log


def test_wrong_parameter_type_fails_with_a_message_naming_it(tmp_path):
    params = tmp_path / "bad.yaml"
    params.write_text("nvs_node:\n  ros__parameters:\n    fallback_fx: not-a-number\n")
    result = subprocess.run([str(NVS_NODE), "--ros-args", "--params-file", str(params)],
                            capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 2
    assert "parameter 'fallback_fx' must be a float" in result.stderr


def test_unusable_device_is_rejected_at_start_up():
    result = subprocess.run([str(NVS_NODE), "--ros-args", "-p", "device:=gpu0"],
                            capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 2
    assert "parameter 'device' is 'gpu0'" in result.stderr


def test_an_inference_backend_that_cannot_run_here_is_rejected_at_start_up():
    # tensorrt needs a CUDA device: on the CPU (the default device) it cannot run, installed or not
    result = subprocess.run([str(NVS_NODE), "--ros-args", "-p", "inference_backend:=tensorrt"],
                            capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 2
    assert "parameter 'inference_backend' is 'tensorrt'" in result.stderr


def test_unknown_image_transport_is_rejected():
    result = subprocess.run([str(NVS_NODE), "--ros-args", "-p", "image_transport:=theora"],
                            capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 2
    assert "'theora'" in result.stderr and "compressed" in result.stderr


def test_an_output_folder_that_cannot_be_written_stops_the_start_with_one_error_line(tmp_path):
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("a file where the output folder should go")
    result = subprocess.run([str(NVS_NODE), "--ros-args", "-p", f"output_folder:={not_a_folder / 'out'}"],
                            capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.stderr
    assert "parameter 'output_folder'" in errors[0] and f"{not_a_folder} is not a folder" in errors[0]


def test_any_mistake_the_user_can_correct_at_start_up_is_one_error_line_and_exit_code_1(monkeypatch, capfd):
    """Not only parameters: any NvsError raised while the node starts (main in this process)."""
    def refuse(**kwargs):
        raise InputError("the scene cannot use this camera")

    monkeypatch.setattr(node_module, "NvsNode", refuse)
    assert node_module.main(["nvs_node"]) == node_module.EXIT_ERROR == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "the scene cannot use this camera" in errors[0], err
