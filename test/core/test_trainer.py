"""The per-scene trainer: a short run on a tiny bundled scene must improve the poses, the oracle
must fit the images, and a diverged step must be rolled back."""

import logging
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from tiny_engine import TINY

from nvs_ros.core.image_set import ImageSet
from nvs_ros.core.metrics import evaluate_poses
from nvs_ros.core.trainer import reconstruct
from nvs_ros.core.trainer_config import TrainerConfig
from nvs_ros.core.training_run import TrainingProgress
from nvs_ros.io.datasets import load_image_set


@pytest.fixture(scope="module")
def scene():
    return load_image_set("bundled:object", max_side=32, views=8)


def _metrics(c2w_N44: np.ndarray, scene) -> dict:
    return evaluate_poses(c2w_N44, np.ones(len(scene), dtype=bool), scene.c2w_N44)


def _top_poses(engine, scene) -> np.ndarray:
    """c2w of each image's most likely hypothesis (clean input)."""
    images = torch.from_numpy(scene.images_NHW3).permute(0, 3, 1, 2).float() / 255.0
    size = engine.encoder.config.input_size
    azimuth, elevation, _ = engine.predict(torch.nn.functional.interpolate(images, size=(size, size))).top()
    return engine.refinement.c2w(azimuth[:, None], elevation[:, None], torch.arange(len(scene)))[:, 0] \
        .detach().double().numpy()


def test_short_run_reduces_pose_error(scene) -> None:
    """Measured (seed 0, 1500 steps, ~30 s on the idle 2-core CPU): median relative rotation
    error ~90 degrees after the first step -> 2-4 degrees, RRA@15 ~0.1 -> 1.0 (noise off and
    the default curriculum alike). Other seeds need more steps (seeds 2, 3 at 1000 steps stayed
    near 0.1), and which seeds converge moves with the arithmetic: this test asserts what holds
    on any machine, the first step's poses are wrong and the run's poses are right at the end
    (one start, no race)."""
    initial = []

    def first_step(progress: TrainingProgress) -> None:
        if progress.step == 1:
            initial.append(_metrics(_top_poses(progress.engine, scene), scene))

    result = reconstruct(scene.without_ground_truth(), TINY, first_step)
    final = _metrics(result.c2w_N44, scene)
    assert initial[0]["RRA@15"] <= 0.3 and initial[0]["median_relative_rotation_error_deg"] > 45.0, initial
    assert final["RRA@15"] >= 0.9, final
    assert final["median_relative_rotation_error_deg"] < 10.0, final
    assert result.c2w_N44.shape == (8, 4, 4) and result.c2w_N44.dtype == np.float64
    assert np.isfinite(result.confidence_N).all() and ((0 <= result.confidence_N) & (result.confidence_N <= 1)).all()
    # right poses are not called unconverged; one start leaves no race evidence to weigh
    assert result.verdict.status != "unconverged" and "start_agreement" not in result.verdict.evidence
    phases = {row["phase"] for row in result.curves}
    assert phases == {"poses[0]", "poses", "refine"}
    assert [row["step"] for row in result.curves] == sorted(row["step"] for row in result.curves)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_race_of_starts_is_right_when_it_says_converged_and_flagged_when_wrong(scene, seed) -> None:
    """Three starts share the coarse stage; the run's self-check (no ground truth) must agree with
    ground truth: converged -> RRA@15 >= 0.9, RRA@15 < 0.9 -> not converged. Measured with three
    starts at 1500 steps (fine_at 0.6): seed 0 RRA@15 0.21 flagged unconverged (the starts' images
    errors within 2%), seed 1 1.00 converged (its start's error 0.09 of the others'); which seed
    lands where moves with the arithmetic, the agreement of verdict and truth must not."""
    result = reconstruct(scene.without_ground_truth(), replace(TINY, starts=3, fine_at=0.6, seed=seed))
    final = _metrics(result.c2w_N44, scene)
    assert len(result.start_errors) == len(result.start_c2w) == 3
    assert result.start_errors[result.kept_start] == min(result.start_errors)
    assert {row["phase"] for row in result.curves} >= {"poses[0]", "poses[1]", "poses[2]", "poses"}
    if result.verdict.converged:
        assert final["RRA@15"] >= 0.9, (final, result.verdict.evidence)
    if final["RRA@15"] < 0.9:
        assert not result.verdict.converged, (final, result.verdict.evidence)


