"""What a trained scene gives out: coloured point clouds, synthesized views, camera frusta."""

from dataclasses import dataclass

import torch
from torch import Tensor

from nvs_ros.core.field import RadianceField
from nvs_ros.core.rendering import RenderOutput, render_image


@dataclass
class PointCloud:
    points_P3: Tensor
    """World coordinates (the scene's frame), float32."""
    colors_P3: Tensor
    """RGB in [0, 1]."""

    def __len__(self) -> int:
        return self.points_P3.shape[0]


def backproject(render: RenderOutput, K_33: Tensor, c2w_44: Tensor, min_opacity: float) -> PointCloud:
    """World points of the pixels of one rendered view whose opacity reaches `min_opacity`."""
    height, width = render.opacity_R.shape
    device = render.opacity_R.device  # the scene's (a GPU) where the cameras may be on the CPU
    K_33, c2w_44 = K_33.to(device), c2w_44.to(device)
    v_HW, u_HW = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=device),
                                torch.arange(width, dtype=torch.float32, device=device), indexing="ij")
    keep_HW = render.opacity_R >= min_opacity
    z_P = render.z_depth_R[keep_HW]
    x_P = (u_HW[keep_HW] - K_33[0, 2]) / K_33[0, 0] * z_P
    y_P = (v_HW[keep_HW] - K_33[1, 2]) / K_33[1, 1] * z_P
    points_cam_P3 = torch.stack([x_P, y_P, z_P], dim=-1)
    points_P3 = points_cam_P3 @ c2w_44[:3, :3].T + c2w_44[:3, 3]
    return PointCloud(points_P3, render.rgb_R3[keep_HW])


def voxel_downsample(cloud: PointCloud, voxel_size: float) -> PointCloud:
    """One point per occupied voxel: the mean position and colour of the points in it."""
    if len(cloud) == 0 or voxel_size <= 0:
        return cloud
    cells_P3 = torch.floor(cloud.points_P3 / voxel_size).long()
    _, cell_of_P = torch.unique(cells_P3, dim=0, return_inverse=True)
    count_C = torch.bincount(cell_of_P).unsqueeze(-1).float()
    points_C3 = torch.zeros(count_C.shape[0], 3, device=cloud.points_P3.device).index_add_(
        0, cell_of_P, cloud.points_P3) / count_C
    colors_C3 = torch.zeros_like(points_C3).index_add_(0, cell_of_P, cloud.colors_P3) / count_C
    return PointCloud(points_C3, colors_C3)


def point_cloud(field: RadianceField, K_N33: Tensor, c2w_N44: Tensor, height: int, width: int,
                min_opacity: float = 0.9, voxel_size: float | None = None,
                background_rgb: Tensor | float = 1.0) -> PointCloud:
    """Coloured points where the field is opaque, seen from the given cameras.

    Each view is rendered; pixels whose rays stop inside the field (opacity >= min_opacity)
    are back-projected at their expected depth. Points from all views are merged on a voxel
    grid (default: the field's voxel size) so overlapping views do not pile up.
    """
    clouds = [backproject(render_image(field, K_33, c2w_44, height, width, background_rgb=background_rgb),
                          K_33.float(), c2w_44.float(), min_opacity)
              for K_33, c2w_44 in zip(K_N33.to(field.grid.device), c2w_N44.to(field.grid.device))]
    return merge_clouds(clouds, field.voxel_size if voxel_size is None else voxel_size)


def merge_clouds(clouds: list[PointCloud], voxel_size: float | None) -> PointCloud:
    """One cloud from several views' clouds, thinned on a voxel grid (None: not thinned)."""
    merged = PointCloud(torch.cat([c.points_P3 for c in clouds]), torch.cat([c.colors_P3 for c in clouds]))
    return merged if voxel_size is None else voxel_downsample(merged, voxel_size)


def synthesize_view(field: RadianceField, K_33: Tensor, c2w_44: Tensor, height: int, width: int,
                    background_rgb: Tensor | float = 1.0) -> tuple[Tensor, Tensor]:
    """(rgb uint8 (H, W, 3), z-depth float32 (H, W), 0 where nothing was hit) from a pose."""
    render = render_image(field, K_33, c2w_44, height, width, background_rgb=background_rgb)
    rgb_HW3 = (render.rgb_R3.clamp(0, 1) * 255).round().to(torch.uint8)
    return rgb_HW3, torch.where(render.opacity_R > 0.5, render.z_depth_R, torch.zeros_like(render.z_depth_R))


def frustum_lines(K_33: Tensor, c2w_44: Tensor, width: int, height: int, depth: float) -> Tensor:
    """(8, 2, 3) world-space segments of a camera pyramid `depth` deep: 4 edges from the
    centre to the image-plane corners, then the 4 sides of the image rectangle."""
    corners_uv = torch.tensor([[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5],
                               [-0.5, height - 0.5]], dtype=c2w_44.dtype, device=c2w_44.device)
    x = (corners_uv[:, 0] - K_33[0, 2]) / K_33[0, 0] * depth
    y = (corners_uv[:, 1] - K_33[1, 2]) / K_33[1, 1] * depth
    corners_cam_43 = torch.stack([x, y, torch.full_like(x, depth)], dim=-1)
    corners_43 = corners_cam_43 @ c2w_44[:3, :3].T + c2w_44[:3, 3]
    centre_3 = c2w_44[:3, 3].expand(4, 3)
    edges = torch.stack([centre_3, corners_43], dim=1)
    sides = torch.stack([corners_43, corners_43.roll(-1, dims=0)], dim=1)
    return torch.cat([edges, sides])
