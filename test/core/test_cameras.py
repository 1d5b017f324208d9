"""SE(3)/so(3) exponential maps, orbit cameras and pixel rays against closed forms."""

import math

import numpy as np
import pytest
import torch

from nvs_ros.core.cameras import (orbit_c2w, pixel_grid, ray_z_scale, rays_from_pixels, se3_exp,
                                  so3_exp)


def test_so3_exp_quarter_turn_about_z():
    R_133 = so3_exp(torch.tensor([[0.0, 0.0, math.pi / 2]], dtype=torch.float64))
    expected_33 = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(R_133[0], expected_33, atol=1e-12)


@pytest.mark.parametrize("scale", [1e-8, 1e-3, 0.5, 3.0])
def test_so3_exp_is_a_rotation_that_matches_rodrigues(scale):
    omega_N3 = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * scale
    R_N33 = so3_exp(omega_N3)
    eye_N33 = torch.eye(3, dtype=torch.float64).expand(16, 3, 3)
    assert torch.allclose(R_N33 @ R_N33.transpose(1, 2), eye_N33, atol=1e-12)
    assert torch.allclose(torch.linalg.det(R_N33), torch.ones(16, dtype=torch.float64), atol=1e-12)
    # Reference: the matrix exponential of the skew matrix.
    x, y, z = omega_N3.unbind(-1)
    zero = torch.zeros_like(x)
    W_N33 = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(16, 3, 3)
    assert torch.allclose(R_N33, torch.linalg.matrix_exp(W_N33), atol=1e-12)
    # The rotation axis is fixed by R.
    assert torch.allclose((R_N33 @ omega_N3[..., None])[..., 0], omega_N3, atol=1e-12)


def test_exponential_maps_have_finite_gradients_at_zero():
    for fn, dim in ((so3_exp, 3), (se3_exp, 6)):
        xi = torch.zeros(2, dim, requires_grad=True)
        fn(xi).sum().backward()
        assert torch.isfinite(xi.grad).all()
    # At 0 the derivative of R w.r.t. omega_z is the generator hat(e_z).
    omega = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    jac_33 = torch.autograd.functional.jacobian(lambda w: so3_exp(w)[0], omega)[:, :, 0, 2]
    assert torch.allclose(jac_33, torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
                                               dtype=torch.float64))


def test_se3_exp_pure_translation_and_known_screw():
    T_144 = se3_exp(torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(T_144[0, :3, :3], torch.eye(3, dtype=torch.float64))
    assert torch.allclose(T_144[0, :3, 3], torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert torch.equal(T_144[0, 3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64))
    # Half turn about z with rho along x: V rho = (sin t / t, (1 - cos t) / t, 0) = (0, 2/pi, 0).
    T_144 = se3_exp(torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, math.pi]], dtype=torch.float64))
    assert torch.allclose(T_144[0, :3, 3], torch.tensor([0.0, 2.0 / math.pi, 0.0], dtype=torch.float64),
                          atol=1e-12)
    # Against the 4x4 matrix exponential of the twist for a generic xi.
    xi_6 = torch.tensor([0.3, -0.2, 0.5, 0.4, -0.7, 0.2], dtype=torch.float64)
    twist_44 = torch.zeros(4, 4, dtype=torch.float64)
    wx, wy, wz = xi_6[3:]
    twist_44[:3, :3] = torch.tensor([[0, -wz, wy], [wz, 0, -wx], [-wy, wx, 0]], dtype=torch.float64)
    twist_44[:3, 3] = xi_6[:3]
    assert torch.allclose(se3_exp(xi_6[None])[0], torch.linalg.matrix_exp(twist_44), atol=1e-12)


def _project(K_33: np.ndarray, c2w_44: np.ndarray, point_3: np.ndarray) -> tuple[np.ndarray, float]:
    w2c_44 = np.linalg.inv(c2w_44)
    p_cam_3 = w2c_44[:3, :3] @ point_3 + w2c_44[:3, 3]
    uv_3 = K_33 @ p_cam_3
    return uv_3[:2] / uv_3[2], p_cam_3[2]


K_33 = np.array([[50.0, 0.0, 31.5], [0.0, 52.0, 23.5], [0.0, 0.0, 1.0]])


