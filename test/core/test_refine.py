"""Analysis by synthesis on a tiny trained scene: refinement recovers a known perturbation, a
turned camera is found by the sphere search, new frames of the scene are registered and a
foreign one is rejected, outlier residuals are flagged."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny_engine import TINY

from nvs_ros.core.cameras import so3_exp
from nvs_ros.core.direct_alignment import align_to_rendered_view
from nvs_ros.core.metrics import rotation_angle_deg
from nvs_ros.core.sim3 import umeyama_sim3
from nvs_ros.core.refine import (RefineConfig, correct_outliers, find_outliers, refine_poses,
                                  suspect_views, suspects_among, view_residuals)
from nvs_ros.core.scene import Scene
from nvs_ros.core.trainer import reconstruct
from nvs_ros.io.datasets import load_image_set

HELD_OUT = [4, 13]


@pytest.fixture(scope="module")
def views():
    return load_image_set("bundled:object", max_side=32, views=18)


WITHOUT_POLISH = replace(TINY, polish_fraction=0.0)
"""These tests judge registration on the scene, not the trainer: at this size the polish's fresh
field gets 300 steps, too few to fit 32 px views as finely (training views registered 5.3-5.9
degrees from their poses, against under 5 without it; test_trainer tests the polish)."""


@pytest.fixture(scope="module")
def scene(views) -> Scene:
    """Trained (estimated poses, ~30 s) on 16 of 18 views on a ring; views 4 and 13 held out."""
    torch.set_num_threads(1)
    train = views.subset([i for i in range(len(views)) if i not in HELD_OUT])
    result = reconstruct(train.without_ground_truth(), WITHOUT_POLISH)
    return Scene.from_training(result.engine, WITHOUT_POLISH, train.names, train.images_NHW3, train.K_N33,
                               result.c2w_N44)


def _tensors(scene: Scene, views, index: list[int]):
    images = torch.from_numpy(views.images_NHW3[index]).float() / 255.0
    return images, torch.from_numpy(views.K_N33[index]).float()


def _turned_about_the_centre(c2w_B44: torch.Tensor, degrees: float, axis: tuple[float, float, float]
                             ) -> torch.Tensor:
    """Cameras turned about the scene's centre (the world origin): along the viewing sphere."""
    turn_44 = torch.eye(4)
    turn_44[:3, :3] = so3_exp((torch.tensor(axis) * math.radians(degrees))[None])[0]
    return turn_44 @ c2w_B44


def _angle_between(a_B44: torch.Tensor, b_B44: torch.Tensor) -> np.ndarray:
    return rotation_angle_deg((a_B44[:, :3, :3].transpose(1, 2) @ b_B44[:, :3, :3]).double().numpy())


def _training_views_moved(scene: Scene, degrees: float, shift: float):
    """Training views 0, 1, 2, 4 (images, K), their poses, and those poses turned about the
    centre and shifted."""
    train_index = [0, 1, 2, 4]
    images = torch.from_numpy(np.stack([_image(scene, i) for i in train_index])).float() / 255.0
    K = torch.from_numpy(scene.K_N33[train_index]).float()
    truth = torch.from_numpy(scene.c2w_N44[train_index]).float()
    start = _turned_about_the_centre(truth, degrees, (0.6, 0.0, 0.8))
    start[:, :3, 3] += shift
    return images, K, truth, start


def test_refinement_recovers_a_known_perturbation(scene: Scene) -> None:
    images, K, truth, start = _training_views_moved(scene, 8.0, 0.08)
    refined = refine_poses(scene.engine, images, K, start, steps=60, rays_per_view=256,
                           generator=torch.Generator().manual_seed(0))
    before, after = _angle_between(start, truth), _angle_between(refined, truth)
    assert np.median(after) < 0.4 * np.median(before), (before, after)
    assert view_residuals(scene.engine, images, K, refined).mean() < view_residuals(scene.engine, images, K, start).mean()


