"""Inference backends on the registration: median and p95 latency of the encoder pass and of a
whole registration (encoder pass + candidate ranking + direct alignment, core.registration) per
backend, at batch 1 and 8.

    .venv/bin/python bench/runtime.py --threads 1       # trains a small scene first (~1 min)

It trains bundled:object (64 px, 8 views, `--steps` steps, the default architecture: encoder
input 64 px) and registers its views: latency depends on the sizes, not on how well it is trained.
Backends that cannot run here are listed with the reason. Writes
bench/results/runtime/<scene>.json and prints one table.
"""

import argparse
import dataclasses
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from nvs_ros.app.frame_registration import use_backend
from nvs_ros.core import cameras
from nvs_ros.core.scene import Scene
from nvs_ros.core.trainer import reconstruct
from nvs_ros.core.trainer_config import TrainerConfig
from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.output_folder import write_json
from nvs_ros.runtime.backend import BackendUnavailable, RuntimeConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "runtime"


def small_scene(steps: int) -> tuple[Scene, np.ndarray, np.ndarray]:
    views = load_image_set("bundled:object", max_side=64, views=10)
    train = views.subset(list(range(8)))
    config = TrainerConfig(time_budget_s=None, iterations=steps, starts=1)
    result = reconstruct(train.without_ground_truth(), config)
    scene = Scene.from_training(result.engine, config, train.names, train.images_NHW3, train.K_N33, result.c2w_N44)
    return scene, views.images_NHW3, views.K_N33


def timed(run, repeats: int) -> list[float]:
    run()  # warm-up: first calls allocate and pick kernels
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return seconds


def stats_ms(seconds: list[float]) -> dict:
    return {"median_ms": 1000 * float(np.median(seconds)), "p95_ms": 1000 * float(np.percentile(seconds, 95))}


def measure(scene: Scene, images_NHW3: np.ndarray, K_N33: np.ndarray, device: str, repeats: int,
            threads: int) -> list[dict]:
    rows = []
    size = scene.engine.encoder.config.input_size
    for backend in ("torch", "onnxruntime", "tensorrt"):
        on = dataclasses.replace(scene)
        try:
            detail = use_backend(on, RuntimeConfig(backend=backend, device=device, threads=threads))
        except BackendUnavailable as err:
            rows.append({"backend": backend, "unavailable": str(err)})
            continue
        for batch in (1, 8):
            pick = np.arange(batch) % len(images_NHW3)
            images = torch.from_numpy(images_NHW3[pick]).float().div(255.0).to(device)
            encoder_input = cameras.resized_images(images, (size, size)).permute(0, 3, 1, 2).contiguous()
            encoder = timed(lambda: on.encoder_pass(encoder_input), repeats)
            whole = timed(lambda: on.register(images_NHW3[pick], K_N33[pick]), max(3, repeats // (4 * batch)))
            rows.append({"backend": backend, "detail": detail, "batch": batch,
                         "encoder": stats_ms(encoder), "registration": stats_ms(whole)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps of the small scene")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime CPU threads")
    parser.add_argument("--repeats", type=int, default=100, help="encoder passes timed per backend and batch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scene, images, K = small_scene(args.steps)
    name = "bundled_object_64px"
    rows = measure(scene, images, K, args.device, args.repeats, args.threads)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} thread(s)"
    if args.device.startswith("cuda"):
        machine += f", {torch.cuda.get_device_name()}"
    table = Table(title=f"Registration backends, {name} (encoder input {scene.engine.encoder.config.input_size} px, "
                        f"{machine}, {date.today()})")
    for column in ["backend", "batch", "encoder median ms", "encoder p95 ms", "registration median ms",
                   "registration p95 ms"]:
        table.add_column(column)
    for row in rows:
        if "unavailable" in row:
            table.add_row(row["backend"], "-", f"unavailable: {row['unavailable']}", "", "", "")
            continue
        table.add_row(row["detail"], str(row["batch"]), *(f"{row[part][key]:.2f}" for part in ("encoder", "registration")
                                                         for key in ("median_ms", "p95_ms")))
    Console(width=160).print(table)
    write_json(RESULTS / f"{name}.json", {"date": str(date.today()), "machine": machine, "device": args.device,
                                          "scene": name, "rows": rows})


if __name__ == "__main__":
    main()
