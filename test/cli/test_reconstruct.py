"""`nvs-ros reconstruct` end to end on a tiny bundled scene: the output folder and its scoring."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nvs_ros.io.output_folder import read_poses
from nvs_ros.io.point_cloud_ply import read_point_cloud_ply

NVS_ROS = Path(sys.executable).with_name("nvs-ros")
TINY = ["bundled:object", "--size", "32", "--views", "8", "--threads", "1"]

pytestmark = pytest.mark.slow


def reconstruct(out: Path, *extra: str) -> subprocess.CompletedProcess:
    result = subprocess.run([str(NVS_ROS), "reconstruct", *TINY, "--out", str(out), *extra],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_output_folder_is_complete_and_eval_reproduces_its_metrics(tmp_path):
    out = tmp_path / "run"
    reconstruct(out, "--iters", "40")
    estimates = read_poses(out)
    assert len(estimates) == 8 and estimates.registered_N.all()
    assert np.isfinite(estimates.c2w_N44).all()
    assert ((estimates.confidence_N >= 0) & (estimates.confidence_N <= 1)).all()
    points, colors = read_point_cloud_ply(out / "cloud.ply")
    assert len(points) > 0 and np.isfinite(points).all() and len(colors) == len(points)
    assert len(list((out / "views").glob("*_real.png"))) == 8
    assert len(list((out / "views").glob("*_render.png"))) == 8
    report = (out / "report.html").read_text()
    assert "view_000.png" in report and "<circle" in report and "polyline" in report
    run = json.loads((out / "run.json").read_text())
    assert run["timings"]["train_s"] > 0 and run["config"]["iterations"] == 40 and "torch" in run["versions"]

    written = json.loads((out / "metrics.json").read_text())
    scored = subprocess.run([str(NVS_ROS), "eval", str(out), "--gt", "bundled:object", "--size", "32",
                             "--views", "8"], capture_output=True, text=True, timeout=120)
    assert scored.returncode == 0, scored.stderr
    rescored = json.loads((out / "metrics.json").read_text())
    for key in ["registered", "RRA@15", "CCA@0.1", "ATE"]:
        assert rescored[key] == pytest.approx(written[key]), key


def test_oracle_keeps_the_ground_truth_cameras_up_to_a_similarity(tmp_path):
    reconstruct(tmp_path / "oracle", "--poses", "gt", "--iters", "20")
    metrics = json.loads((tmp_path / "oracle" / "metrics.json").read_text())
    assert metrics["RRA@5"] == 1.0 and metrics["CCA@0.1"] == 1.0
    assert metrics["median_relative_rotation_error_deg"] < 1e-3