def _aligned(scene: Scene, image_HW3: torch.Tensor, K_33: torch.Tensor, start_44: torch.Tensor,
             rounds: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The direct alignment of one training view at its own size (32 px: one level; a 16 px
    level of this 24^3 field's views misled it: 4 degrees -> 4.0-9.5)."""
    return align_to_rendered_view(scene.engine, [(image_HW3, K_33)], 0, start_44, rounds, steps)


def test_direct_alignment_recovers_a_small_offset(scene: Scene) -> None:
    """Four training views turned 8 degrees about the centre and moved: aligned to the views
    rendered from there, they come back (the points' colours are the scene's, so the pose that
    shows them where the frame has them is the training pose), and each fits its frame better
    (the residual returned is the final pose's). This coarse field (32 px, 16 samples per ray)
    aligns a view to within 2-4 degrees at best, whatever the start: measured on two machines
    (whose arithmetic trains slightly different tiny scenes) 8 degrees -> 0.7-4.3, median 3.5, in
    4 rounds of 6 steps; 4 degrees -> 1.4-2.4 on one and 1.7-3.8 on the other, too near that floor
    for a test."""
    images, K, truth, start = _training_views_moved(scene, 8.0, 0.08)
    aligned = [_aligned(scene, images[i], K[i], start[i], rounds=4, steps=6) for i in range(len(start))]
    poses = torch.stack([pose for pose, _ in aligned])
    before, after = _angle_between(start, truth), _angle_between(poses, truth)
    assert np.median(after) < 0.6 * np.median(before), (before, after)
    residuals = torch.stack([residual for _, residual in aligned])
    torch.testing.assert_close(residuals, view_residuals(scene.engine, images, K, poses))
    assert (residuals < view_residuals(scene.engine, images, K, start)).all()


def test_a_round_that_makes_the_fit_worse_is_undone(scene: Scene, monkeypatch) -> None:
    """Steps that turn the camera away (as a blurry field's misleading depth can): every round
    fits the frame worse than the start, so the start comes back with its own residual."""
    def turn_away(*args) -> np.ndarray:
        return np.array([0.0, 0.0, 0.0, 0.05, 0.0, 0.0])  # 3 degrees a step

    monkeypatch.setattr("nvs_ros.core.direct_alignment.damped_gauss_newton_step_array", turn_away)
    image = torch.from_numpy(_image(scene, 3)).float() / 255.0
    K = torch.from_numpy(scene.K_N33[3]).float()
    truth = torch.from_numpy(scene.c2w_N44[3]).float()
    pose, residual = _aligned(scene, image, K, truth, rounds=2, steps=6)
    torch.testing.assert_close(pose, truth)
    torch.testing.assert_close(residual, view_residuals(scene.engine, image[None], K[None], truth[None])[0])


def test_a_frame_with_nothing_of_the_scene_in_sight_keeps_its_pose(scene: Scene, monkeypatch) -> None:
    """A camera looking away from the scene renders no opaque pixel: no points, no steps."""
    def no_step(*args):
        raise AssertionError("a Gauss-Newton step without points")

    monkeypatch.setattr("nvs_ros.core.direct_alignment.damped_gauss_newton_step_array", no_step)
    away = torch.from_numpy(scene.c2w_N44[0]).float().clone()
    away[:3, :3] = away[:3, :3] @ torch.diag(torch.tensor([-1.0, 1.0, -1.0]))  # half a turn about its y axis
    away[:3, 3] *= 3.0
    image = torch.from_numpy(_image(scene, 0)).float() / 255.0
    K = torch.from_numpy(scene.K_N33[0]).float()
    pose, _ = _aligned(scene, image, K, away, rounds=2, steps=5)
    torch.testing.assert_close(pose, away)


def _image(scene: Scene, i: int) -> np.ndarray:
    return _TRAIN_IMAGES[scene.names[i]]


_TRAIN_IMAGES: dict = {}


@pytest.fixture(autouse=True, scope="module")
def _remember_images(views):
    _TRAIN_IMAGES.update(zip(views.names, views.images_NHW3))


def test_a_training_view_registers_where_the_scene_put_it(scene: Scene, views) -> None:
    """Encoder pass + anchor search + refinement find a view's own pose again (the scene's
    estimate, so this does not depend on how well the tiny scene matches the ground truth)."""
    index = [2, 9]
    registration = scene.register(np.stack([_image(scene, i) for i in index]), scene.K_N33[index])
    errors = _angle_between(registration.c2w_B44, torch.from_numpy(scene.c2w_N44[index]).float())
    assert (errors < 5.0).all(), errors
    # confidences measured above 0.9 (torch's and MKL's default kernels; ATEN_CPU_CAPABILITY=default
    # with MKL's AVX kernels: 1.0 and 0.895); accepted takes 0.5
    assert registration.accepted_B.all() and (registration.confidence_B > 0.8).all()


def test_a_prior_pose_races_with_the_candidates_and_wins_only_where_it_fits(scene: Scene) -> None:
    """Priors (odometry) join the refined candidates: the right one is kept (it is no encoder
    hypothesis: probability 0), one turned 90 degrees along the ring loses to the images, and
    a NaN row means no prior."""
    index = [2, 9, 5]
    truth = torch.from_numpy(scene.c2w_N44[index]).float()
    priors = truth.clone().double().numpy()
    priors[1] = _turned_about_the_centre(truth[1:2], 90.0, (0.0, 0.0, 1.0))[0].double().numpy()
    priors[2] = np.nan
    registration = scene.register(np.stack([_image(scene, i) for i in index]), scene.K_N33[index],
                                  prior_c2w_N44=priors)
    errors = _angle_between(registration.c2w_B44, truth)
    # Measured (degrees, views 2, 9, 5): 0, 0, 0 with torch's and MKL's default kernels; 0, 1.3,
    # 5.8 with MKL_ENABLE_INSTRUCTIONS=AVX ATEN_CPU_CAPABILITY=default. 10 is twice the worst
    # seen and far from the 90 degrees of the wrong prior.
    assert (errors < 10.0).all() and registration.accepted_B.all(), errors
    assert float(registration.probability_B[0]) == 0.0  # the prior won
    assert _angle_between(registration.c2w_B44[1:2], torch.from_numpy(priors[1:2]).float())[0] > 45.0


def test_new_frames_are_registered_and_a_foreign_one_rejected(scene: Scene, views) -> None:
    """Measured: held-out view 4 registers at ~26 dB (training views 30 dB), contrast 0.84-0.85,
    ~5 degrees from the ground truth after aligning the scene's cameras to it (the tiny scene's
    own poses are 2-13 degrees off); view 13, halfway between two training views of this
    16-view, 32 px scene, at 18-20 dB, contrast 0.34-0.63 and 18-21 degrees: accepted or not
    depending on the run. Frames of the room: 7-8 dB, contrast < 0.1."""
    registration = scene.register(views.images_NHW3[HELD_OUT], views.K_N33[HELD_OUT])
    accepted = registration.accepted_B.numpy()
    assert accepted.any(), registration.confidence_B
    train = [i for i in range(len(views)) if i not in HELD_OUT]
    sim3 = umeyama_sim3(scene.c2w_N44[:, :3, 3], views.c2w_N44[train, :3, 3])
    aligned = sim3.apply_c2w(registration.c2w_B44.double().numpy())
    errors = rotation_angle_deg(np.swapaxes(aligned[:, :3, :3], 1, 2) @ views.c2w_N44[HELD_OUT, :3, :3])
    assert (errors[accepted] < 35.0).all(), errors  # a wrong anchor or a flip would be 45-180 degrees off

    foreign = load_image_set("bundled", max_side=32, views=2)  # the textured room
    rejected = scene.register(foreign.images_NHW3, foreign.K_N33)
    assert not rejected.accepted_B.any(), rejected.confidence_B
    assert float(rejected.confidence_B.max()) < float(registration.confidence_B[accepted].min())


def test_outliers_are_the_views_whose_residual_stands_out() -> None:
    residual = torch.tensor([1e-3, 1.2e-3, 0.9e-3, 1.1e-3, 1.0e-3, 2e-2, 1.05e-3])
    assert find_outliers(residual).tolist() == [False] * 5 + [True, False]
    assert not find_outliers(torch.full((6,), 1e-3)).any()


def test_suspects_stand_out_by_a_factor_and_are_a_third_of_the_views_at_most() -> None:
    """The residuals (over the median) of the tiny ring where the MADs alone set aside 4 right
    views: only the one at 1.66 is a suspect, none from 2x; of 4 views far out among 9, the 3
    highest."""
    ring = torch.tensor([1.0, 0.99, 1.0, 1.2, 1.28, 1.66, 1.37, 0.99])
    assert find_outliers(ring, mads=2.0).sum() == 4
    assert suspects_among(ring).tolist() == [False] * 5 + [True, False, False]
    assert not suspects_among(ring, RefineConfig(suspect_min_ratio=2.0)).any()
    spread = torch.tensor([1.0, 1.1, 0.9, 1.0, 1.05, 6.0, 9.0, 4.0, 7.0])
    assert suspects_among(spread).tolist() == [False] * 5 + [True, True, False, True]


def test_outlier_correction_reposes_a_flipped_view_and_flags_a_foreign_one(scene: Scene) -> None:
    """Eight training views: one with its pose turned by 180 degrees about the scene's up axis
    (a flip, fixable), one replaced by a frame of another scene (not fixable)."""
    index = [0, 2, 4, 6, 8, 10, 12, 14]
    images = torch.from_numpy(np.stack([_image(scene, i) for i in index])).float() / 255.0
    images[5] = torch.from_numpy(load_image_set("bundled", max_side=32, views=1).images_NHW3[0]).float() / 255.0
    K = torch.from_numpy(scene.K_N33[index]).float()
    truth = torch.from_numpy(scene.c2w_N44[index]).float()
    start = truth.clone()
    start[2] = torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0])) @ truth[2]
    suspects = suspect_views(scene.engine, images, K, start)
    assert suspects.tolist() == [False, False, True, False, False, True, False, False]
    correction = correct_outliers(scene.engine, images, K, start, suspects, generator=torch.Generator().manual_seed(0))
    assert correction.outlier_N.tolist() == [False] * 5 + [True] + [False] * 2
    assert correction.reposed_N.tolist() == [False, False, True] + [False] * 5
    # Measured: under 3 degrees, and 9.9 after a change that moved only the last bits of the
    # learning-rate schedule the scene was trained with; the flip was 180, the search's turns 45.
    assert _angle_between(correction.c2w_N44[2:3], truth[2:3])[0] < 20.0
    torch.testing.assert_close(correction.c2w_N44[[0, 1, 3, 4, 6, 7]], start[[0, 1, 3, 4, 6, 7]])



