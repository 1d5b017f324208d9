"""Pose and image metrics against hand-computable cases."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from nvs_ros.core.metrics import evaluate_poses, finite_or_none, psnr, relative_pose_errors, rotation_angle_deg, ssim
from nvs_ros.core.sim3 import Sim3, ransac_sim3, umeyama_sim3


def axis_angle(axis_3, angle_deg: float) -> np.ndarray:
    """Rodrigues: rotation by angle_deg about axis_3."""
    k = np.asarray(axis_3, dtype=np.float64) / np.linalg.norm(axis_3)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    a = math.radians(angle_deg)
    return np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K @ K


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    return axis_angle(rng.normal(size=3), rng.uniform(10, 170))


def look_at_origin(centre_3: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world at centre_3 looking at the origin, world +Z up."""
    forward = -centre_3 / np.linalg.norm(centre_3)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, np.cross(forward, right), forward], axis=1)
    c2w[:3, 3] = centre_3
    return c2w


def orbit(n: int, radius: float = 4.0, seed: int = 0) -> np.ndarray:
    """n cameras on the upper hemisphere (elevation 10-60 degrees) looking at the origin."""
    rng = np.random.default_rng(seed)
    azimuth = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 0.2, n)
    elevation = np.radians(rng.uniform(10, 60, n))
    centres = radius * np.stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                 np.sin(elevation)], axis=1)
    return np.stack([look_at_origin(c) for c in centres])


def all_registered(n: int) -> np.ndarray:
    return np.ones(n, dtype=bool)


def assert_perfect(m: dict) -> None:
    for key in ("registered_fraction", "RRA@5", "RRA@15", "RTA@15", "mAA@30", "CCA@0.1", "CCA@0.1_robust"):
        assert m[key] == 1.0, key
    for key in ("median_rotation_error_deg", "median_relative_rotation_error_deg"):
        assert m[key] < 1e-5, key
    assert m["ATE"] < 1e-9 and m["ATE_robust"] < 1e-9


def test_core_metrics_import_numpy_only():
    code = "import sys, nvs_ros.core.metrics; print(any(m in sys.modules for m in ('scipy', 'cv2', 'rclpy')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_rotation_angle_known_values():
    R_N33 = np.stack([np.eye(3), axis_angle([1, 2, 3], 1e-6), axis_angle([0, 0, 1], 90),
                      axis_angle([1, -1, 0], 37.5), axis_angle([0, 1, 0], 180), axis_angle([1, 1, 1], 179.9)])
    np.testing.assert_allclose(rotation_angle_deg(R_N33), [0, 1e-6, 90, 37.5, 180, 179.9], rtol=1e-9, atol=1e-12)


def test_umeyama_recovers_known_sim3():
    rng = np.random.default_rng(1)
    src_N3 = rng.normal(size=(50, 3))
    true = Sim3(2.7, random_rotation(rng), np.array([1.0, -3.0, 0.5]))
    fit = umeyama_sim3(src_N3, true.apply_points(src_N3))
    assert fit.scale == pytest.approx(2.7, rel=1e-12)
    np.testing.assert_allclose(fit.R_33, true.R_33, atol=1e-12)
    np.testing.assert_allclose(fit.t_3, true.t_3, atol=1e-12)

    noisy = umeyama_sim3(src_N3, true.apply_points(src_N3) + rng.normal(scale=0.01, size=(50, 3)))
    assert noisy.scale == pytest.approx(2.7, rel=5e-3)
    assert rotation_angle_deg(noisy.R_33.T @ true.R_33) < 0.5
    np.testing.assert_allclose(noisy.t_3, true.t_3, atol=0.02)

    rigid = umeyama_sim3(src_N3, true.apply_points(src_N3), with_scale=False)
    assert rigid.scale == 1.0
    np.testing.assert_allclose(rigid.R_33, true.R_33, atol=1e-12)


def test_umeyama_never_returns_a_reflection():
    # Nearly flat points mirrored through their plane: the best orthogonal fit is the mirror
    # (det -1); the best rotation gives up on the thin axis only, i.e. is the identity.
    src_N3 = np.concatenate([np.diag([3.0, 2.0, 0.1]), -np.diag([3.0, 2.0, 0.1])])
    fit = umeyama_sim3(src_N3, src_N3 * [1, 1, -1])
    np.testing.assert_allclose(fit.R_33, np.eye(3), atol=1e-9)


