"""Incremental reconstruction as the node drives it: nothing is trained before enough
keyframes, the first round poses them, later keyframes are registered and join without moving
the earlier ones, and the products come out of the trained scene."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny_engine import TINY

from nvs_ros.core.live_scene import LiveScene, LiveSceneConfig
from nvs_ros.core.metrics import evaluate_poses, rotation_angle_deg
from nvs_ros.io.datasets import load_image_set

FIRST = 8


@pytest.fixture(scope="module")
def views():
    """32 views on a ring, reordered: every 4th first (the 8 the first round sees, evenly around
    the object, as the trainer's test), then two next to those (11 degrees on, as the next
    frames of a video would be)."""
    ring = load_image_set("bundled:object", max_side=32, views=32)
    return ring.subset(list(range(0, 32, 4)) + [9, 23])


@pytest.fixture(scope="module")
def live(views) -> LiveScene:
    torch.set_num_threads(1)
    config = LiveSceneConfig(min_keyframes=FIRST, round_iterations=TINY.iterations, regrow_factor=10.0,
                             trainer=replace(TINY, time_budget_s=None))
    live = LiveScene(config)
    for i in range(FIRST - 1):
        live.add_keyframe(views.images_NHW3[i], views.K_N33[i], stamp_ns=i * 10**8, name=views.names[i])
    assert not live.train(1.0).ready  # too few keyframes: nothing trained
    with pytest.raises(RuntimeError, match="not trained"):
        live.render(views.K_N33[0], np.eye(4), 32, 32)
    live.add_keyframe(views.images_NHW3[FIRST - 1], views.K_N33[FIRST - 1], (FIRST - 1) * 10**8,
                      views.names[FIRST - 1])
    status = live.train(1.0)
    assert status.ready and status.rounds == 1 and status.posed_keyframes == FIRST
    return live


def _relative_rotations(c2w_N44: np.ndarray) -> np.ndarray:
    R = c2w_N44[:, :3, :3]
    return np.einsum("iba,jbc->ijac", R, R)  # R_i^T R_j


def test_first_round_poses_the_keyframes(live: LiveScene, views) -> None:
    poses = live.keyframe_poses()
    assert poses.names == views.names[:FIRST]
    assert poses.stamps_ns == [i * 10**8 for i in range(FIRST)]
    metrics = evaluate_poses(poses.c2w_N44, np.ones(FIRST, bool), views.c2w_N44[:FIRST])
    assert metrics["RRA@15"] >= 0.75, metrics
    assert poses.sizes_N2.tolist() == [[32, 32]] * FIRST and poses.K_N33.shape == (FIRST, 3, 3)


def test_later_keyframes_join_without_moving_the_earlier_ones(live: LiveScene, views) -> None:
    before = live.keyframe_poses().c2w_N44
    for i in range(FIRST, len(views)):
        live.add_keyframe(views.images_NHW3[i], views.K_N33[i], i * 10**8, views.names[i])
    status = live.train(2.0)
    assert status.rounds == 1  # no restart: the new frames were registered into the scene
    assert status.posed_keyframes == len(views)
    after = live.keyframe_poses()
    assert after.names == views.names
    change = rotation_angle_deg((np.swapaxes(_relative_rotations(before), -1, -2)
                                 @ _relative_rotations(after.c2w_N44[:FIRST])).reshape(-1, 3, 3))
    assert change.max() < 3.0, change.max()
    metrics = evaluate_poses(after.c2w_N44, np.ones(len(views), bool), views.c2w_N44)
    assert metrics["RRA@15"] >= 0.75, metrics


def test_products_come_from_the_trained_scene(live: LiveScene, views) -> None:
    points, colours = live.point_cloud(max_points=500)
    assert 50 <= len(points) <= 500 and points.dtype == np.float32 and colours.dtype == np.uint8
    assert np.isfinite(points).all()
    poses = live.keyframe_poses()
    rgb, depth = live.render(views.K_N33[0], poses.c2w_N44[0], 32, 32)
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8 and depth.shape == (32, 32)
    hit = np.isfinite(depth)
    assert 0.05 < hit.mean() < 0.95  # the object, on an empty background
    mse = ((rgb.astype(float) - views.images_NHW3[0]) ** 2).mean() / 255.0**2
    assert -10 * np.log10(mse) > 20.0
    frame = live.register(views.images_NHW3[1], views.K_N33[1])
    assert frame.accepted and rotation_angle_deg((frame.c2w_44[:3, :3].T @ poses.c2w_N44[1, :3, :3])[None])[0] < 5.0


def test_reset_forgets_everything(views) -> None:
    live = LiveScene(LiveSceneConfig(min_keyframes=2))
    live.add_keyframe(views.images_NHW3[0], views.K_N33[0], 0, "a")
    live.reset()
    assert live.status().keyframes == 0 and not live.ready
    with pytest.raises(ValueError, match="image"):
        live.add_keyframe(np.zeros((4, 4), np.uint8), views.K_N33[0], 0, "bad")


def test_keyframes_beyond_the_capacity_are_forgotten(live: LiveScene, views) -> None:
    """Runs last on the shared scene: an 11th keyframe at capacity 10 makes the scene forget the
    most redundant posed one (nearest camera centres), keeping poses and names aligned."""
    live.config = replace(live.config, max_keyframes=len(views))
    before = live.keyframe_poses()
    live.add_keyframe(views.images_NHW3[0], views.K_N33[0], 99, "again_" + views.names[0])
    after = live.keyframe_poses()
    assert live.status().keyframes == len(views) and len(after.names) == len(views) - 1
    gone = [n for n in before.names if n not in after.names]
    assert len(gone) == 1
    kept = [before.names.index(n) for n in after.names]
    np.testing.assert_allclose(after.c2w_N44, before.c2w_N44[kept], atol=1e-6)
    assert live.train(0.5).posed_keyframes == len(views)  # the new one registered
