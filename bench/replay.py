"""A recording replayed once into a fresh node, as a user does it: how long to the first map TF
and RGB cloud, and how well the node's keyframes are posed.

    .venv/bin/python bench/replay.py                                     # the temple ring, 640x480
    .venv/bin/python bench/replay.py --dataset bundled --size 128 --views 24 --timeout 600

Writes the dataset as a bag (`nvs-ros bag-from`), starts nvs_node in its own process from
config/nvs.yaml with `reliable_qos:=true use_sim_time:=true`, plays the bag once with
`nvs-ros play` (which waits for the node's subscriptions), and listens for the first TF out of
`map`, the first non-empty point cloud and, on /diagnostics, the moment every keyframe of the
replay is posed by a trusted round. Then (or at the timeout) it calls ~/save and scores the saved
keyframe poses against the bag's ground truth (matched by stamp). Prints a table and writes
bench/results/replay/<dataset>.json, with the end of the node's log.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rich.console import Console
from rich.table import Table
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from nvs_ros.io.evaluation import score_against_bag
from nvs_ros.io.output_folder import write_json
from nvs_ros.ros.qos import LATCHED_QOS, TF_LISTENER_QOS

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NVS_ROS_DATA", ROOT / "../shared/data"))
RESULTS = ROOT / "bench" / "results" / "replay"
NVS_ROS = [sys.executable, "-m", "nvs_ros.cli"]


def run(args: argparse.Namespace, work: Path) -> dict:
    source = args.dataset if args.dataset.startswith("bundled") else str(DATA / args.dataset)
    bag, saved = work / "bag", work / "saved"
    subprocess.run([*NVS_ROS, "bag-from", source, str(bag), *(["--size", str(args.size)] if args.size else []),
                    *(["--views", str(args.views)] if args.views else [])], check=True, capture_output=True)
    node_log = (work / "node.log").open("w")
    node = subprocess.Popen([str(Path(sys.executable).with_name("nvs_node")), "--ros-args", "--params-file",
                             str(ROOT / "config" / "nvs.yaml"), "-p", "reliable_qos:=true", "-p", "use_sim_time:=true",
                             "-p", f"output_folder:={saved}", *[a for p in args.param for a in ("-p", p)]],
                            stdout=node_log, stderr=subprocess.STDOUT)
    rclpy.init()
    listener = rclpy.create_node("nvs_replay_bench")
    status: dict[str, str] = {}
    listener.create_subscription(DiagnosticArray, "/diagnostics", lambda m: status.update(
        {kv.key: kv.value for s in m.status for kv in s.values}), 10)
    firsts: dict[str, float] = {}
    listener.create_subscription(TFMessage, "/tf", lambda m: firsts.setdefault("tf", time.monotonic())
                                 if any(t.header.frame_id == "map" for t in m.transforms) else None, TF_LISTENER_QOS)
    listener.create_subscription(PointCloud2, "/nvs_node/point_cloud", lambda m: firsts.setdefault(
        "cloud", time.monotonic()) if m.width > 0 else None, LATCHED_QOS)
    save = listener.create_client(Trigger, "/nvs_node/save")
    player = subprocess.Popen([*NVS_ROS, "play", str(bag)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    start = time.monotonic()
    try:
        while "all_posed" not in firsts and time.monotonic() < start + args.timeout:
            rclpy.spin_once(listener, timeout_sec=0.2)
            if "tf" in firsts and player.poll() is not None and status.get("tf_withheld") == "" and status.get("keyframe_queue") == "0" \
                    and status.get("frames_queued") == "0" and status.get("posed_keyframes") == status.get("keyframes"):
                firsts.setdefault("all_posed", time.monotonic())
        saved_ok = False
        if save.wait_for_service(timeout_sec=10):
            future = save.call_async(Trigger.Request())
            rclpy.spin_until_future_complete(listener, future, timeout_sec=60)
            saved_ok = future.done() and future.result().success
    finally:
        player.wait(timeout=60)
        node.terminate()
        try:
            node.wait(timeout=15)
        except subprocess.TimeoutExpired:
            node.kill()
        listener.destroy_node()
        rclpy.shutdown()
        node_log.close()
    metrics = score_against_bag(saved, bag) if saved_ok else {}

    def after_start(key: str) -> float | None:
        return round(firsts[key] - start, 1) if key in firsts else None

    return {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "dataset": source, "size": args.size, "views": args.views, "node_parameters": args.param,
            "player_returncode": player.returncode, "player_log": player.stderr.read()[-2000:], "first_tf_after_s": after_start("tf"),
            "first_cloud_after_s": after_start("cloud"), "all_posed_after_s": after_start("all_posed"),
            "saved": saved_ok,
            "diagnostics": {key: status.get(key) for key in ["frames_received", "frames_accepted", "keyframes",
                                                             "posed_keyframes", "rounds", "pose_start", "verdict",
                                                             "verdict_reasons", "tf_withheld",
                                                             "latency_s", "clock", "frames_dropped_queue_full"]},
            "metrics": {key: metrics.get(key) for key in ["num_images", "registered", "RRA@5", "RRA@15", "CCA@0.1",
                                                          "median_rotation_error_deg"]},
            "node_log": (work / "node.log").read_text()[-3000:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="middlebury_temple_ring",
                        help="a folder of ../shared/data, or bundled[:...] (default: the temple ring)")
    parser.add_argument("--size", type=int, default=None, help="longer image side of the bag (default: as stored)")
    parser.add_argument("--views", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for every keyframe to be posed by a trusted round")
    parser.add_argument("-p", "--param", action="append", default=[], help="a node parameter, name:=value")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nvs_replay_") as work:
        row = run(args, Path(work))
    name = Path(row["dataset"]).name.replace(":", "_")
    write_json(RESULTS / f"{name}.json", row)
    table = Table(title=f"{row['dataset']} replayed once into nvs_node ({row['date']}, {row['machine']})")
    for column in ["first TF (s)", "first cloud (s)", "all posed (s)", "frames", "keyframes", "posed", "registered",
                   "RRA@15", "CCA@0.1", "verdict"]:
        table.add_column(column, justify="right")
    d, m = row["diagnostics"], row["metrics"]

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.0f}%"

    table.add_row(str(row["first_tf_after_s"]), str(row["first_cloud_after_s"]), str(row["all_posed_after_s"]),
                  str(d["frames_received"]),
                  str(d["keyframes"]), str(d["posed_keyframes"]),
                  f"{m['registered']}/{m['num_images']}" if m["num_images"] else "-",
                  pct(m["RRA@15"]), pct(m["CCA@0.1"]), str(d["verdict"]))
    Console().print(table)
    print(json.dumps(row["diagnostics"]))


if __name__ == "__main__":
    main()
