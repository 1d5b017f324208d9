"""Camera-callback cost, memory and time to the first products of nvs_node under a 30 Hz stream.

    .venv/bin/python bench/node.py --duration 600          # the issue's 10-minute run
    .venv/bin/python bench/node.py --duration 60 --rate 30 --width 640 --height 480
    .venv/bin/python bench/node.py --duration 90 -p round_budget_s:=20.0 -p torch_threads:=1

Starts nvs_node (config/nvs.yaml, sensor-data QoS, plus the `-p` overrides) in its own process,
publishes rgb8 frames of the bundled scene (a slow pan over rendered views) + CameraInfo at the
given rate, samples the node's resident memory (VmRSS) every second, and reads the node's own
callback timing (conversion + keyframe check, measured inside the callback) and scene status
from /diagnostics, the tracking of frames between keyframes among it (registration time, and
hand-over to pose: the wait for the end of a training slice plus the registration). End to end,
it times from the first published image to the first map TF and the first non-empty point cloud
it receives. Prints a table and writes
bench/results/node/node_<duration>s.json.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from rich.console import Console
from rich.table import Table
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from tf2_msgs.msg import TFMessage

from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.output_folder import write_json
from nvs_ros.ros.image_conversion import numpy_to_image_msg
from nvs_ros.ros.qos import LATCHED_QOS, TF_LISTENER_QOS
from nvs_ros.ros.transforms import ns_to_stamp

ROOT = Path(__file__).resolve().parents[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pan_frames(width: int, height: int, count: int) -> list[np.ndarray]:
    """Wide frames of the bundled room, cropped along a slow horizontal pan."""
    views = load_image_set("bundled", max_side=max(width, height) * 2, views=8).images_NHW3
    frames = []
    for i in range(count):
        view = views[(i * len(views)) // count]
        offset = (i * 7) % (view.shape[1] - width)
        frames.append(np.ascontiguousarray(view[:height, offset: offset + width]))
    return frames


def run(args: argparse.Namespace) -> dict:
    node_proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("nvs_node")), "--ros-args", "--params-file",
         str(ROOT / "config" / "nvs.yaml"), "-p", "diagnostics_period_s:=1.0",
         *[arg for param in args.param for arg in ("-p", param)]],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rclpy.init()
    bench = rclpy.create_node("nvs_node_bench")
    images = bench.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
    infos = bench.create_publisher(CameraInfo, "/camera/camera_info", qos_profile_sensor_data)
    status: dict[str, str] = {}
    bench.create_subscription(DiagnosticArray, "/diagnostics", lambda m: status.update(
        {kv.key: kv.value for s in m.status for kv in s.values}), 10)
    firsts: dict[str, float] = {}
    """time.monotonic() of the first map TF / non-empty cloud received."""
    bench.create_subscription(TFMessage, "/tf", lambda m: firsts.setdefault("tf", time.monotonic())
                              if any(t.header.frame_id == "map" for t in m.transforms) else None, TF_LISTENER_QOS)
    bench.create_subscription(PointCloud2, "/nvs_node/point_cloud", lambda m: firsts.setdefault(
        "cloud", time.monotonic()) if m.width > 0 else None, LATCHED_QOS)
    frames = pan_frames(args.width, args.height, 240)
    info = CameraInfo(width=args.width, height=args.height,
                      k=[500.0, 0, args.width / 2, 0, 500.0, args.height / 2, 0, 0, 1])
    deadline = time.monotonic() + 30
    while images.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(bench, timeout_sec=0.1)

    rss_samples, published, start = [], 0, time.monotonic()
    next_sample = start
    while (now := time.monotonic()) < start + args.duration:
        stamp = ns_to_stamp(time.time_ns())
        msg = numpy_to_image_msg(frames[published % len(frames)], "rgb8")
        msg.header.stamp = info.header.stamp = stamp
        infos.publish(info)
        images.publish(msg)
        published += 1
        if now >= next_sample:
            rss_samples.append((round(now - start, 1), rss_mib(node_proc.pid)))
            next_sample += 1.0
        rclpy.spin_once(bench, timeout_sec=0)
        time.sleep(max(0.0, start + published / args.rate - time.monotonic()))
    final_deadline = time.monotonic() + 3
    while time.monotonic() < final_deadline:
        rclpy.spin_once(bench, timeout_sec=0.1)
    node_proc.terminate()
    try:
        node_proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        node_proc.kill()
    bench.destroy_node()
    rclpy.shutdown()

    rss = np.array([r for _, r in rss_samples])

    def after_start(key: str) -> float | None:
        return round(firsts[key] - start, 2) if key in firsts else None

    quarter = max(1, len(rss) // 4)
    return {
        "date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "duration_s": args.duration, "rate_hz": args.rate, "size": f"{args.width}x{args.height}",
        "published": published, "received": int(status.get("frames_received", 0)),
        "accepted": int(status.get("frames_accepted", 0)), "keyframes": int(status.get("keyframes", 0)),
        "callback_ms_mean": float(status.get("callback_ms_mean", "nan")),
        "callback_ms_max": float(status.get("callback_ms_max", "nan")),
        "callback_cpu_ms_mean": float(status.get("callback_cpu_ms_mean", "nan")),
        "rss_mib_first_quarter": float(rss[:quarter].mean()), "rss_mib_last_quarter": float(rss[-quarter:].mean()),
        "rss_mib_max": float(rss.max()),
        "node_parameters": args.param,
        "first_tf_after_s": after_start("tf"), "first_cloud_after_s": after_start("cloud"),
        "scene": {key: status.get(key) for key in ["scene_keyframes", "posed_keyframes", "training_step", "loss",
                                                   "rounds", "keyframe_queue", "dropped_keyframes",
                                                   "train_s_total", "first_poses_after_s", "first_cloud_after_s",
                                                   "tracked_frames", "tracking_rejected", "tracking_register_ms_mean",
                                                   "tracking_latency_ms_mean"]},
        "rss_samples": rss_samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of streaming (default 600)")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second (default 30)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/node/)")
    parser.add_argument("-p", "--param", action="append", default=[],
                        help="node parameter override NAME:=VALUE (repeatable), e.g. -p round_budget_s:=20.0")
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    result = run(args)
    table = Table(title=f"nvs_node camera callback, {result['size']} rgb8 at {args.rate:g} Hz")
    for key in ["duration_s", "published", "received", "accepted", "keyframes", "callback_ms_mean",
                "callback_ms_max", "callback_cpu_ms_mean", "rss_mib_first_quarter", "rss_mib_last_quarter",
                "rss_mib_max", "first_tf_after_s", "first_cloud_after_s"]:
        table.add_row(key, f"{result[key]:.2f}" if isinstance(result[key], float) else str(result[key]))
    for key, value in result["scene"].items():
        table.add_row(f"scene: {key}", str(value))
    Console(width=100).print(table)
    write_json(args.out or ROOT / "bench" / "results" / "node" / f"node_{args.duration:g}s.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