def test_oracle_with_known_poses_fits_the_images(scene) -> None:
    config = replace(TINY, poses="gt", iterations=150)
    result = reconstruct(scene, config)
    psnr_N = -10 * np.log10(result.photometric_error_N)
    assert psnr_N.mean() > 20.0
    assert _metrics(result.c2w_N44, scene)["RRA@5"] == 1.0


def test_estimator_refuses_the_oracle_without_ground_truth(scene) -> None:
    with pytest.raises(ValueError, match="ground-truth"):
        reconstruct(scene.without_ground_truth(), TrainerConfig(poses="gt", iterations=1))


def test_diverged_step_is_rolled_back(scene) -> None:
    corrupted = []

    def corrupt(progress: TrainingProgress) -> None:
        if progress.step == 30 and not corrupted:
            with torch.no_grad():
                next(progress.engine.encoder.parameters()).fill_(math.nan)
            corrupted.append(progress.step)

    config = replace(TINY, iterations=60, refine_fraction=0.0)
    result = reconstruct(scene.without_ground_truth(), config, corrupt)
    assert corrupted == [30]
    assert result.rollbacks == 1
    assert all(torch.isfinite(p).all() for p in result.engine.parameters())
    assert np.isfinite(result.c2w_N44).all()
    assert len(result.curves) > 35  # training went on after the rollback
    assert all(math.isfinite(row["loss"]) for row in result.curves)


def test_initial_poses_from_elsewhere_replace_pose_learning(scene) -> None:
    """Initial poses in another world frame and scale, each camera turned by 4 degrees (as
    chained features or odometry would give): moved into the gauge and refined with the field.
    (Flipped views are re-posed by the outlier correction, tested in test_outlier_correction.py.)"""
    rng = np.random.default_rng(0)
    noisy = scene.c2w_N44.copy()
    for c2w in noisy:
        axis = rng.normal(size=3)
        c2w[:3, :3] = c2w[:3, :3] @ Rotation.from_rotvec(np.radians(4.0) * axis / np.linalg.norm(axis)).as_matrix()
    turn = np.eye(4)
    turn[:3, :3] = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # another world frame
    initial = turn @ noisy
    initial[:, :3, 3] *= 3.0
    before = _metrics(initial, scene)
    result = reconstruct(scene.without_ground_truth(), replace(TINY, iterations=600), initial_c2w_N44=initial)
    after = _metrics(result.c2w_N44, scene)
    assert {row["phase"] for row in result.curves} == {"refine"}
    assert not result.outlier_N.any()
    assert after["median_relative_rotation_error_deg"] < 0.6 * before["median_relative_rotation_error_deg"], \
        (before, after)


def test_a_flipped_initial_pose_is_turned_back_or_taken_out_and_its_neighbour_kept(scene) -> None:
    """Eight initial poses 3 degrees off, one of them also turned 180 degrees about the up axis
    (onto view 6's place, whose residual it drags up). The flip must never stay where it was:
    re-posed, or taken out and reported unregistered; its neighbour stays, and every view kept is
    right. Measured (300 steps, ~12 s): with torch's and MKL's default kernels both set aside and
    the flip re-posed; with ATEN_CPU_CAPABILITY=default and MKL_ENABLE_INSTRUCTIONS=AVX the flip
    taken out (re-posed there too before the views were aligned to the field)."""
    rng = np.random.default_rng(0)
    initial = scene.c2w_N44.copy()
    for c2w in initial:
        axis = rng.normal(size=3)
        c2w[:3, :3] = c2w[:3, :3] @ Rotation.from_rotvec(np.radians(3.0) * axis / np.linalg.norm(axis)).as_matrix()
    initial[2] = np.diag([-1.0, -1.0, 1.0, 1.0]) @ initial[2]
    assert _metrics(initial, scene)["RRA@15"] < 0.9
    result = reconstruct(scene.without_ground_truth(), replace(TINY, iterations=300), initial_c2w_N44=initial)
    assert result.reposed_N[2] or result.outlier_N[2]
    assert not result.outlier_N[[i for i in range(len(scene)) if i != 2]].any()
    kept = ~result.outlier_N
    assert evaluate_poses(result.c2w_N44[kept], np.ones(kept.sum(), dtype=bool), scene.c2w_N44[kept])["RRA@15"] == 1.0


