"""The self-check's verdict on hand-built evidence: agreeing, disagreeing and collapsed starts,
views the scene does not explain, a fit no better than the mean image. Properties by
construction, no training: they hold on any arithmetic."""

import numpy as np
import pytest

from nvs_ros.core.self_check import (CONVERGED, UNCONFIRMED, UNCONVERGED, SelfCheckConfig, judge,
                                     pose_agreement)
from test.core.test_metrics import look_at_origin


def ring(n: int, turn_deg: float = 0.0, radius: float = 4.0) -> np.ndarray:
    """n cameras on a ring at 30 degrees elevation looking at the origin, turned about +Z."""
    azimuths = np.radians(np.arange(n) * 360.0 / n + turn_deg)
    centres = np.stack([np.cos(azimuths), np.sin(azimuths), np.full(n, np.tan(np.radians(30)))], axis=1)
    return np.stack([look_at_origin(radius * c / np.linalg.norm(c)) for c in centres])


def fitted(n: int, mse: float = 1e-3, mean_image_mse: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    return np.full(n, mse), np.full(n, mean_image_mse)


def test_agreement_is_free_of_the_gauge_and_counts_the_pairs_a_wrong_view_spoils():
    poses = ring(12)
    assert pose_agreement(poses, ring(12, turn_deg=73.0), 20.0) == pytest.approx(1.0)
    scaled = poses.copy()
    scaled[:, :3, 3] *= 2.5  # another scale: the same relative rotations and directions
    assert pose_agreement(poses, scaled, 20.0) == pytest.approx(1.0)
    flipped = poses.copy()
    flipped[3] = ring(12, turn_deg=180.0)[3]  # one view on the other side of the ring
    pairs = 12 * 11 / 2
    assert pose_agreement(poses, flipped, 20.0) == pytest.approx(1 - 11 / pairs)


def test_starts_collapsed_onto_one_pose_confirm_nothing():
    collapsed = np.repeat(ring(12)[:1], 12, axis=0)
    assert pose_agreement(collapsed, collapsed.copy(), 20.0) == 0.0
    error_N, mean_N = fitted(12)
    verdict = judge(error_N, mean_N, np.ones(12, bool), [collapsed, collapsed.copy()], [1.0, 1.0])
    assert verdict.status == UNCONVERGED and "no other start agrees" in verdict.summary()


def test_a_run_whose_starts_agree_and_fit_converges():
    error_N, mean_N = fitted(12)
    verdict = judge(error_N, mean_N, np.ones(12, bool), [ring(12), ring(12, 40.0), ring(12, 7.0)])
    assert verdict.status == CONVERGED and verdict.reasons == [] and verdict.supported_N.all()
    assert verdict.evidence["start_agreement"][0] == pytest.approx(1.0)


def test_starts_in_different_basins_are_unconverged_unless_the_kept_one_explains_the_images_clearly_better():
    error_N, mean_N = fitted(12)
    mirrored = ring(12)[::-1].copy()  # the ring walked the other way round
    win = SelfCheckConfig().clear_win_ratio
    verdict = judge(error_N, mean_N, np.ones(12, bool), [ring(12), mirrored], [1.0, 1.0 / win * 0.9])
    assert verdict.status == UNCONVERGED and verdict.evidence["start_win_ratio"] > win
    verdict = judge(error_N, mean_N, np.ones(12, bool), [mirrored, ring(12)], [1.0 / win * 1.1, 1.0], kept_start=1)
    assert verdict.status == CONVERGED and verdict.evidence["start_win_ratio"] < win
    # a finished fit far better than the images' mean confirms the basin however alike the starts ended
    confident = SelfCheckConfig().confident_gain_db
    error_N, mean_N = fitted(12, mse=1e-3, mean_image_mse=1e-3 * 10 ** ((confident + 0.5) / 10))
    verdict = judge(error_N, mean_N, np.ones(12, bool), [ring(12), mirrored], [1.0, 1.0])
    assert verdict.status == CONVERGED and verdict.evidence["gain_over_mean_image_db"] > confident


def test_views_the_scene_does_not_explain_are_unsupported_and_many_of_them_fail_the_run():
    config = SelfCheckConfig()
    error_N, mean_N = fitted(10)
    error_N[2] *= config.max_residual_ratio * 1.5
    verdict = judge(error_N, mean_N, np.ones(10, bool), given_poses=True)
    assert verdict.status == CONVERGED and not verdict.supported_N[2] and verdict.supported_N.sum() == 9
    error_N[:4] *= config.max_residual_ratio * 3
    verdict = judge(error_N, mean_N, np.ones(10, bool), given_poses=True)
    assert verdict.status == UNCONFIRMED and verdict.supported_N.sum() == 6  # given poses the scene does not bear out
    verdict = judge(error_N, mean_N, np.ones(10, bool), [ring(10), ring(10, 30.0)])
    assert verdict.status == UNCONVERGED and verdict.supported_N.sum() == 6  # learnt ones


def test_a_fit_no_better_than_the_mean_image_is_unconverged():
    error_N, mean_N = fitted(10, mse=9e-3, mean_image_mse=1e-2)
    verdict = judge(error_N, mean_N, np.ones(10, bool), [ring(10), ring(10, 30.0)])
    assert verdict.status == UNCONVERGED and "mean image" in verdict.summary()
    assert judge(error_N, mean_N, np.ones(10, bool), given_poses=True).status == UNCONFIRMED


def test_one_start_is_unconfirmed_and_views_taken_out_are_not_judged():
    error_N, mean_N = fitted(8)
    judged_N = np.ones(8, bool)
    judged_N[5] = False
    error_N[5] = 1.0  # an outlier the run already took out does not move the median
    verdict = judge(error_N, mean_N, judged_N, [ring(8)])
    assert verdict.status == UNCONFIRMED and not verdict.supported_N[5] and verdict.supported_N.sum() == 7
