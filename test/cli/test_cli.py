"""The `nvs-ros` command, run as a user runs it: the installed console script."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.output_folder import read_poses, write_json

# The console script the set-up installed next to this interpreter.
NVS_ROS = Path(sys.executable).with_name("nvs-ros")


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    assert NVS_ROS.is_file(), f"{NVS_ROS} is missing: run scripts/setup.sh"
    return subprocess.run([str(NVS_ROS), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ["demo", "eval"]:
        assert command in result.stdout


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    # A few engine steps: the products and the table, not the accuracy (bench/ measures that).
    result = run_cli("demo", "--out", str(out), "--size", "64", "--views", "8", "--iters", "24",
                     "--threads", "1")
    assert result.returncode == 0, result.stderr
    (out / "stdout.txt").write_text(result.stdout)
    return out


def test_demo_runs_the_engine_and_prints_one_table_with_every_row(demo_out):
    for name in ["poses.json", "run.json", "metrics.json", "cloud.ply", "report.html"]:
        assert (demo_out / "nvs_ros" / name).is_file(), name
    run = json.loads((demo_out / "nvs_ros" / "run.json").read_text())
    assert run["estimator"].startswith("nvs_ros") and run["config"]["iterations"] == 24
    metrics = json.loads((demo_out / "nvs_ros" / "metrics.json").read_text())
    registered = sum(entry["registered"] for entry in json.loads((demo_out / "nvs_ros" / "poses.json").read_text())["images"])
    assert metrics["num_images"] == 8 and metrics["registered"] == registered
    stdout = (demo_out / "stdout.txt").read_text()
    rows = [stdout.index(label) for label in ["nvs_ros (", "pycolmap SfM", "ground truth (self-check)"]]
    assert rows == sorted(rows)  # the engine first, the self-check last


def test_a_starved_demo_says_its_poses_are_unconverged(demo_out):
    """24 steps cannot pose a ring: whatever the arithmetic makes of them, the field hardly beats
    the images' mean, and the run must say so in run.json, in the table and in the line below it."""
    run = json.loads((demo_out / "nvs_ros" / "run.json").read_text())
    assert run["verdict"]["status"] == "unconverged" and run["verdict"]["reasons"], run["verdict"]
    assert run["verdict"]["evidence"]["gain_over_mean_image_db"] < 3.0
    metrics = json.loads((demo_out / "nvs_ros" / "metrics.json").read_text())
    assert metrics["verdict"] == "unconverged"
    stdout = (demo_out / "stdout.txt").read_text()
    assert "verdict" in stdout and "unconverged" in stdout


def test_demo_writes_the_scene_and_a_perfect_self_check(demo_out):
    assert len(list((demo_out / "scene").glob("*.png"))) == 8
    for name in ["poses.json", "poses_tum.txt", "run.json", "metrics.json"]:
        assert (demo_out / "ground_truth" / name).is_file(), name
    metrics = json.loads((demo_out / "ground_truth" / "metrics.json").read_text())
    assert metrics["registered"] == 8
    assert metrics["RRA@5"] == 1.0 and metrics["CCA@0.1"] == 1.0
    assert metrics["ATE"] < 1e-9


def test_demo_runs_the_pycolmap_baseline_through_the_same_evaluation(demo_out):
    for name in ["poses.json", "poses_tum.txt", "run.json", "metrics.json"]:
        assert (demo_out / "colmap" / name).is_file(), name
    run = json.loads((demo_out / "colmap" / "run.json").read_text())
    assert run["estimator"] == "pycolmap" and run["timings"]["total_s"] > 0
    metrics = json.loads((demo_out / "colmap" / "metrics.json").read_text())
    assert metrics["num_images"] == 8 and 0 <= metrics["registered"] <= 8


def test_eval_scores_a_perturbed_folder_against_the_bundled_ground_truth(demo_out, tmp_path):
    # Roll one camera by 20 degrees about its optical axis: the 7 pairs containing it fail.
    poses = json.loads((demo_out / "ground_truth" / "poses.json").read_text())
    angle = np.deg2rad(20.0)
    roll = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    c2w = np.array(poses["images"][3]["c2w"])
    c2w[:3, :3] = c2w[:3, :3] @ roll
    poses["images"][3]["c2w"] = c2w.tolist()
    write_json(tmp_path / "poses.json", poses)

    result = run_cli("eval", str(tmp_path), "--gt", "bundled:object", "--size", "64", "--views", "8")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["RRA@15"] == pytest.approx(21 / 28)
    assert metrics["RRA@5"] == pytest.approx(21 / 28)
    assert metrics["CCA@0.1"] == 1.0  # centres were not moved
    assert "RRA@15" in result.stdout


def test_eval_of_a_folder_without_poses_fails_with_one_clear_line(tmp_path):
    result = run_cli("eval", str(tmp_path), "--gt", "bundled")
    assert result.returncode == 1
    assert "no poses.json" in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_rejects_images_the_ground_truth_does_not_have(demo_out, tmp_path):
    poses = json.loads((demo_out / "ground_truth" / "poses.json").read_text())
    poses["images"][0]["name"] = "not_in_the_dataset.png"
    write_json(tmp_path / "poses.json", poses)
    result = run_cli("eval", str(tmp_path), "--gt", "bundled:object", "--size", "64", "--views", "8")
    assert result.returncode == 1
    assert "not_in_the_dataset.png" in result.stderr


def test_output_folder_round_trips_through_poses_json(demo_out):
    estimates = read_poses(demo_out / "ground_truth")
    scene = load_image_set("bundled:object", max_side=64, views=8)
    assert estimates.names == scene.names
    np.testing.assert_allclose(estimates.c2w_N44, scene.c2w_N44, atol=1e-12)
    np.testing.assert_allclose(estimates.K_N33, scene.K_N33, atol=1e-12)
    tum = (demo_out / "ground_truth" / "poses_tum.txt").read_text().splitlines()
    assert len([line for line in tum if not line.startswith("#")]) == 8
