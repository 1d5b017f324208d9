import torch

from nvs_ros.core.field import FieldConfig, RadianceField
from nvs_ros.core.products import PointCloud, frustum_lines, point_cloud, synthesize_view, voxel_downsample

K_33 = torch.tensor([[60.0, 0.0, 15.5], [0.0, 60.0, 11.5], [0.0, 0.0, 1.0]])
# Above the scene looking straight down: camera x = world x, y = world -y, z = world -z.
C2W_DOWN_44 = torch.tensor([[1.0, 0, 0, 0.2], [0, -1, 0, -0.1], [0, 0, -1, 2.0], [0, 0, 0, 1]])


def red_slab_field() -> RadianceField:
    """Opaque red material filling the box below world z = 0 (grid axes are z, y, x)."""
    field = RadianceField(FieldConfig(box_half_size=1.0, resolution=33))
    with torch.no_grad():
        depth_z = field.grid.shape[2]
        below = torch.linspace(-1, 1, depth_z) <= 0.0
        field.grid[0, 0, below] = 50.0
        field.grid[0, 1:, :] = torch.tensor([6.0, -6.0, -6.0]).reshape(3, 1, 1, 1)
    return field


def test_point_cloud_of_an_opaque_slab_lies_on_its_surface_in_its_colour():
    cloud = point_cloud(red_slab_field(), K_33[None], C2W_DOWN_44[None], 24, 32)
    assert len(cloud) > 100
    surface_error = cloud.points_P3[:, 2].abs()
    # Trilinear interpolation spreads the step over the next voxel (1/16): the surface is
    # found within one and a half voxels of z = 0, and on the side the camera sees.
    assert surface_error.max() < 1.5 / 16, surface_error.max()
    assert (cloud.points_P3[:, 2] > -0.01).all()
    assert (cloud.colors_P3[:, 0] > 0.95).all() and (cloud.colors_P3[:, 1:] < 0.05).all()
    # The whole view sees the slab, and nothing outside the frustum's footprint at z = 0.
    assert len(cloud) > 0.5 * 24 * 32 / 4  # merged on 1/16 voxels: about one point per 4 pixels
    assert (cloud.points_P3[:, 0] - 0.2).abs().max() < 2.0 * 16 / 60 + 0.07


def test_empty_field_gives_no_points_and_a_background_view():
    field = RadianceField(FieldConfig(box_half_size=1.0, resolution=9))
    assert len(point_cloud(field, K_33[None], C2W_DOWN_44[None], 24, 32)) == 0
    rgb_HW3, depth_HW = synthesize_view(field, K_33, C2W_DOWN_44, 24, 32)
    # The initial field is almost transparent (opacity 0.05 across the box), grey inside.
    assert rgb_HW3.dtype == torch.uint8 and (rgb_HW3 >= 240).all() and (depth_HW == 0).all()


def test_synthesized_depth_is_the_distance_to_the_slab():
    rgb_HW3, depth_HW = synthesize_view(red_slab_field(), K_33, C2W_DOWN_44, 24, 32)
    assert (depth_HW - 2.0).abs().max() < 1.5 / 16
    assert rgb_HW3[..., 0].float().mean() > 240 and rgb_HW3[..., 1].float().mean() < 15


def test_voxel_downsample_merges_points_in_one_cell():
    points = torch.tensor([[0.01, 0.01, 0.01], [0.02, 0.02, 0.02], [0.51, 0.0, 0.0]])
    colors = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    merged = voxel_downsample(PointCloud(points, colors), 0.1)
    assert len(merged) == 2
    first = merged.points_P3[:, 0].argmin()
    torch.testing.assert_close(merged.points_P3[first], torch.tensor([0.015, 0.015, 0.015]))
    torch.testing.assert_close(merged.colors_P3[first], torch.tensor([0.5, 0.0, 0.5]))


def test_frustum_corners_project_to_the_image_corners():
    lines = frustum_lines(K_33, C2W_DOWN_44, 32, 24, depth=0.5)
    assert lines.shape == (8, 2, 3)
    torch.testing.assert_close(lines[:4, 0], C2W_DOWN_44[:3, 3].expand(4, 3))
    corners_world = lines[:4, 1]
    w2c = torch.linalg.inv(C2W_DOWN_44)
    cam = corners_world @ w2c[:3, :3].T + w2c[:3, 3]
    uv = (cam @ K_33.T)[:, :2] / cam[:, 2:]
    torch.testing.assert_close(uv, torch.tensor([[-0.5, -0.5], [31.5, -0.5], [31.5, 23.5], [-0.5, 23.5]]))
    torch.testing.assert_close(cam[:, 2], torch.full((4,), 0.5))
