"""The same answer on any arithmetic: sets x seeds x arithmetic variants, with each run's verdict.

    .venv/bin/python bench/robustness.py                                # the demo, seeds 0-4, every variant
    .venv/bin/python bench/robustness.py --sets demo --seeds 0 1 --variants t1 t1-mkl-avx
    .venv/bin/python bench/robustness.py --sets demo-starved chair-16 --variants t1
    .venv/bin/python bench/robustness.py --list

Every cell is one `nvs-ros` process (the arithmetic is fixed when torch loads, so a variant is an
environment: torch threads, MKL's instruction set `MKL_ENABLE_INSTRUCTIONS`, torch's kernels
`ATEN_CPU_CAPABILITY`; variants the CPU cannot run are skipped). Each cell writes its output folder
under bench/results/robustness/<set>/<variant>-s<seed>/, its row to bench/results/robustness.json
(merged with earlier rows of other cells), and the table prints RRA@5, RRA@15, CCA@0.1, the median
rotation error, the run's own verdict and the engine time, with min / median / max per set.
A verdict is right when it flags a run with RRA@15 < 90% or CCA@0.1 < 50% and passes one with
RRA@15 >= 95% (runs between are counted as neither).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from nvs_ros.core.self_check import verdict_of

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NVS_ROS_DATA", ROOT / "../shared/data"))
RESULTS = ROOT / "bench" / "results" / "robustness"
NVS_ROS = [sys.executable, "-m", "nvs_ros.cli"]

# name: the nvs-ros arguments (before --seed/--threads/--out)
SETS = {
    "demo": ["demo"],
    "demo-3starts": ["demo", "--starts", "3"],
    "demo-starved": ["demo", "--iters", "100"],
    "chair-learnt": ["reconstruct", str(DATA / "nerf_synthetic_chair"), "--size", "64", "--init", "none",
                     "--time-budget", "1800"],
    # subsets of chair that fool the feature chain (its defaults keep wrong chained poses)
    "chair-16": ["reconstruct", str(DATA / "nerf_synthetic_chair"), "--size", "400", "--views", "16",
                 "--time-budget", "300"],
    "chair-8": ["reconstruct", str(DATA / "nerf_synthetic_chair"), "--size", "400", "--views", "8",
                "--time-budget", "300"],
    "temple": ["reconstruct", str(DATA / "middlebury_temple_ring"), "--size", "128", "--time-budget", "300"],
    "room": ["reconstruct", "bundled", "--size", "128", "--views", "24", "--time-budget", "300"],
}
# name: (torch threads, environment, CPU flag the variant needs)
VARIANTS = {
    "t1": (1, {}, None),
    "t2": (2, {}, None),
    "t1-mkl-sse42": (1, {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}, "sse4_2"),
    "t1-mkl-avx": (1, {"MKL_ENABLE_INSTRUCTIONS": "AVX"}, "avx"),
    "t1-mkl-avx2": (1, {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}, "avx2"),
    "t1-mkl-avx512": (1, {"MKL_ENABLE_INSTRUCTIONS": "AVX512"}, "avx512f"),
    "t1-aten-default": (1, {"ATEN_CPU_CAPABILITY": "default"}, None),
    "t1-aten-avx2": (1, {"ATEN_CPU_CAPABILITY": "avx2"}, "avx2"),
    "t1-aten-avx512": (1, {"ATEN_CPU_CAPABILITY": "avx512"}, "avx512f"),
    "t2-mkl-avx-aten-default": (2, {"MKL_ENABLE_INSTRUCTIONS": "AVX", "ATEN_CPU_CAPABILITY": "default"}, "avx"),
}
WRONG = {"RRA@15": 0.90, "CCA@0.1": 0.50}
"""A run below either is wrong, and its verdict must flag it (the issue's yardstick)."""
RIGHT_RRA15 = 0.95
"""A run at or above this is right, and its verdict must not flag it."""


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def runnable(variant: str, flags: set[str]) -> bool:
    needed = VARIANTS[variant][2]
    return needed is None or needed in flags


def run_cell(name: str, variant: str, seed: int) -> dict:
    threads, env_changes, _ = VARIANTS[variant]
    out = RESULTS / name / f"{variant}-s{seed}"
    command = [*NVS_ROS, *SETS[name], "--seed", str(seed), "--threads", str(threads), "--out", str(out)]
    env = {**os.environ, **env_changes, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    completed = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    run_dir = out / "nvs_ros" if SETS[name][0] == "demo" else out
    row = {"set": name, "variant": variant, "seed": seed, "threads": threads, "env": env_changes,
           "wall_s": wall_s, "returncode": completed.returncode, "date": date.today().isoformat()}
    if completed.returncode != 0:
        row["error"] = (completed.stderr.strip().splitlines() or ["?"])[-1]
        return row
    metrics = json.loads((run_dir / "metrics.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    verdict = run.get("verdict", {})
    row.update({key: metrics.get(key) for key in ("num_images", "registered", "RRA@5", "RRA@15", "CCA@0.1",
                                                   "median_rotation_error_deg", "heldout_PSNR", "train_PSNR")})
    row.update({"engine_s": run["timings"]["train_s"] + run["timings"]["register_held_out_s"],
                "verdict": verdict.get("status"), "verdict_reasons": verdict.get("reasons"),
                "evidence": verdict.get("evidence"), "initial_poses": run.get("initial_poses")})
    row["outcome"] = outcome(row)
    return row


def judged_again(row: dict) -> dict:
    """The row with its verdict recomputed from its stored evidence by today's thresholds
    (core.self_check.verdict_of): runs measured before a threshold moved stay comparable."""
    if row.get("evidence") is None:
        return row
    status, reasons = verdict_of(row["evidence"], given_poses=row.get("initial_poses") in ("features", "poses file"))
    row = {**row, "verdict": status, "verdict_reasons": reasons}
    return {**row, "outcome": outcome(row)}


def outcome(row: dict) -> str:
    """How the run's verdict compares with its accuracy: right / missed (wrong, not flagged) /
    false alarm (right, flagged) / between (neither right nor wrong by the yardstick)."""
    rra15, cca = row.get("RRA@15") or 0.0, row.get("CCA@0.1") or 0.0
    flagged = row.get("verdict") != "converged"
    if rra15 < WRONG["RRA@15"] or cca < WRONG["CCA@0.1"]:
        return "right" if flagged else "missed"
    if rra15 >= RIGHT_RRA15:
        return "false alarm" if flagged else "right"
    return "between"


def merge(rows: list[dict]) -> list[dict]:
    path = RESULTS.parent / "robustness.json"
    earlier = json.loads(path.read_text()) if path.is_file() else []
    keys = {(r["set"], r["variant"], r["seed"]) for r in rows}
    merged = [r for r in earlier if (r["set"], r["variant"], r["seed"]) not in keys] + rows
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=1))
    return merged


def print_table(rows: list[dict]) -> None:
    table = Table(title="Robustness: set x seed x arithmetic variant (the run's own verdict beside ground truth)")
    for column in ["set", "variant", "seed", "registered", "RRA@5", "RRA@15", "CCA@0.1", "rot. err. [deg]",
                   "verdict", "outcome", "engine [s]"]:
        table.add_column(column, justify="right")
    for r in sorted(rows, key=lambda r: (r["set"], r["variant"], r["seed"])):
        if "error" in r:
            table.add_row(r["set"], r["variant"], str(r["seed"]), "failed: " + r["error"][:60], *[""] * 7)
            continue
        table.add_row(r["set"], r["variant"], str(r["seed"]), f"{r['registered']}/{r['num_images']}",
                      *[f"{r[k]:.0%}" for k in ("RRA@5", "RRA@15", "CCA@0.1")],
                      "-" if r["median_rotation_error_deg"] is None else f"{r['median_rotation_error_deg']:.2f}",
                      str(r["verdict"]), r["outcome"], f"{r['engine_s']:.0f}")
    console = Console(width=160)
    console.print(table)
    for name in sorted({r["set"] for r in rows}):
        done = [r for r in rows if r["set"] == name and "error" not in r]
        if not done:
            continue
        parts = []
        for key in ("RRA@5", "RRA@15", "CCA@0.1", "median_rotation_error_deg", "engine_s"):
            values = np.array([r[key] for r in done if r[key] is not None], dtype=float)
            if len(values):
                parts.append(f"{key} {values.min():.3g} / {np.median(values):.3g} / {values.max():.3g}")
        outcomes = {o: sum(r["outcome"] == o for r in done) for o in ("right", "missed", "false alarm", "between")}
        console.print(f"{name}: {len(done)} runs, min / median / max: " + ", ".join(parts) + f"; verdicts {outcomes}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["demo"], choices=list(SETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--list", action="store_true", help="list the sets and variants and exit")
    parser.add_argument("--table", action="store_true",
                        help="print the table of the stored rows, judged again by today's thresholds, and exit")
    args = parser.parse_args()
    if args.list:
        for name, arguments in SETS.items():
            print(f"{name}: nvs-ros {' '.join(arguments)}")
        for name, (threads, env, flag) in VARIANTS.items():
            print(f"{name}: {threads} thread(s) {env or ''} {'(needs ' + flag + ')' if flag else ''}")
        return 0
    path = RESULTS.parent / "robustness.json"
    if args.table:
        print_table([judged_again(r) for r in (json.loads(path.read_text()) if path.is_file() else [])])
        return 0
    flags = cpu_flags()
    variants = [v for v in args.variants if runnable(v, flags)]
    skipped = sorted(set(args.variants) - set(variants))
    if skipped:
        print(f"skipped (this CPU lacks the instructions): {', '.join(skipped)}")
    rows = []
    for name in args.sets:
        for variant in variants:
            for seed in args.seeds:
                rows.append(run_cell(name, variant, seed))
                merge([rows[-1]])
                r = rows[-1]
                print(f"{name} {variant} seed {seed}: " + (r.get("error") or
                      f"RRA@15 {r['RRA@15']:.0%} RRA@5 {r['RRA@5']:.0%} verdict {r['verdict']} ({r['outcome']})"),
                      flush=True)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