def test_outlier_correction_finds_a_view_put_at_a_wrong_elevation(scene: Scene) -> None:
    """A view lifted 45 degrees up the viewing sphere (pose learning put chair's top views at
    the anchors' elevations) is no turn about the up axis away: the search grid finds it."""
    index = [0, 2, 4, 6, 8, 10, 12, 14]
    images = torch.from_numpy(np.stack([_image(scene, i) for i in index])).float() / 255.0
    K = torch.from_numpy(scene.K_N33[index]).float()
    truth = torch.from_numpy(scene.c2w_N44[index]).float()
    azimuth = math.atan2(float(truth[3, 1, 3]), float(truth[3, 0, 3]))
    side_axis = (-math.sin(azimuth), math.cos(azimuth), 0.0)  # turning about it changes elevation
    start = truth.clone()
    start[3] = _turned_about_the_centre(truth[3:4], -45.0, side_axis)[0]
    suspects = torch.zeros(8, dtype=torch.bool)
    suspects[3] = True
    correction = correct_outliers(scene.engine, images, K, start, suspects, generator=torch.Generator().manual_seed(0))
    assert _angle_between(start[3:4], truth[3:4])[0] > 40.0
    assert correction.reposed_N.tolist() == [False] * 3 + [True] + [False] * 4
    assert _angle_between(correction.c2w_N44[3:4], truth[3:4])[0] < 5.0
    turns_only = RefineConfig(search_elevations_deg=())
    stuck = correct_outliers(scene.engine, images, K, start, suspects, turns_only, torch.Generator().manual_seed(0))
    assert _angle_between(stuck.c2w_N44[3:4], truth[3:4])[0] > 15.0

