"""`nvs-ros reconstruct` end to end on a tiny bundled scene: the output folder and its scoring."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from nvs_ros.io.datasets import load_image_set
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
    assert len(estimates) == 8  # every image, the held-out one (view_000) included
    assert estimates.registered_N[1:].all() and np.isfinite(estimates.c2w_N44[estimates.registered_N]).all()
    assert ((estimates.confidence_N >= 0) & (estimates.confidence_N <= 1)).all()
    assert (out / "scene.pt").is_file() and (out / "scene.json").is_file()
    points, colors = read_point_cloud_ply(out / "cloud.ply")
    assert len(points) > 0 and np.isfinite(points).all() and len(colors) == len(points)
    shown = 4 + int(estimates.registered_N[0])  # training views + the held-out one if registered
    assert len(list((out / "views").glob("*_real.png"))) == shown
    assert len(list((out / "views").glob("*_render.png"))) == shown
    report = (out / "report.html").read_text()
    assert "view_001.png" in report and "<circle" in report and "polyline" in report
    run = json.loads((out / "run.json").read_text())
    assert run["timings"]["train_s"] > 0 and run["config"]["iterations"] == 40 and "torch" in run["versions"]
    # each part of the budget (pose learning's two stages, the refinement's four) is rounded to the
    # nearest step: 40 steps within one step per part
    assert 40 - 6 <= run["training_steps"] <= 40 + 6
    assert run["held_out"] == ["view_000.png"]
    assert run["init"] == "auto" and run["initial_poses"] == "learnt"  # too little texture at 32 px

    written = json.loads((out / "metrics.json").read_text())
    scored = subprocess.run([str(NVS_ROS), "eval", str(out), "--gt", "bundled:object", "--size", "32",
                             "--views", "8"], capture_output=True, text=True, timeout=120)
    assert scored.returncode == 0, scored.stderr
    rescored = json.loads((out / "metrics.json").read_text())
    for key in ["registered", "RRA@15", "CCA@0.1", "ATE"]:
        assert rescored[key] == pytest.approx(written[key]), key
    assert written["train_views"] == 4 and 5.0 < written["train_PSNR"] < 60.0
    assert rescored["train_PSNR"] == written["train_PSNR"]  # eval keeps the view-synthesis scores


def test_oracle_keeps_the_ground_truth_cameras_up_to_a_similarity(tmp_path):
    reconstruct(tmp_path / "oracle", "--poses", "gt", "--iters", "20")
    metrics = json.loads((tmp_path / "oracle" / "metrics.json").read_text())
    assert metrics["RRA@5"] == 1.0 and metrics["CCA@0.1"] == 1.0  # held-out view included
    assert metrics["registered"] == 8
    assert metrics["median_relative_rotation_error_deg"] < 1e-3
    assert metrics["heldout_views"] == 1 and metrics["heldout_PSNR"] is not None


def test_register_poses_image_files_in_a_saved_scene(tmp_path):
    """The command's plumbing on a barely trained scene (whether the frame is accepted is the
    method's business, tested in test/core/test_registration.py): every frame gets a pose, a
    confidence and a latency, and a corrupt file is a clear error."""
    out = tmp_path / "run"
    reconstruct(out, "--iters", "20")
    image = tmp_path / "frame.png"
    view = load_image_set("bundled:object", max_side=64, views=8).images_NHW3[3]  # another size than the scene
    cv2.imwrite(str(image), cv2.cvtColor(view, cv2.COLOR_RGB2BGR))
    result = subprocess.run([str(NVS_ROS), "register", str(out), str(image), "--threads", "1",
                             "--out", str(tmp_path / "frames.json")], capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 3), result.stderr[-2000:]
    frames = json.loads((tmp_path / "frames.json").read_text())["frames"]
    assert [f["name"] for f in frames] == ["frame.png"]
    assert 0.0 <= frames[0]["confidence"] <= 1.0 and frames[0]["latency_ms"] > 0
    assert (frames[0]["c2w"] is not None) == frames[0]["accepted"] == (result.returncode == 0)

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    failed = subprocess.run([str(NVS_ROS), "register", str(out), str(corrupt)], capture_output=True, text=True,
                            timeout=120)
    assert failed.returncode == 1 and "corrupt" in failed.stderr
    missing = subprocess.run([str(NVS_ROS), "register", str(tmp_path), str(image)], capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 1 and "not a saved scene" in missing.stderr


def test_poses_file_gives_the_products_its_frame_and_scale(tmp_path):
    """--init POSES: the products (poses.json, cloud.ply) come out in the frame and metric
    scale of the given poses, and say so; without it they are in the engine's own gauge."""
    from scipy.spatial.transform import Rotation

    from nvs_ros.core.camera_estimates import CameraEstimates
    from nvs_ros.core.sim3 import Sim3
    from nvs_ros.io.output_folder import write_output_folder

    views = load_image_set("bundled:object", max_side=32, views=8)
    metres = Sim3(3.0, Rotation.from_euler("z", 90, degrees=True).as_matrix(), np.array([10.0, 5.0, 0.0]))
    given = metres.apply_c2w(views.c2w_N44)
    write_output_folder(tmp_path / "odometry", CameraEstimates(
        names=views.names, c2w_N44=given, registered_N=np.ones(8, bool), K_N33=views.K_N33,
        sizes_N2=np.tile([views.width, views.height], (8, 1)), confidence_N=np.ones(8), scale_source="odometry"),
        {"estimator": "a test's odometry"})
    out = tmp_path / "run"
    reconstruct(out, "--iters", "30", "--init", str(tmp_path / "odometry" / "poses.json"))
    estimates = read_poses(out)
    assert estimates.scale_source == "poses file"
    trained = estimates.registered_N & (np.arange(8) != 0)  # view_000 is held out, then registered
    ring = np.linalg.norm(given[:, :3, 3] - given[:, :3, 3].mean(0), axis=1).mean()
    offsets = np.linalg.norm(estimates.c2w_N44[trained, :3, 3] - given[trained, :3, 3], axis=1)
    assert offsets.max() < 0.1 * ring, offsets / ring
    points, _ = read_point_cloud_ply(out / "cloud.ply")
    assert np.linalg.norm(points.mean(0) - given[:, :3, 3].mean(0)) < 0.5 * ring
    assert json.loads((out / "run.json").read_text())["output_frame"] == "poses file"