def test_orbit_camera_looks_at_origin_with_world_up_up_in_the_image():
    azimuth_N = torch.tensor([0.0, 1.0, 2.5, -2.0], dtype=torch.float64)
    elevation_N = torch.tensor([0.0, 0.4, -0.3, 1.2], dtype=torch.float64)
    c2w_N44 = orbit_c2w(azimuth_N, elevation_N, 4.0).numpy()
    for a, e, c2w_44 in zip(azimuth_N.numpy(), elevation_N.numpy(), c2w_N44):
        centre_3 = 4.0 * np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
        assert np.allclose(c2w_44[:3, 3], centre_3)
        assert np.allclose(c2w_44[:3, :3].T @ c2w_44[:3, :3], np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(c2w_44[:3, :3]), 1.0)
        uv_2, z = _project(K_33, c2w_44, np.zeros(3))
        assert z == pytest.approx(4.0) and np.allclose(uv_2, K_33[:2, 2])
        # A point just above the origin appears straight above the principal point.
        uv_up_2, _ = _project(K_33, c2w_44, np.array([0.0, 0.0, 0.1]))
        assert uv_up_2[1] < K_33[1, 2] - 0.1 and uv_up_2[0] == pytest.approx(K_33[0, 2], abs=1e-9)


def test_orbit_roll_turns_about_the_optical_axis():
    az, el = torch.tensor([0.7]), torch.tensor([0.3])
    c2w_0 = orbit_c2w(az, el, 3.0)[0]
    c2w_r = orbit_c2w(az, el, 3.0, roll_N=torch.tensor([0.5]))[0]
    assert torch.allclose(c2w_0[:3, 2], c2w_r[:3, 2], atol=1e-6)  # same optical axis
    assert torch.allclose(c2w_0[:3, 3], c2w_r[:3, 3])
    cos_angle = torch.dot(c2w_0[:3, 0], c2w_r[:3, 0])
    assert cos_angle.item() == pytest.approx(math.cos(0.5), abs=1e-6)
    # Positive roll moves the camera's x axis towards its former y axis.
    assert torch.dot(c2w_r[:3, 0], c2w_0[:3, 1]).item() == pytest.approx(math.sin(0.5), abs=1e-6)


def test_rays_pass_through_the_points_that_project_to_their_pixels():
    rng = np.random.default_rng(1)
    c2w_244 = orbit_c2w(*torch.tensor([[0.3, 2.0], [0.2, 0.9], [3.0, 5.0]], dtype=torch.float64)).numpy()
    points_M3 = rng.uniform(-1.0, 1.0, (10, 3))
    uv_list, depth_list = [], []
    for c2w_44 in c2w_244:
        uv_z = [_project(K_33, c2w_44, p) for p in points_M3]
        uv_list.append(np.stack([u for u, _ in uv_z]))
        depth_list.append(np.array([z for _, z in uv_z]))
    K_233 = torch.tensor(np.stack([K_33, K_33]))
    uv_2M2 = torch.tensor(np.stack(uv_list))
    origins_2M3, dirs_2M3 = rays_from_pixels(K_233, torch.tensor(c2w_244), uv_2M2)
    assert torch.allclose(dirs_2M3.norm(dim=-1), torch.ones(2, 10, dtype=torch.float64))
    for n in range(2):
        distance_M = np.linalg.norm(points_M3 - c2w_244[n, :3, 3], axis=-1)
        on_ray_M3 = origins_2M3[n].numpy() + distance_M[:, None] * dirs_2M3[n].numpy()
        assert np.allclose(on_ray_M3, points_M3, atol=1e-9)
        assert np.allclose(origins_2M3[n].numpy(), c2w_244[n, :3, 3])
        # ray_z_scale turns the distance along the ray into the camera z-depth.
        z_M = distance_M * ray_z_scale(K_233[n:n + 1], uv_2M2[n:n + 1])[0].numpy()
        assert np.allclose(z_M, depth_list[n])


def test_ray_gradients_reach_the_pose():
    xi = torch.zeros(1, 6, requires_grad=True)
    c2w_144 = se3_exp(xi) @ orbit_c2w(torch.tensor([0.5]), torch.tensor([0.2]), 3.0)
    uv_1R2 = pixel_grid(4, 5)[None]
    origins_1R3, dirs_1R3 = rays_from_pixels(torch.tensor(K_33, dtype=torch.float32)[None], c2w_144, uv_1R2)
    (origins_1R3 + 2.0 * dirs_1R3).sum().backward()
    assert torch.isfinite(xi.grad).all() and (xi.grad.abs() > 1e-4).sum() >= 4


def test_pixel_grid_is_row_major_opencv():
    uv_R2 = pixel_grid(2, 3)
    assert uv_R2.tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]


def test_se3_log_inverts_se3_exp() -> None:
    from nvs_ros.core.cameras import se3_exp, se3_log

    xi_N6 = torch.tensor([[0.3, -1.0, 2.0, 0.1, -0.4, 0.2], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                          [0.5, 0.5, -0.5, 0.0, 3.0, 0.0]], dtype=torch.float64)  # 172 degrees about y
    torch.testing.assert_close(se3_log(se3_exp(xi_N6)), xi_N6)
