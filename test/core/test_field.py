"""The voxel-grid radiance field: activation, box, coarse-to-fine, occupancy, TV, ONNX export,
and fitting it to a tiny scene with known poses."""

import math

import numpy as np
import pytest
import torch

from nvs_ros.core.field import FieldConfig, RadianceField, contract


def raw_for_density(field: RadianceField, sigma: float) -> float:
    """Inverse of the density activation."""
    raw = math.log(math.expm1(sigma / field.density_scale)) - field.density_bias
    return raw / field.config.density_gain


def linear_grid(field: RadianceField) -> None:
    """Raw channels that are linear functions of position (trilinear resampling keeps them)."""
    d, h, w = field.grid.shape[2:]
    z, y, x = torch.meshgrid(torch.linspace(-1, 1, d), torch.linspace(-1, 1, h), torch.linspace(-1, 1, w),
                             indexing="ij")
    with torch.no_grad():
        field.grid[0] = torch.stack([2 * x - y, x + z, y - 0.5 * z, -x])


def test_query_shapes_ranges_and_initial_transparency():
    field = RadianceField(FieldConfig(box_half_size=1.5, resolution=16, initial_opacity=0.05))
    points_P3 = torch.rand(100, 3) * 3.0 - 1.5
    density_P, rgb_P3 = field.query(points_P3)
    assert density_P.shape == (100,) and rgb_P3.shape == (100, 3)
    assert torch.allclose(rgb_P3, torch.full_like(rgb_P3, 0.5))
    # A zero grid is the initial density everywhere: opacity 0.05 across the box's side (3 units).
    assert torch.allclose(1.0 - torch.exp(-density_P * 3.0), torch.full_like(density_P, 0.05), atol=1e-6)
    outside_P, _ = field.query(torch.tensor([[1.6, 0.0, 0.0], [0.0, 0.0, -2.0]]))
    assert torch.equal(outside_P, torch.zeros(2))


def test_grid_axes_follow_world_axes_in_a_non_cubic_box():
    config = FieldConfig(box_half_size=(2.0, 1.0, 0.5), box_centre=(1.0, 0.0, 0.5), resolution=33)
    field = RadianceField(config)
    assert tuple(field.grid.shape[2:]) == (9, 17, 33)  # (z, y, x) vertices, voxel 0.125 everywhere
    assert field.voxel_size == pytest.approx(0.125)
    linear_grid(field)
    # Box corner (-1, -1, 0) is normalized (-1, -1, -1); (3, 1, 1) is (1, 1, 1); the channels
    # are the functions of (x, y, z) in normalized coordinates given in linear_grid.
    raw_P4 = field.raw(torch.tensor([[-1.0, -1.0, 0.0], [3.0, 1.0, 1.0], [2.0, 0.5, 0.75]]))
    xyz_P3 = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]])
    x, y, z = xyz_P3.unbind(-1)
    assert torch.allclose(raw_P4, torch.stack([2 * x - y, x + z, y - 0.5 * z, -x], -1), atol=1e-5)


def test_upsample_keeps_the_field_and_refines_the_grid():
    field = RadianceField(FieldConfig(box_half_size=1.0, resolution=9))
    linear_grid(field)
    points_P3 = torch.rand(200, 3) * 2.0 - 1.0
    before = field.query(points_P3)
    field.upsample(17)
    after = field.query(points_P3)
    assert tuple(field.grid.shape) == (1, 4, 17, 17, 17) and field.grid.requires_grad
    assert tuple(field.occupancy.shape) == (16, 16, 16)
    for a, b in zip(before, after):
        assert torch.allclose(a, b, atol=1e-4)


def test_a_checkpoint_of_any_resolution_loads():
    config = FieldConfig(box_half_size=1.0, resolution=9)
    field = RadianceField(config)
    with torch.no_grad():
        field.grid.normal_()
    field.upsample(13)
    field.update_occupancy()
    restored = RadianceField(config)
    restored.load_state_dict(field.state_dict())
    points_P3 = torch.rand(50, 3) * 2.0 - 1.0
    assert torch.equal(restored.query(points_P3)[0], field.query(points_P3)[0])
    assert torch.equal(restored.occupancy, field.occupancy) and restored.resolution == 13