def test_ransac_sim3_finds_inliers_among_outliers():
    rng = np.random.default_rng(3)
    src_N3 = rng.normal(size=(30, 3))
    true = Sim3(0.5, random_rotation(rng), np.array([0.0, 2.0, -1.0]))
    dst_N3 = true.apply_points(src_N3)
    outlier_N = np.zeros(30, dtype=bool)
    outlier_N[rng.choice(30, 9, replace=False)] = True
    dst_N3[outlier_N] += rng.normal(scale=3.0, size=(9, 3)) + 2.0
    fit, inlier_N = ransac_sim3(src_N3, dst_N3, threshold=0.05, iterations=300)
    np.testing.assert_array_equal(inlier_N, ~outlier_N)
    assert fit.scale == pytest.approx(0.5, rel=1e-10)
    np.testing.assert_allclose(fit.apply_points(src_N3[~outlier_N]), dst_N3[~outlier_N], atol=1e-10)
    again, again_N = ransac_sim3(src_N3, dst_N3, threshold=0.05, iterations=300)
    np.testing.assert_array_equal(again.R_33, fit.R_33)  # seeded: the same answer twice


def test_identical_poses_score_perfectly():
    gt_N44 = orbit(12)
    m = evaluate_poses(gt_N44.copy(), all_registered(12), gt_N44)
    assert_perfect(m)
    assert m["num_images"] == 12 and m["registered"] == 12
    assert list(m) == ["num_images", "registered", "registered_fraction", "RRA@5", "RRA@15", "RTA@15",
                       "mAA@30", "scene_scale", "CCA@0.1", "ATE", "ATE_robust", "CCA@0.1_robust",
                       "median_rotation_error_deg", "median_relative_rotation_error_deg"]


def test_scene_scale_is_centroid_to_farthest_camera():
    # A ring of radius 3 at height 1: the centroid is its centre (0, 0, 1).
    angle_N = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    centres_N3 = np.stack([3 * np.cos(angle_N), 3 * np.sin(angle_N), np.ones(8)], axis=1)
    gt_N44 = np.stack([look_at_origin(c) for c in centres_N3])
    assert evaluate_poses(gt_N44, all_registered(8), gt_N44)["scene_scale"] == pytest.approx(3.0)


