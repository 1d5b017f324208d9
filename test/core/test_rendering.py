"""Volume rendering against analytic cases: constant density, a thin slab, missed rays."""

import math

import pytest
import torch

from nvs_ros.core.cameras import orbit_c2w, pixel_grid, rays_from_pixels, se3_exp
from nvs_ros.core.field import FieldConfig, RadianceField
from nvs_ros.core.rendering import ray_box_intersection, render_image, render_rays


def raw_for_density(field: RadianceField, sigma: float) -> float:
    raw = math.log(math.expm1(sigma / field.density_scale)) - field.density_bias
    return raw / field.config.density_gain


def constant_field(sigma: float, rgb: tuple[float, float, float], half: float = 1.0) -> RadianceField:
    field = RadianceField(FieldConfig(box_half_size=half, resolution=5))
    with torch.no_grad():
        field.grid[0, 0] = raw_for_density(field, sigma)
        for c, value in enumerate(rgb):
            field.grid[0, 1 + c] = math.log(value / (1.0 - value))
    return field


def test_ray_box_intersection_cases():
    origins_R3 = torch.tensor([[-3.0, 0.0, 0.0], [-3.0, 0.0, 0.0], [0.0, 0.5, 0.0], [-3.0, 2.0, 0.0]])
    dirs_R3 = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    near_R, far_R, hit_R = ray_box_intersection(origins_R3, dirs_R3, -torch.ones(3), torch.ones(3))
    assert hit_R.tolist() == [True, False, True, False]
    assert near_R.tolist() == [2.0, 0.0, 0.0, 0.0] and far_R.tolist() == [4.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize("randomize", [False, True])
def test_constant_density_matches_beer_lambert(randomize):
    sigma, colour_3, background_3 = 0.8, (0.2, 0.6, 0.9), torch.tensor([1.0, 0.5, 0.0])
    field = constant_field(sigma, colour_3)
    # Rays from outside through the cube at different angles, so chord lengths differ.
    directions_R3 = torch.nn.functional.normalize(torch.tensor(
        [[1.0, 0.0, 0.0], [1.0, 0.8, 0.0], [1.0, 0.2, -0.25], [1.0, -0.6, 0.5]]), dim=-1)
    origins_R3 = torch.tensor([-2.0, 0.1, 0.2]).expand(4, 3)
    out = render_rays(field, origins_R3, directions_R3, 64, background_3, randomize=randomize)
    near_R, far_R, hit_R = ray_box_intersection(origins_R3, directions_R3, field.box_min_3, field.box_max_3)
    assert hit_R.all() and (far_R - near_R).min() > 0.1 and (far_R - near_R).max() > 2.0
    expected_opacity_R = 1.0 - torch.exp(-sigma * (far_R - near_R))
    assert torch.allclose(out.opacity_R, expected_opacity_R, atol=1e-5)
    opacity_R1 = expected_opacity_R[:, None]
    expected_rgb_R3 = opacity_R1 * torch.tensor(colour_3) + (1 - opacity_R1) * background_3
    assert torch.allclose(out.rgb_R3, expected_rgb_R3, atol=1e-4)
    # Expected termination distance of an exponential truncated to [near, far].
    length_R = far_R - near_R
    mean_R = near_R + 1.0 / sigma - length_R * torch.exp(-sigma * length_R) / expected_opacity_R
    assert torch.allclose(out.depth_R, mean_R, atol=0.02)


def test_thin_slab_depth_is_its_distance():
    field = RadianceField(FieldConfig(box_half_size=1.0, resolution=129, initial_opacity=1e-6))
    with torch.no_grad():
        field.grid[0, 0, :, :, 96] = raw_for_density(field, 2000.0)  # plane x = 0.5
    origins_R3 = torch.tensor([[-3.0, 0.0, 0.0], [-3.0, 0.3, -0.2], [-2.0, -0.5, 0.5]])
    dirs_R3 = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.1, 0.1], [1.0, 0.2, -0.3]]),
                                            dim=-1)
    out = render_rays(field, origins_R3, dirs_R3, 512, randomize=False)
    distance_R = (0.5 - origins_R3[:, 0]) / dirs_R3[:, 0]
    assert torch.all(out.opacity_R > 0.99)
    assert torch.allclose(out.depth_R, distance_R, atol=1.5 * field.voxel_size)