def test_chained_features_are_kept_as_the_poses_of_the_trained_views(tmp_path):
    """By default (--init auto) a textured capture starts from its chained features: the views
    trained on keep their chained poses up to the gauge (the bundle-adjusted chain is finer than
    the photometric refinement, TrainerConfig.keeping_initial_poses); a view the chain could not place is
    registered afterwards instead of trained on."""
    from nvs_ros.baselines.feature_chaining import chain_poses
    from nvs_ros.core.metrics import rotation_angle_deg

    source = ["bundled:room:arc", "--size", "128", "--views", "8", "--threads", "1"]  # at 64 px 3 are confirmed
    chained = chain_poses(load_image_set(source[0], max_side=128, views=8).without_ground_truth())
    trained = np.flatnonzero(chained.registered_N & (np.arange(8) != 0))  # view 0 is held out
    assert len(trained) >= 5
    out = tmp_path / "run"
    result = subprocess.run([str(NVS_ROS), "reconstruct", *source, "--out", str(out), "--iters", "30"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "run.json").read_text())["initial_poses"] == "features"
    estimates = read_poses(out)
    assert estimates.registered_N[trained].all()

    def relative_rotations(c2w_N44: np.ndarray) -> np.ndarray:
        R_N33 = c2w_N44[trained, :3, :3]
        return np.swapaxes(R_N33, 1, 2)[:, None] @ R_N33[None]

    difference = rotation_angle_deg((np.swapaxes(relative_rotations(chained.c2w_N44), -1, -2)
                                     @ relative_rotations(estimates.c2w_N44)).reshape(-1, 3, 3))
    assert difference.max() < 0.01, difference.max()