def test_occupancy_marks_only_cells_near_density():
    field = RadianceField(FieldConfig(box_half_size=1.0, resolution=11))
    field.update_occupancy()
    assert field.occupied_fraction() == 1.0  # untrained space is never skipped
    with torch.no_grad():
        field.grid[0, 0] = raw_for_density(field, 1e-4)  # trained to be empty...
        field.grid[0, 0, 5, 5, 5] = raw_for_density(field, 20.0)  # ...but one dense vertex at the origin
    field.update_occupancy()
    assert field.occupancy.sum().item() == 8  # the 8 cells sharing that vertex
    occupied_P = field.occupied(torch.tensor([[0.05, -0.05, 0.1], [0.5, 0.5, 0.5], [0.0, 0.0, 1.5]]))
    assert occupied_P.tolist() == [True, False, False]
    # A dense field leaves every cell occupied.
    dense = RadianceField(FieldConfig(box_half_size=1.0, resolution=11, initial_opacity=0.9))
    dense.update_occupancy()
    assert dense.occupied_fraction() == 1.0


def test_tv_loss_is_zero_for_constant_and_positive_for_rough_grids():
    field = RadianceField(FieldConfig(resolution=8))
    assert field.tv_loss().item() == 0.0
    with torch.no_grad():
        field.grid.normal_()
    loss = field.tv_loss()
    assert loss.item() == pytest.approx(3 * 2.0, rel=0.15)  # E[(a - b)^2] = 2 per axis
    loss.backward()
    assert field.grid.grad.abs().sum() > 0


def test_parameter_groups_drive_adam():
    field = RadianceField(FieldConfig(resolution=8, lr=0.1))
    optimizer = torch.optim.Adam(field.parameter_groups())
    target_P3 = torch.tensor([[0.2, 0.7, 0.1]]).expand(50, 3)
    points_P3 = torch.rand(50, 3) * 2.5 - 1.25
    for _ in range(60):
        optimizer.zero_grad()
        loss = (field.query(points_P3)[1] - target_P3).square().mean()
        loss.backward()
        optimizer.step()
    assert loss.item() < 1e-3


def test_contraction_is_the_identity_inside_and_squeezes_space_into_the_shell():
    inside_P3 = torch.rand(200, 3) * 2.0 - 1.0
    assert torch.equal(contract(inside_P3), inside_P3)
    # Along any ray from the centre the contracted radius grows monotonically towards 2.
    direction_3 = torch.nn.functional.normalize(torch.tensor([0.3, -1.0, 0.5]), dim=0)
    distances_P = torch.logspace(-1, 4, 300)
    radii_P = contract(distances_P[:, None] * direction_3).abs().amax(dim=-1)
    assert torch.all(radii_P.diff() > 0) and radii_P[-1] > 1.999 and radii_P.max() < 2.0
    # A point at infinity-norm radius m lands at 2 - 1/m, in its own direction.
    far_P3 = torch.randn(100, 3) * 50.0
    m_P = far_P3.abs().amax(dim=-1).clamp_min(1.0)
    contracted_P3 = contract(far_P3)
    assert torch.allclose(contracted_P3.abs().amax(dim=-1), 2.0 - 1.0 / m_P)
    assert torch.allclose(torch.nn.functional.normalize(contracted_P3, dim=-1),
                          torch.nn.functional.normalize(far_P3, dim=-1), atol=1e-6)


def test_contracted_field_keeps_the_box_and_models_everything_outside():
    field = RadianceField(FieldConfig(box_half_size=2.0, box_centre=(1.0, 0.0, 0.0), resolution=33, contract=True))
    linear_grid(field)
    # The box fills the middle half of the grid; far points are modelled (density > 0).
    inner_P3 = torch.tensor([[2.0, 1.0, -0.5], [-0.9, 1.9, 1.9]])
    expected_P3 = (inner_P3 - torch.tensor([1.0, 0.0, 0.0])) / 2.0 / 2.0
    assert torch.allclose(field.normalize(inner_P3), expected_P3, atol=1e-6)
    far_P3 = torch.tensor([[1e4, 0.0, 0.0], [1.0, -50.0, 3.0]])
    assert field.normalize(far_P3).abs().max() < 1.0
    density_P, _ = field.query(far_P3)
    assert torch.all(density_P > 0)
    assert field.voxel_size == pytest.approx(8.0 / 32)