def test_a_foreign_view_that_passes_the_contrast_is_still_taken_out_by_its_residual(scene: Scene) -> None:
    """With the contrast test switched off (every contrast maps to confidence 1), the frame of
    another scene is taken out only because its residual stays far above the trained views';
    the flipped view, re-posed, is kept."""
    index = [0, 2, 4, 6, 8, 10, 12, 14]
    images = torch.from_numpy(np.stack([_image(scene, i) for i in index])).float() / 255.0
    images[5] = torch.from_numpy(load_image_set("bundled", max_side=32, views=1).images_NHW3[0]).float() / 255.0
    K = torch.from_numpy(scene.K_N33[index]).float()
    start = torch.from_numpy(scene.c2w_N44[index]).float()
    start[2] = torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0])) @ start[2]
    suspects = torch.zeros(8, dtype=torch.bool)
    suspects[[2, 5]] = True
    no_contrast = RefineConfig(contrast_range=(-2.0, -1.0))
    correction = correct_outliers(scene.engine, images, K, start, suspects, no_contrast, torch.Generator().manual_seed(0))
    assert correction.outlier_N.tolist() == [False] * 5 + [True] + [False] * 2
    lenient = RefineConfig(contrast_range=(-2.0, -1.0), stays_high_factor=1e6)
    assert not correct_outliers(scene.engine, images, K, start, suspects, lenient,
                                torch.Generator().manual_seed(0)).outlier_N.any()
