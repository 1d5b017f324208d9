"""The pure helpers of bench/robust.py: cropping foreign images, mixing them in, flipping poses,
scoring rotations after a robust alignment."""

import numpy as np
from bench_script import load_bench

from nvs_ros.core.image_set import ImageSet
from nvs_ros.core.metrics import rotation_angle_deg

robust = load_bench("robust")


def _ring(n: int, radius: float = 4.0, height: float = 1.0) -> np.ndarray:
    """Cameras on a ring around the origin looking at it, OpenCV axes, world Z up."""
    c2w_N44 = np.tile(np.eye(4), (n, 1, 1))
    for i, angle in enumerate(np.linspace(0, 2 * np.pi, n, endpoint=False)):
        centre = np.array([radius * np.cos(angle), radius * np.sin(angle), height])
        forward = -centre / np.linalg.norm(centre)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        c2w_N44[i, :3, :3] = np.stack([right, np.cross(forward, right), forward], axis=1)
        c2w_N44[i, :3, 3] = centre
    return c2w_N44


def _image_set(n: int, height: int, width: int, prefix: str, value: int = 0) -> ImageSet:
    K = np.array([[10.0, 0, (width - 1) / 2], [0, 10.0, (height - 1) / 2], [0, 0, 1]])
    return ImageSet(names=[f"{prefix}{i}" for i in range(n)],
                    images_NHW3=np.full((n, height, width, 3), value, dtype=np.uint8), K_N33=np.tile(K, (n, 1, 1)))


def test_fit_to_size_crops_the_centre_and_keeps_the_principal_point_centred():
    wide = _image_set(1, 4, 8, "wide", value=200)
    wide.images_NHW3[:, :, :2] = 0  # the side bands the square crop cuts off
    wide.images_NHW3[:, :, 6:] = 0
    fitted = robust.fit_to_size(wide, 2, 2)
    assert fitted.images_NHW3.shape == (1, 2, 2, 3)
    assert (fitted.images_NHW3 == 200).all()
    np.testing.assert_allclose(fitted.K_N33[0], [[5.0, 0, 0.5], [0, 5.0, 0.5], [0, 0, 1]])


def test_mix_in_puts_the_foreign_views_at_spread_positions_and_keeps_the_base_order():
    assert robust.spread_positions(60, 5).tolist() == [6, 19, 32, 45, 58]
    base, foreign = _image_set(10, 2, 2, "base", 1), _image_set(2, 2, 2, "other", 9)
    mixed, foreign_N = robust.mix_in(base, foreign, "foreign")
    assert np.flatnonzero(foreign_N).tolist() == [2, 8]
    assert [mixed.names[i] for i in np.flatnonzero(foreign_N)] == ["foreign_00", "foreign_01"]
    assert [mixed.names[i] for i in np.flatnonzero(~foreign_N)] == base.names
    assert (mixed.images_NHW3[foreign_N] == 9).all() and (mixed.images_NHW3[~foreign_N] == 1).all()


def test_perturb_poses_turns_and_moves_each_camera_by_the_given_amounts():
    gt = _ring(6)
    noisy = robust.perturb_poses(gt, 3.0, 0.2, np.random.default_rng(0))
    np.testing.assert_allclose(rotation_angle_deg(noisy[:, :3, :3].transpose(0, 2, 1) @ gt[:, :3, :3]), 3.0)
    np.testing.assert_allclose(np.linalg.norm(noisy[:, :3, 3] - gt[:, :3, 3], axis=1), 0.2)


def test_flipped_views_score_180_degrees_after_a_robust_alignment_and_the_others_zero():
    gt = _ring(12)
    flipped = robust.flip_about_up(gt)
    np.testing.assert_allclose(flipped[:, :3, 3], gt[[6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5], :3, 3], atol=1e-12)
    estimate = gt.copy()
    estimate[:, :3, 3] = 2.0 * gt[:, :3, 3] + [1.0, -2.0, 0.5]  # another gauge: scale and shift
    estimate[[2, 5]] = robust.flip_about_up(estimate[[2, 5]])
    registered = np.ones(12, dtype=bool)
    registered[7] = False
    errors = robust.aligned_rotation_errors(estimate, registered, gt, used_N=np.ones(12, dtype=bool))
    assert np.isnan(errors[7])
    np.testing.assert_allclose(errors[[2, 5]], 180.0, atol=1e-6)
    np.testing.assert_allclose(np.delete(errors, [2, 5, 7]), 0.0, atol=1e-6)