def test_sim3_transformed_copy_scores_perfectly():
    rng = np.random.default_rng(4)
    gt_N44 = orbit(15, seed=4)
    sim = Sim3(0.37, random_rotation(rng), rng.normal(size=3) * 10)
    est_N44 = sim.apply_c2w(gt_N44)
    np.testing.assert_allclose(est_N44[:, :3, 3], sim.apply_points(gt_N44[:, :3, 3]))
    rot_P, trans_P = relative_pose_errors(est_N44, gt_N44, all_registered(15))
    assert rot_P.shape == (15 * 14 // 2,) and rot_P.max() < 1e-5 and trans_P.max() < 1e-5
    assert_perfect(evaluate_poses(est_N44, all_registered(15), gt_N44))


def test_roll_of_one_camera_gives_known_relative_rotation_error():
    n, k = 10, 3
    gt_N44 = orbit(n)
    est_N44 = gt_N44.copy()
    est_N44[k, :3, :3] = gt_N44[k, :3, :3] @ axis_angle([0, 0, 1], 10.0)  # about its optical axis
    rot_P, trans_P = relative_pose_errors(est_N44, gt_N44, all_registered(n))
    i_P, j_P = np.triu_indices(n, 1)
    with_k_P = (i_P == k) | (j_P == k)
    np.testing.assert_allclose(rot_P[with_k_P], 10.0, atol=1e-9)
    np.testing.assert_allclose(rot_P[~with_k_P], 0.0, atol=1e-9)
    # Only pairs seen from camera k see the rolled direction (by at most the roll).
    assert trans_P[i_P != k].max() < 1e-6 and 0 < trans_P[i_P == k].max() <= 10 + 1e-9
    m = evaluate_poses(est_N44, all_registered(n), gt_N44)
    assert m["RRA@5"] == pytest.approx(1 - (n - 1) / (n * (n - 1) / 2))
    assert m["RRA@15"] == 1.0 and m["RTA@15"] == 1.0 and m["CCA@0.1"] == 1.0
    assert m["median_rotation_error_deg"] == pytest.approx(0.0, abs=1e-9)  # median of 9 zeros and one 10


def test_displaced_camera_gives_analytic_ate():
    n, k, delta = 60, 7, 4e-4
    gt_N44 = orbit(n)
    direction_3 = np.array([1.0, 2.0, -2.0]) / 3.0
    est_N44 = gt_N44.copy()
    est_N44[k, :3, 3] += delta * direction_3
    ate = evaluate_poses(est_N44, all_registered(n), gt_N44)["ATE"]
    # Expected: the residual left after least squares over the 7 Sim(3) directions at identity
    # (translation, scale x_i, rotation w x x_i), exact to first order in delta.
    x_N3 = gt_N44[:, :3, 3]
    J = np.zeros((n, 3, 7))
    J[:, :, :3] = np.eye(3)
    J[:, :, 3] = x_N3
    J[:, :, 4:] = np.stack([np.cross(np.eye(3)[a], x_N3) for a in range(3)], axis=-1)
    r = np.zeros((n, 3))
    r[k] = -delta * direction_3
    J, r = J.reshape(3 * n, 7), r.reshape(-1)
    left = r - J @ np.linalg.lstsq(J, r, rcond=None)[0]
    assert ate == pytest.approx(np.linalg.norm(left) / math.sqrt(n), rel=1e-3)
    assert ate == pytest.approx(delta / math.sqrt(n), rel=0.05)  # many cameras: little is absorbed

    far_N44 = gt_N44.copy()
    far_N44[k, :3, 3] += 0.3 * 4.0 * direction_3
    m = evaluate_poses(far_N44, all_registered(n), gt_N44)
    assert m["CCA@0.1"] == pytest.approx((n - 1) / n) and m["CCA@0.1_robust"] == pytest.approx((n - 1) / n)


def test_unregistered_images_count_as_failures():
    n = 10
    gt_N44 = orbit(n)
    est_N44 = gt_N44.copy()
    registered_N = all_registered(n)
    registered_N[[2, 7]] = False
    est_N44[~registered_N] = np.nan  # as CameraEstimates stores them
    rot_P, trans_P = relative_pose_errors(est_N44, gt_N44, registered_N)
    assert np.isinf(rot_P).sum() == np.isinf(trans_P).sum() == 45 - 28
    m = evaluate_poses(est_N44, registered_N, gt_N44)
    assert m["registered"] == 8 and m["registered_fraction"] == pytest.approx(0.8)
    for key in ("RRA@5", "RRA@15", "RTA@15", "mAA@30"):
        assert m[key] == pytest.approx(28 / 45), key
    assert m["CCA@0.1"] == pytest.approx(0.8) and m["CCA@0.1_robust"] == pytest.approx(0.8)
    assert m["ATE"] < 1e-9 and m["median_relative_rotation_error_deg"] < 1e-6

    registered_N[[0, 4, 5]] = False  # 5 of 10 registered: 10 of 45 pairs finite, median is inf
    m = evaluate_poses(np.where(registered_N[:, None, None], gt_N44, np.nan), registered_N, gt_N44)
    assert m["RRA@5"] == pytest.approx(10 / 45) and m["median_relative_rotation_error_deg"] is None
    json.dumps(m, allow_nan=False)


@pytest.mark.parametrize("num_registered", [0, 1, 2])
def test_too_few_registered_cameras_leave_alignment_undefined(num_registered):
    gt_N44 = orbit(6)
    registered_N = np.arange(6) < num_registered
    m = evaluate_poses(np.where(registered_N[:, None, None], gt_N44, np.nan), registered_N, gt_N44)
    assert m["CCA@0.1"] == m["CCA@0.1_robust"] == 0.0
    assert m["ATE"] is None and m["ATE_robust"] is None and m["median_rotation_error_deg"] is None
    assert m["RRA@15"] == pytest.approx(num_registered * (num_registered - 1) / 2 / 15)
    json.dumps(m, allow_nan=False)


def test_collapsed_estimate_scores_nothing_on_translation():
    gt_N44 = orbit(8)
    est_N44 = np.tile(np.eye(4), (8, 1, 1))  # one pose for every image: the K=1 collapse
    m = evaluate_poses(est_N44, all_registered(8), gt_N44)
    assert m["RTA@15"] == 0.0 and m["mAA@30"] == 0.0 and m["CCA@0.1"] == 0.0
    assert m["ATE"] is None
    json.dumps(m, allow_nan=False)


def test_robust_alignment_survives_two_flips():
    n = 20
    gt_N44 = orbit(n, seed=5)
    est_N44 = gt_N44.copy()
    flip_44 = np.diag([-1.0, -1.0, 1.0, 1.0])  # 180 degrees about the vertical axis through the object
    est_N44[[3, 4]] = flip_44 @ gt_N44[[3, 4]]
    m = evaluate_poses(est_N44, all_registered(n), gt_N44)
    assert m["CCA@0.1_robust"] == pytest.approx(18 / 20)
    assert m["CCA@0.1"] < 18 / 20
    assert m["ATE"] > 0 and m["ATE_robust"] > 0
    assert m["median_rotation_error_deg"] < 1e-6


def test_bad_inputs_raise():
    gt_N44 = orbit(4)
    with pytest.raises(ValueError, match="at least 2 images"):
        evaluate_poses(gt_N44[:1], all_registered(1), gt_N44[:1])
    with pytest.raises(ValueError, match="shape"):
        evaluate_poses(gt_N44[:3], all_registered(4), gt_N44)
    with pytest.raises(ValueError, match="boolean"):
        evaluate_poses(gt_N44, np.ones(4), gt_N44)
    bad_N44 = gt_N44.copy()
    bad_N44[1, :3, :3] *= 2
    with pytest.raises(ValueError, match="not a rotation"):
        evaluate_poses(bad_N44, all_registered(4), gt_N44)
    with pytest.raises(ValueError, match="at least 3"):
        umeyama_sim3(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="coincide"):
        umeyama_sim3(np.ones((5, 3)), np.zeros((5, 3)))


def test_psnr_known_values():
    rng = np.random.default_rng(6)
    image = rng.uniform(0.2, 0.8, size=(16, 20, 3))
    assert psnr(image + 0.1, image) == pytest.approx(20.0)
    as_uint8 = (image * 255).astype(np.uint8)
    assert psnr(as_uint8 + np.uint8(5), as_uint8) == pytest.approx(20 * math.log10(255 / 5))
    assert psnr(image, image) == math.inf and finite_or_none(psnr(image, image)) is None
    mask = np.zeros((16, 20), dtype=bool)
    mask[:8] = True
    damaged = image.copy()
    damaged[8:] += 0.3  # only outside the mask
    damaged[:8, :, 0] += 0.1  # inside: 1 of 3 channels off by 0.1 -> MSE 0.01 / 3
    assert psnr(damaged, image, mask) == pytest.approx(-10 * math.log10(0.01 / 3))


def reference_ssim(x_HWC: np.ndarray, y_HWC: np.ndarray) -> float:
    """skimage's algorithm with scipy: Gaussian filter (truncate 3.5 -> 11 taps), crop 5."""
    def f(a):
        return np.stack([ndimage.gaussian_filter(a[..., c], 1.5, truncate=3.5) for c in range(a.shape[-1])], -1)
    mx, my = f(x_HWC), f(y_HWC)
    vx, vy, cxy = f(x_HWC * x_HWC) - mx**2, f(y_HWC * y_HWC) - my**2, f(x_HWC * y_HWC) - mx * my
    s = ((2 * mx * my + 1e-4) * (2 * cxy + 9e-4)) / ((mx**2 + my**2 + 1e-4) * (vx + vy + 9e-4))
    return float(s[5:-5, 5:-5].mean())


def test_ssim_matches_reference_and_known_values():
    rng = np.random.default_rng(7)
    image = ndimage.gaussian_filter(rng.uniform(size=(40, 36, 3)), (2, 2, 0))
    noisy = np.clip(image + rng.normal(scale=0.05, size=image.shape), 0, 1)
    noisier = np.clip(image + rng.normal(scale=0.2, size=image.shape), 0, 1)
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)
    assert ssim(noisy, image) == pytest.approx(reference_ssim(noisy, image), abs=1e-12)
    assert ssim(noisy, image) == pytest.approx(ssim(image, noisy), abs=1e-12)
    assert 1.0 > ssim(noisy, image) > ssim(noisier, image)
    # Constant images: no variance, so SSIM is the luminance term (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.3, 0.6
    expected = (2 * a * b + 1e-4) / (a * a + b * b + 1e-4)
    assert ssim(np.full((12, 12, 3), a), np.full((12, 12, 3), b)) == pytest.approx(expected)
    as_uint8 = (image * 255).round().astype(np.uint8)
    assert ssim(as_uint8, as_uint8[::-1].copy()) == pytest.approx(ssim(as_uint8 / 255, as_uint8[::-1] / 255))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(np.zeros((10, 30, 3)), np.zeros((10, 30, 3)))