def test_rays_missing_the_box_render_background():
    field = constant_field(5.0, (0.1, 0.1, 0.1))
    origins_R3 = torch.tensor([[-3.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    dirs_R3 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    background_R3 = torch.tensor([[0.3, 0.4, 0.5], [0.9, 0.8, 0.7]])
    out = render_rays(field, origins_R3, dirs_R3, 16, background_rgb=background_R3)
    assert torch.equal(out.opacity_R, torch.zeros(2)) and torch.equal(out.depth_R, torch.zeros(2))
    assert torch.allclose(out.rgb_R3, background_R3)


def ball_field() -> RadianceField:
    field = RadianceField(FieldConfig(box_half_size=1.0, resolution=33, initial_opacity=1e-4))
    d = field.grid.shape[2]
    z, y, x = torch.meshgrid(*(torch.linspace(-1, 1, d),) * 3, indexing="ij")
    inside = (x**2 + y**2 + z**2).sqrt() < 0.4
    with torch.no_grad():
        field.grid[0, 0] = raw_for_density(field, 1e-6)  # as if trained to be empty
        field.grid[0, 0][inside] = raw_for_density(field, 100.0)
        field.grid[0, 1] = x * 3.0
        field.grid[0, 2] = y * 3.0
    return field


def test_occupancy_skipping_renders_the_same_image():
    field = ball_field()
    field.update_occupancy()
    assert field.occupied_fraction() < 0.2
    K_33 = torch.tensor([[20.0, 0.0, 11.5], [0.0, 20.0, 11.5], [0.0, 0.0, 1.0]])
    c2w_144 = orbit_c2w(torch.tensor([0.4]), torch.tensor([0.3]), 3.0)
    origins_1R3, dirs_1R3 = rays_from_pixels(K_33[None], c2w_144, pixel_grid(24, 24)[None])
    skipped = render_rays(field, origins_1R3[0], dirs_1R3[0], 64, randomize=False, skip_empty=True)
    full = render_rays(field, origins_1R3[0], dirs_1R3[0], 64, randomize=False, skip_empty=False)
    assert full.opacity_R.max() > 0.9 and full.opacity_R.min() < 0.01
    for a, b in ((skipped.rgb_R3, full.rgb_R3), (skipped.opacity_R, full.opacity_R)):
        assert torch.allclose(a, b, atol=2e-3)


def test_render_image_depth_and_z_depth():
    field = ball_field()
    K_33 = torch.tensor([[20.0, 0.0, 11.5], [0.0, 20.0, 11.5], [0.0, 0.0, 1.0]])
    c2w_44 = orbit_c2w(torch.tensor([0.0]), torch.tensor([0.0]), 3.0)[0]
    out = render_image(field, K_33, c2w_44, 24, 24, num_samples=128, chunk=100)
    assert out.rgb_R3.shape == (24, 24, 3) and out.z_depth_R.shape == (24, 24)
    # The centre ray hits the ball (radius 0.4) at distance 2.6; corner rays miss it.
    centre = out.depth_R[11:13, 11:13]
    assert torch.allclose(centre, torch.full_like(centre, 2.6), atol=0.1)
    assert out.opacity_R[0, 0] < 0.01 and torch.allclose(out.rgb_R3[0, 0], torch.ones(3), atol=0.01)
    # z-depth is never more than the distance along the ray, equal on the axis.
    assert torch.all(out.z_depth_R <= out.depth_R + 1e-6)
    assert torch.allclose(out.z_depth_R[11:13, 11:13], centre, atol=5e-3)


def test_gradients_reach_the_grid_and_the_pose():
    field = ball_field()
    xi = torch.zeros(1, 6, requires_grad=True)
    c2w_144 = se3_exp(xi) @ orbit_c2w(torch.tensor([0.4]), torch.tensor([0.3]), 3.0)
    K_33 = torch.tensor([[20.0, 0.0, 7.5], [0.0, 20.0, 7.5], [0.0, 0.0, 1.0]])
    origins_1R3, dirs_1R3 = rays_from_pixels(K_33[None], c2w_144, pixel_grid(16, 16)[None])
    out = render_rays(field, origins_1R3[0], dirs_1R3[0], 32)
    (out.rgb_R3.square().sum() + out.depth_R.sum()).backward()
    assert field.grid.grad is not None and field.grid.grad[:, 0].abs().sum() > 0
    assert field.grid.grad[:, 1:].abs().sum() > 0
    assert torch.isfinite(xi.grad).all() and xi.grad.abs().max() > 1e-3


def test_contracted_field_opacity_is_beer_lambert_over_the_contracted_path():
    """From the box's centre a ray's contracted path is straight: 2 h |d| / ||d||_inf long (up
    to the sampler's far margin), so a constant density gives exactly that optical depth."""
    sigma, half = 0.3, 1.5
    field = RadianceField(FieldConfig(box_half_size=half, resolution=5, contract=True))
    with torch.no_grad():
        field.grid[0, 0] = raw_for_density(field, sigma)
    dirs_R3 = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.2, -0.5, 1.0]]),
                                            dim=-1)
    out = render_rays(field, torch.zeros(3, 3), dirs_R3, 48, randomize=True)
    length_R = 2.0 * half / dirs_R3.abs().amax(dim=-1) * (1.0 - 0.5e-3)
    assert torch.allclose(out.opacity_R, 1.0 - torch.exp(-sigma * length_R), atol=1e-3)


def test_contracted_field_renders_a_far_wall_at_its_distance():
    field = RadianceField(FieldConfig(box_half_size=1.0, resolution=129, initial_opacity=1e-6, contract=True))
    with torch.no_grad():
        # The plane x = 4 (infinity-norm radius 4 where x dominates) contracts to u_x = 1.75,
        # grid coordinate 0.875: vertex 120 of 129.
        field.grid[0, 0, :, :, 120] = raw_for_density(field, 2000.0)
        field.grid[0, 1:, :, :, 110:] = torch.tensor([2.0, -2.0, 0.0])[:, None, None, None]  # no blend
    origins_R3 = torch.tensor([[0.0, 0.3, -0.2], [-0.5, 0.0, 0.0], [2.0, 0.2, 0.1]])
    dirs_R3 = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1, 0.05], [1.0, -0.1, 0.1], [1.0, 0.0, -0.1]]),
                                            dim=-1)
    out = render_rays(field, origins_R3, dirs_R3, 96, background_rgb=0.0, randomize=False)
    assert torch.all(out.opacity_R > 0.99)
    assert torch.allclose(out.rgb_R3, torch.sigmoid(torch.tensor([2.0, -2.0, 0.0])).expand(3, 3), atol=0.01)
    # Within a voxel of u_x = 1.75 (4 / 128 in u), i.e. x between 1 / (0.25 + v) and 1 / (0.25 - v).
    hit_x_R = origins_R3[:, 0] + out.depth_R * dirs_R3[:, 0]
    voxel = 4.0 / 128
    assert torch.all(hit_x_R > 1.0 / (0.25 + voxel)) and torch.all(hit_x_R < 1.0 / (0.25 - voxel))
