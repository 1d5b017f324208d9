"""New-frame registration in a trained scene: latency and accuracy on its held-out views.

    .venv/bin/python bench/registration.py bench/results/reconstruct/chair/nvs_ros \
        --gt ../shared/data/nerf_synthetic_chair --size 64 --views 100 --split test --threads 1

Takes a `reconstruct` output folder (scene.pt, run.json listing the held-out views), registers
every held-out view again, one frame at a time as a robot would (encoder pass + render-and-
compare, core.registration), with `--split test` also every frame of the dataset's test split (NeRF
synthetic: viewpoints of their own, never trained on; chair has 25 here), and scores the poses
against ground truth after aligning the scene's training cameras to it (RANSAC Sim(3)). Writes bench/results/registration/<scene>.json and
prints one table: frames, accepted, rotation error <= 5 / 15 degrees, median error, median and
95th-percentile latency (a warm-up frame is not counted), and the median CPU time of the
registering thread (what the latency would be with a core to itself: benches share this CPU).
"""

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from datetime import date
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from nvs_ros.core.appearance import thumbnails
from nvs_ros.core.metrics import rotation_angle_deg
from nvs_ros.core.sim3 import ransac_sim3
from nvs_ros.core.refine_config import RefineConfig
from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.output_folder import read_poses, write_json
from nvs_ros.io.scene_checkpoint import load_scene

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "registration"


def measure(scene_dir: Path, gt: str, size: int | None, views: int | None, device: str,
            split: str | None = None, settings: dict | None = None) -> dict:
    image_set = load_image_set(gt, max_side=size, views=views)
    held_out = json.loads((scene_dir / "run.json").read_text())["held_out"]
    estimates = read_poses(scene_dir)
    index = {name: i for i, name in enumerate(image_set.names)}
    held = np.array([index[name] for name in held_out])
    train = np.array([i for i in range(len(image_set)) if image_set.names[i] not in set(held_out)
                      and estimates.registered_N[i]])
    gt_c2w = image_set.c2w_N44
    scale = np.linalg.norm(gt_c2w[:, :3, 3] - gt_c2w[:, :3, 3].mean(0), axis=1).max()
    alignment, _ = ransac_sim3(estimates.c2w_N44[train, :3, 3], gt_c2w[train, :3, 3], threshold=0.1 * scale)
    frames = [image_set.subset(held.tolist())] + ([load_image_set(gt, max_side=size, split=split)] if split else [])
    images_NHW3, K_N33, truth_N44 = (np.concatenate([getattr(f, name) for f in frames])
                                     for name in ("images_NHW3", "K_N33", "c2w_N44"))
    scene = load_scene(scene_dir, device=device)
    scene.refine = replace(scene.refine, **(settings or {}))
    if scene.thumbnails_ND is None:  # a scene saved before they were kept: its training views' own
        scene.thumbnails_ND = thumbnails(image_set.images_NHW3[[index[name] for name in scene.names]])
    scene.register(images_NHW3[:1], K_N33[:1])  # warm-up
    latencies, cpu_times, errors, accepted = [], [], [], []
    for i in range(len(images_NHW3)):
        started, started_cpu = time.perf_counter(), time.thread_time()
        registration = scene.register(images_NHW3[i:i + 1], K_N33[i:i + 1])
        latencies.append(time.perf_counter() - started)
        cpu_times.append(time.thread_time() - started_cpu)
        aligned = alignment.apply_c2w(scene.to_output(registration.c2w_B44.double().cpu().numpy()))
        errors.append(float(rotation_angle_deg(aligned[0, :3, :3].T @ truth_N44[i, :3, :3])))
        accepted.append(bool(registration.accepted_B[0]))
    errors_N, latency_ms = np.array(errors), 1000 * np.array(latencies)
    return {"scene": str(scene_dir), "ground_truth": gt, "split": split, "frames": len(images_NHW3),
            "held_out_frames": len(held), "accepted": int(sum(accepted)),
            "within_5deg": float(np.mean(errors_N <= 5)), "within_15deg": float(np.mean(errors_N <= 15)),
            "median_rotation_error_deg": float(np.median(errors_N)),
            "median_latency_ms": float(np.median(latency_ms)), "p95_latency_ms": float(np.percentile(latency_ms, 95)),
            "median_cpu_ms": 1000 * float(np.median(cpu_times)),
            "settings": settings or {}, "refine": asdict(scene.refine), "errors_deg": errors, "latencies_ms": latency_ms.tolist(), "device": device,
            "date": date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"}


def _settings(pairs: list[str]) -> dict:
    settings = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in RefineConfig.__dataclass_fields__:
            raise SystemExit(f"--set: RefineConfig has no setting {name!r}")
        numbers = tuple(float(v) if "." in v else int(v) for v in value.split(",") if v)
        settings[name] = numbers if "," in value else numbers[0]
    return settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scene_dir", type=Path, help="a reconstruct output folder")
    parser.add_argument("--gt", required=True, help="the dataset it was reconstructed from")
    parser.add_argument("--size", type=int, default=None, help="max image side it was loaded at")
    parser.add_argument("--views", type=int, default=None, help="views it was loaded with")
    parser.add_argument("--split", default=None, help="also register this split's frames (NeRF synthetic: test)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a core.refine_config.RefineConfig setting for this run (numbers; a comma makes a tuple), repeatable")
    parser.add_argument("--out", default=None, help="result name under bench/results/registration (default: the scene's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    row = measure(args.scene_dir, args.gt, args.size, args.views, args.device, args.split, _settings(args.set))
    write_json(RESULTS / f"{args.out or args.scene_dir.parent.name or args.scene_dir.name}.json", row)
    table = Table(title=f"New-frame registration into {args.scene_dir}")
    columns = ["frames", "accepted", "within_5deg", "within_15deg", "median_rotation_error_deg",
               "median_latency_ms", "p95_latency_ms", "median_cpu_ms"]
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(*(f"{row[c]:.0%}" if c.startswith("within") else f"{row[c]:.4g}" for c in columns))
    Console(width=140).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