def test_level_up_is_exact_on_a_hemisphere_and_falls_back_on_a_straight_drive() -> None:
    """Cameras on part of a hemisphere looking at the centre (as a capture that does not go all
    round): their mean up leans toward the centre, the direction their (level) x axes are
    perpendicular to does not. A straight drive's x axes are all parallel: the mean up is used."""
    from nvs_ros.core.cameras import orbit_c2w
    from nvs_ros.core.gauge import level_up

    azimuth = torch.linspace(0, 0.6 * 2 * np.pi, 12).repeat(3)
    elevation = torch.tensor([15.0, 40.0, 65.0]).repeat_interleave(12).deg2rad()
    hemisphere = orbit_c2w(azimuth, elevation, 4.0).double().numpy()
    mean_up = -hemisphere[:, :3, 1].mean(axis=0)
    assert np.degrees(np.arccos(mean_up[2] / np.linalg.norm(mean_up))) > 1.0
    np.testing.assert_allclose(level_up(hemisphere), [0.0, 0.0, 1.0], atol=1e-6)
    tilted = Rotation.from_euler("x", 30, degrees=True).as_matrix()
    np.testing.assert_allclose(level_up(np.einsum("ij,njk->nik", np.pad(tilted, (0, 1)) + np.diag([0, 0, 0, 1]),
                                                   hemisphere)), tilted[:, 2], atol=1e-6)
    drive = np.tile(np.eye(4), (10, 1, 1))
    drive[:, :3, :3] = [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]
    drive[:, 0, 3] = np.arange(10)
    np.testing.assert_allclose(level_up(drive), [0.0, 0.0, 1.0], atol=1e-9)


def test_an_object_on_black_is_trained_in_front_of_black(scene) -> None:
    """The field's background is the images' plain border: black cloth renders black, and the
    configuration the scene is saved with says so; white stays white."""
    masks = np.asarray(scene.masks_NHW) if scene.masks_NHW is not None else None
    images = scene.images_NHW3.copy()
    background = (images >= 250).all(axis=-1) if masks is None else ~masks
    images[background] = 0
    on_black = replace(scene, images_NHW3=images).without_ground_truth()
    result = reconstruct(on_black, replace(TINY, iterations=2))
    assert result.config.diffusion.background == 0.0
    assert result.engine.config.background == 0.0
    assert reconstruct(scene.without_ground_truth(), replace(TINY, iterations=2)).config.diffusion.background == 1.0


def test_learnt_poses_are_refined_with_a_fresh_field_grown_coarse_to_fine(scene) -> None:
    """After pose learning, a coarse field starts anew (not the one pose learning left, at the fine
    grid), grows to the fine grid, and the poses are refined with it (not frozen)."""
    seen: list[tuple[str, int, int, np.ndarray]] = []

    def record(progress: TrainingProgress) -> None:
        engine = progress.engine
        poses = engine.refinement.base_c2w(torch.arange(len(scene))).detach().double().numpy()
        seen.append((progress.phase, id(engine.field), engine.field.resolution, poses))

    result = reconstruct(scene.without_ground_truth(), replace(TINY, iterations=500), record)
    phases = [phase for phase, _, _, _ in seen]
    first_refined = phases.index("refine")
    assert phases[first_refined - 1] == "poses" and set(phases[first_refined:]) == {"refine"}
    (_, learnt_field, learnt_resolution, _), (_, fresh_field, fresh_resolution, started) = \
        seen[first_refined - 1:first_refined + 1]
    assert fresh_field != learnt_field
    assert learnt_resolution == TINY.fine_grid and fresh_resolution == TINY.coarse_grid
    assert seen[-1][2] == TINY.fine_grid  # coarse to fine again
    assert _angles_deg(started, result.c2w_N44).max() > 0.05  # refined on, not frozen
    np.testing.assert_allclose(result.c2w_N44, seen[-1][3], atol=1e-6)


