import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from nvs_ros.core.metrics import rotation_angle_deg
from nvs_ros.core.sim3 import Sim3
from nvs_ros.core.pose_prior import PriorGate, align_to_prior, ring_radius, within_prior_gate


def straight_drive(n: int = 10) -> np.ndarray:
    """A camera on a robot driving along x (centres on a line), looking ahead, REP 103 world."""
    c2w_N44 = np.tile(np.eye(4), (n, 1, 1))
    looking_along_x = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # optical z = world x
    c2w_N44[:, :3, :3] = looking_along_x
    c2w_N44[:, 0, 3] = np.linspace(0.0, 4.5, n)
    c2w_N44[:, 2, 3] = 0.3
    return c2w_N44


def into_scene_gauge(prior_c2w_N44: np.ndarray) -> tuple[np.ndarray, Sim3]:
    """The same cameras as a monocular reconstruction would give them: another frame and scale."""
    gauge = Sim3(0.37, Rotation.from_euler("zyx", [70, -20, 35], degrees=True).as_matrix(), np.array([1.0, -2.0, 0.5]))
    return gauge.apply_c2w(prior_c2w_N44), gauge


def test_a_straight_drive_fixes_frame_and_metric_scale():
    odometry = straight_drive()
    estimate, gauge = into_scene_gauge(odometry)
    alignment = align_to_prior(estimate, odometry, "odometry")
    assert alignment.to_prior.scale == pytest.approx(1 / gauge.scale, rel=1e-9)
    np.testing.assert_allclose(alignment.to_prior.apply_c2w(estimate), odometry, atol=1e-9)
    assert alignment.inlier_N.all() and alignment.scale_source == "odometry"


def test_a_wrong_estimate_is_left_out_and_does_not_bend_the_fit():
    odometry = straight_drive()
    estimate, gauge = into_scene_gauge(odometry)
    flipped = Rotation.from_euler("z", 180, degrees=True).as_matrix()
    estimate[3, :3, :3] = flipped @ estimate[3, :3, :3]
    alignment = align_to_prior(estimate, odometry, "odometry")
    assert not alignment.inlier_N[3] and alignment.inlier_N.sum() == 9
    assert alignment.rotation_residual_deg_N[3] > 170
    assert alignment.to_prior.scale == pytest.approx(1 / gauge.scale, rel=1e-9)
    good = np.arange(10) != 3
    np.testing.assert_allclose(alignment.to_prior.apply_c2w(estimate)[good], odometry[good], atol=1e-9)


def test_cameras_without_a_prior_are_aligned_but_not_used():
    odometry = straight_drive()
    estimate, _ = into_scene_gauge(odometry)
    priors = odometry.copy()
    priors[::2] = np.nan
    alignment = align_to_prior(estimate, priors, "odometry")
    np.testing.assert_allclose(alignment.to_prior.apply_c2w(estimate), odometry, atol=1e-9)
    assert not alignment.inlier_N[::2].any() and np.isnan(alignment.centre_residual_N[::2]).all()


def test_noisy_odometry_gives_scale_within_its_noise():
    rng = np.random.default_rng(0)
    odometry = straight_drive(30)
    estimate, gauge = into_scene_gauge(odometry)
    noisy = odometry.copy()
    noisy[:, :3, 3] += rng.normal(0, 0.02, (30, 3))
    noisy[:, :3, :3] = Rotation.from_rotvec(rng.normal(0, np.radians(1), (30, 3))).as_matrix() @ noisy[:, :3, :3]
    alignment = align_to_prior(estimate, noisy, "odometry")
    assert alignment.to_prior.scale * gauge.scale == pytest.approx(1.0, abs=0.02)
    aligned = alignment.to_prior.apply_c2w(estimate)
    assert np.abs(aligned[:, :3, 3] - odometry[:, :3, 3]).max() < 0.05
    assert rotation_angle_deg(np.swapaxes(aligned[:, :3, :3], 1, 2) @ odometry[:, :3, :3]).max() < 1.0


@pytest.mark.parametrize("keep", [[0], [2, 3]])
def test_no_alignment_without_two_priors_apart(keep):
    odometry = straight_drive()
    estimate, _ = into_scene_gauge(odometry)
    priors = np.full_like(odometry, np.nan)
    priors[keep] = odometry[0]  # one prior, or two at the same place (a robot standing still)
    assert align_to_prior(estimate, priors, "odometry") is None


def test_sim3_inverse_undoes_it():
    _, gauge = into_scene_gauge(straight_drive())
    points = np.random.default_rng(1).normal(size=(5, 3))
    np.testing.assert_allclose(gauge.inverse().apply_points(gauge.apply_points(points)), points, atol=1e-12)


def test_the_gate_takes_poses_near_their_priors_and_no_pose_without_one() -> None:
    prior_N44 = np.repeat(np.eye(4)[None], 4, axis=0)
    c2w_N44 = prior_N44.copy()
    c2w_N44[1, :3, 3] = [0.05, 0.0, 0.0]  # near
    c2w_N44[2, :3, 3] = [0.5, 0.0, 0.0]  # too far
    c2w_N44[3, :3, :3] = Rotation.from_euler("z", 10.0, degrees=True).as_matrix()  # turned too much
    gate_N = within_prior_gate(c2w_N44, prior_N44, max_offset=0.1, max_turn_deg=5.0)
    assert gate_N.tolist() == [True, True, False, False]
    prior_N44[0] = np.nan
    assert not within_prior_gate(c2w_N44, prior_N44, 0.1, 5.0)[0]


def test_the_prior_gate_scales_with_the_ring_and_widens_with_the_residual() -> None:
    ring_N44 = np.repeat(np.eye(4)[None], 4, axis=0)
    ring_N44[:, :3, 3] = [[2, 0, 0], [-2, 0, 0], [0, 2, 0], [0, -2, 0]]  # ring radius 2
    prior_M44 = np.eye(4)[None]
    c2w_M44 = prior_M44.copy()
    c2w_M44[0, :3, 3] = [0.3, 0.0, 0.0]
    assert ring_radius(ring_N44) == 2.0
    assert PriorGate(0.2, 5.0).accepts(c2w_M44, prior_M44, ring_N44)[0]  # 0.3 <= 0.2 x 2
    assert not PriorGate(0.1, 5.0).accepts(c2w_M44, prior_M44, ring_N44)[0]  # 0.3 > 0.1 x 2
    assert PriorGate(0.1, 5.0, residual_factor=3.0).accepts(c2w_M44, prior_M44, ring_N44, residual=0.11)[0]
    assert not PriorGate(0.1, 5.0, residual_factor=3.0).accepts(c2w_M44, prior_M44, ring_N44, residual=0.09)[0]
