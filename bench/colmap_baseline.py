"""The classical baseline: pycolmap incremental SfM on an image set, written as an nvs_ros output folder.

    python bench/colmap_baseline.py middlebury_temple_ring --out bench/results/colmap/temple
    python bench/colmap_baseline.py nerf_synthetic_chair --size 200 --views 100 --out /tmp/chair200
    python bench/colmap_baseline.py bundled --out /tmp/bundled --summary bench/results/colmap/summary.json

What it runs is described in nvs_ros/baselines/colmap_sfm.py (SIFT, exhaustive matching,
incremental mapping, one shared camera with the dataset's intrinsics, min_model_size=3).

The estimator only sees `ImageSet.without_ground_truth()`; ground-truth poses are used for
metrics.json alone. DATASET is whatever `nvs_ros.io.datasets.load_image_set` accepts: a folder
name under the shared data folder, a path, "bundled" or "bundled:object".

Exit codes: 0 done (even if nothing registered: that is a result), 1 the dataset cannot be read.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


from nvs_ros.baselines.colmap_sfm import ColmapConfig, ColmapResult, run_colmap
from nvs_ros.core.image_set import ImageSet
from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.errors import DatasetError
from nvs_ros.io.evaluation import score_estimates
from nvs_ros.io.output_folder import write_json, write_output_folder

log = logging.getLogger("bench.colmap_baseline")

DATA_DIR = Path(os.environ.get("NVS_ROS_DATA", Path(__file__).resolve().parents[1] / "../shared/data"))
"""Where bare dataset names (e.g. `llff_fern`) are looked up: $NVS_ROS_DATA or <repo>/../shared/data."""


def resolve_source(dataset: str) -> str | Path:
    """`dataset` as load_image_set takes it: a bare name that is no path is looked up in DATA_DIR."""
    if dataset.startswith("bundled") or Path(dataset).exists() or not (DATA_DIR / dataset).is_dir():
        return dataset
    return (DATA_DIR / dataset).resolve()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="dataset folder (a path, or a name under $NVS_ROS_DATA or "
                        "../shared/data), or 'bundled[:variant[:path]]'")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--size", type=int, default=None, metavar="MAX_SIDE",
                        help="downscale so the longer side is at most MAX_SIDE pixels")
    parser.add_argument("--views", type=int, default=None, help="number of evenly spaced views")
    parser.add_argument("--split", default="train", help="dataset split (default: train)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=ColmapConfig.num_threads)
    parser.add_argument("--camera-model", choices=["PINHOLE", "SIMPLE_PINHOLE"], default="PINHOLE")
    parser.add_argument("--refine-intrinsics", action="store_true",
                        help="let bundle adjustment refine the shared focal length(s)")
    parser.add_argument("--summary", type=Path, default=None,
                        help="JSON file of result rows to add this run's row to (keyed by --out name)")
    return parser


def summary_row(dataset: str, config: ColmapConfig, image_set: ImageSet, result: ColmapResult,
                metrics: dict | None, out_dir: Path) -> dict[str, Any]:
    """One line of the results table."""
    row: dict[str, Any] = {"name": out_dir.name, "dataset": dataset, "views": len(image_set),
                           "size": f"{image_set.width}x{image_set.height}",
                           "registered": int(result.estimates.registered_N.sum())}
    for key in ("RRA@5", "RRA@15", "CCA@0.1", "ATE"):
        row[key] = None if metrics is None else metrics.get(key)
    row["wall_s"] = round(result.timings["total_s"], 1)
    row["refine_intrinsics"] = config.refine_intrinsics
    row["out"] = str(out_dir)
    return row


def format_row(row: dict[str, Any]) -> str:
    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    return "  ".join(f"{key}={fmt(value)}" for key, value in row.items() if key != "out")


def update_summary(path: Path, row: dict[str, Any]) -> None:
    """Replace (or add) the row with the same name in a JSON list of rows."""
    rows = json.loads(path.read_text()) if path.is_file() else []
    rows = [r for r in rows if r.get("name") != row["name"]] + [row]
    write_json(path, rows)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = ColmapConfig(max_side=args.size, views=args.views, split=args.split, seed=args.seed,
                          num_threads=args.threads, camera_model=args.camera_model,
                          refine_intrinsics=args.refine_intrinsics)
    try:
        image_set = load_image_set(resolve_source(args.dataset), config.max_side, config.views,
                                   split=config.split)
    except DatasetError as err:
        print(f"ERROR: {str(err).splitlines()[0]}", file=sys.stderr)  # the rest lists formats
        return 1
    log.info("%d views at %dx%d from %s", len(image_set), image_set.width, image_set.height,
             image_set.source)
    with tempfile.TemporaryDirectory(prefix="colmap_baseline_") as work:
        result = run_colmap(image_set.without_ground_truth(), config, Path(work))
    metrics = score_estimates(result.estimates, image_set) if image_set.has_ground_truth else None
    write_output_folder(args.out, result.estimates, {**result.run_info, "dataset": args.dataset}, metrics)
    row = summary_row(args.dataset, config, image_set, result, metrics, Path(args.out))
    if args.summary is not None:
        update_summary(args.summary, row)
    print(format_row(row))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())