def _angles_deg(a_N44: np.ndarray, b_N44: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(np.swapaxes(a_N44[:, :3, :3], 1, 2) @ b_N44[:, :3, :3]).magnitude() * 180 / math.pi


def test_a_fresh_field_too_short_to_grow_is_undone(scene, caplog) -> None:
    """Thirty steps cannot grow a field from nothing: the field of ~1000 steps of pose learning is kept."""
    seen: list[tuple[str, int]] = []

    def record(progress: TrainingProgress) -> None:
        seen.append((progress.phase, id(progress.engine.field)))

    with caplog.at_level(logging.INFO, logger="nvs_ros.core.training_phases"):
        result = reconstruct(scene.without_ground_truth(), replace(TINY, iterations=1000, refine_fraction=0.03), record)
    phases = [phase for phase, _ in seen]
    learnt_field = seen[phases.index("refine") - 1][1]
    assert seen[-1][1] != learnt_field  # the refinement ran on a fresh field
    assert "fresh field undone" in caplog.text
    assert id(result.engine.field) == learnt_field
    assert result.engine.field.resolution == TINY.fine_grid


def test_views_of_another_scene_stay_out_of_pose_learning_and_are_flagged(scene, caplog) -> None:
    """Two views of the textured room among the object's eight: set apart for their looks before
    pose learning, judged at the outlier correction and flagged; the object's own poses come out
    as in a clean run."""
    room = load_image_set("bundled", max_side=32, views=8)
    order = [0, 1, 2, 3, 8, 4, 5, 6, 7, 9]
    images = np.concatenate([scene.images_NHW3, room.images_NHW3[[0, 4]]])[order]
    K = np.concatenate([scene.K_N33, room.K_N33[[0, 4]]])[order]
    names = [*scene.names, "room_0", "room_4"]
    mixed = ImageSet(names=[names[i] for i in order], images_NHW3=images, K_N33=K, capture=scene.capture)
    foreign_N = np.isin(np.arange(10), [4, 9])
    with caplog.at_level(logging.INFO, logger="nvs_ros.core.trainer"):
        result = reconstruct(mixed, TINY)
    assert "2 of 10 views look like none of the others" in caplog.text and "room_0, room_4" in caplog.text
    np.testing.assert_array_equal(result.outlier_N, foreign_N)
    assert _metrics(result.c2w_N44[~foreign_N], scene)["RRA@15"] >= 0.9


@pytest.mark.parametrize("lr, moves", [(0.0, False), (1e-2, True)])
def test_learnt_poses_are_refined_at_their_own_learning_rate(scene, lr, moves) -> None:
    """The fresh field's refinement moves learnt poses at `lr_refine_learnt`, not at `lr_refine`
    (given poses' rate): at 0 they stay where re-assignment put them (the per-view alignment and
    the outlier correction, which move them by other means, off)."""
    seen: list[tuple[str, np.ndarray]] = []

    def record(progress: TrainingProgress) -> None:
        poses = progress.engine.refinement.base_c2w(torch.arange(len(scene))).detach().double().numpy()
        seen.append((progress.phase, poses))

    config = replace(TINY, iterations=200, lr_refine_learnt=lr, align_views=False, outlier_correction=False)
    result = reconstruct(scene.without_ground_truth(), config, record)
    first_refined = next(poses for phase, poses in seen if phase == "refine")
    moved_deg = _angles_deg(first_refined, result.c2w_N44).max()
    assert (moved_deg > 0.05) == moves, moved_deg
