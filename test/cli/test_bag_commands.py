"""bag-from, eval on a bag, and play into a running nvs_node: the commands as users run them."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nvs_ros.io.bags import read_bag

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def room_bag(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bags") / "room"
    result = run("nvs-ros", "bag-from", "bundled", str(out), "--size", "32", "--views", "6")
    assert result.returncode == 0, result.stderr
    return out


def test_bag_from_writes_frames_intrinsics_and_ground_truth(room_bag):
    frames = read_bag(room_bag)
    assert len(frames.image_set) == 6 and frames.image_set.has_ground_truth
    assert frames.image_topic == "/camera/image_raw"
    again = run("nvs-ros", "bag-from", "bundled", str(room_bag), "--size", "32", "--views", "6")
    assert again.returncode == 1 and "exist" in again.stderr


def test_a_damaged_bag_is_read_with_a_one_line_report(room_bag, tmp_path):
    bag = tmp_path / "cut"
    shutil.copytree(room_bag, bag)
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])  # inside its one chunk
    result = run("nvs-ros", "bag-from", str(bag), str(tmp_path / "rewritten"))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    reports = [line for line in result.stderr.splitlines() if "damaged bag" in line]
    assert len(reports) == 1 and "lost" in reports[0], result.stderr
    assert 0 < len(read_bag(tmp_path / "rewritten").image_set) < 6
    (tmp_path / "garbage.mcap").write_bytes(b"\x89MCAP0\r\n" + bytes(100))
    garbage = run("nvs-ros", "bag-from", str(tmp_path / "garbage.mcap"), str(tmp_path / "none"))
    assert garbage.returncode == 1 and "Traceback" not in garbage.stderr
    assert len(garbage.stderr.strip().splitlines()) == 1, garbage.stderr


def test_demo_output_of_a_bag_is_scored_against_its_ground_truth(room_bag, tmp_path):
    result = run("nvs-ros", "demo", "--out", str(tmp_path / "demo"), "--size", "32", "--views", "6",
                 "--iters", "10", "--threads", "1")
    assert result.returncode == 0, result.stderr
    # The bundled scene's self-check poses carry the scene's names, not the bag's: refused clearly.
    mismatch = run("nvs-ros", "eval", str(tmp_path / "demo" / "ground_truth"), "--gt", str(room_bag))
    assert mismatch.returncode == 1 and "view_000.png" in mismatch.stderr


@pytest.mark.ros
def test_a_played_bag_reaches_nvs_node(room_bag, tmp_path):
    node = subprocess.Popen([str(BIN / "nvs_node"), "--ros-args", "--params-file",
                             str(ROOT / "config" / "nvs.yaml"), "-p", "reliable_qos:=true",
                             "-p", "diagnostics_period_s:=0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # No delay: play waits until the node (still importing torch) has subscribed.
        played = run("nvs-ros", "play", str(room_bag), "--rate", "2", timeout=90)
        assert played.returncode == 0, played.stderr
        status = subprocess.run(
            [sys.executable, "-c", _READ_DIAGNOSTICS], capture_output=True, text=True, timeout=60)
        values = json.loads(status.stdout.strip().splitlines()[-1])
    finally:
        node.terminate()
        log, _ = node.communicate(timeout=10)
    assert values["frames_accepted"] == "6", (values, log)
    assert values["intrinsics"] == "camera_info" and values["image_size"] == "32x32"
    assert values["keyframes"] == "6"  # six views 60 degrees apart: each one is new


@pytest.mark.ros
def test_play_waits_for_subscribers_then_plays_anyway_or_starts_at_once(room_bag):
    waited = run("nvs-ros", "play", str(room_bag), "--rate", "20", "--wait", "1", timeout=60)
    assert waited.returncode == 0, waited.stderr
    warning = next(line for line in waited.stderr.splitlines() if "no subscriber on" in line)
    assert "/camera/image_raw" in warning and "after 1.0 s: playing anyway" in warning, warning
    at_once = run("nvs-ros", "play", str(room_bag), "--rate", "20", "--no-wait", timeout=60)
    assert at_once.returncode == 0 and "no subscriber" not in at_once.stderr, at_once.stderr


_READ_DIAGNOSTICS = """
import json, rclpy
from diagnostic_msgs.msg import DiagnosticArray
rclpy.init()
node = rclpy.create_node("diagnostics_reader")
got = {}
node.create_subscription(DiagnosticArray, "/diagnostics",
                         lambda m: got.update({kv.key: kv.value for kv in m.status[0].values}), 10)
for _ in range(200):
    rclpy.spin_once(node, timeout_sec=0.1)
    if got:
        break
print(json.dumps(got))
"""
