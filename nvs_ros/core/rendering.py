"""Volume rendering of a radiance field: samples inside its box, alpha compositing.

Each ray o + s d (d unit length, s >= 0) is clipped to the field's axis-aligned box (slab
test); `num_samples` stratified samples split the inside segment [s_near, s_far] into equal
intervals of length delta. Opacity of a sample alpha = 1 - exp(-sigma delta), transmittance
T_i = exp(-sum_{j<i} sigma_j delta), weight w_i = T_i alpha_i. Then
    rgb = sum w_i c_i + (1 - opacity) background,   opacity = sum w_i = 1 - exp(-sum sigma delta),
    depth = sum w_i s_i / opacity  (expected distance along the unit ray where the ray stops).
Rays that miss the box render the background with opacity 0 and depth 0.
A contracted field (core.field, `FieldConfig.contract`) models all of space: each ray is split
into camera -> box, inside the box, and box -> far, and the samples are shared among the
three in proportion to their lengths in contracted space, so every interval spans about the
same contracted length: linear in s before and inside the box, linear in disparity (1 / the
infinity-norm radius) beyond it, up to where the contracted radius is within `_FAR_MARGIN` of
the shell's edge. delta is then each interval's contracted length, not its world length.
Samples in cells the field's occupancy marks empty get density 0 without querying the field,
and, while training, so do samples behind the point where a ray's transmittance fell below
`stop_transmittance` (a density-only pass without gradients finds it).
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nvs_ros.core.cameras import pixel_grid, ray_z_scale, rays_from_pixels
from nvs_ros.core.field import RadianceField

_MIN_OPACITY = 1e-6
"""Below this a ray's depth is reported as 0 (it stops nowhere)."""
_FAR_MARGIN = 1e-3
"""A contracted field's rays end where 1 / (infinity-norm radius) has fallen to this fraction
of its value where they leave the box (contracted radius 2 - 1e-3 / that value)."""


@dataclass
class RenderOutput:
    """What a renderer returns. From `render_rays` the leading shape is (R,); from
    `render_image` it is (H, W) (the names keep the ray suffix)."""

    rgb_R3: Tensor
    """Composited colour in [0, 1], background included."""
    depth_R: Tensor
    """Expected distance along the unit ray direction from the ray origin (0 where opacity ~ 0)."""
    opacity_R: Tensor
    """Accumulated opacity in [0, 1] (1 - transmittance through the box)."""
    z_depth_R: Tensor | None = None
    """Depth along the camera's optical axis (render_image only): depth_R * cos(angle to the axis)."""


def ray_box_intersection(origins_R3: Tensor, dirs_R3: Tensor, box_min_3: Tensor,
                         box_max_3: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Slab test: (s_near (R,), s_far (R,), hit (R,)) of the rays with an axis-aligned box.

    s_near is clipped at 0 (a camera inside the box starts sampling at its centre).
    Where the ray misses, s_near = s_far = 0 and hit is False.
    """
    # A zero direction component gives +-inf slab distances, which min/max handle right.
    safe_dirs_R3 = torch.where(dirs_R3.abs() < 1e-12, torch.full_like(dirs_R3, 1e-12), dirs_R3)
    inv_R3 = 1.0 / safe_dirs_R3
    s0_R3 = (box_min_3 - origins_R3) * inv_R3
    s1_R3 = (box_max_3 - origins_R3) * inv_R3
    s_near_R = torch.minimum(s0_R3, s1_R3).amax(dim=-1).clamp_min(0.0)
    s_far_R = torch.maximum(s0_R3, s1_R3).amin(dim=-1)
    hit_R = s_far_R > s_near_R
    zero_R = torch.zeros_like(s_near_R)
    return torch.where(hit_R, s_near_R, zero_R), torch.where(hit_R, s_far_R, zero_R), hit_R


def render_rays(field: RadianceField, origins_R3: Tensor, dirs_R3: Tensor, num_samples: int,
                background_rgb: Tensor | float = 1.0, randomize: bool = True,
                skip_empty: bool = True, stop_transmittance: float = 1e-3,
                generator: torch.Generator | None = None) -> RenderOutput:
    """Render R rays (unit directions) through `field`, differentiable w.r.t. the field's
    parameters and the rays (hence the poses that made them).

    background_rgb: a float (grey level), a (3,) colour or an (R, 3) colour per ray.
    randomize: jitter each sample within its interval (training); else interval midpoints.
    skip_empty: give samples in empty occupancy cells density 0 without querying the field.
    stop_transmittance: when gradients are recorded, do not query (nor train) samples behind
        the point where less than this fraction of the light is left (0: query all).
    generator: random source of the jitter (None: torch's global one).
    """
    if origins_R3.shape != dirs_R3.shape or origins_R3.shape[-1] != 3 or origins_R3.ndim != 2:
        raise ValueError(f"need origins and dirs (R, 3), got {tuple(origins_R3.shape)} "
                         f"and {tuple(dirs_R3.shape)}")
    num_rays = origins_R3.shape[0]
    offsets_S = torch.arange(num_samples, device=origins_R3.device, dtype=origins_R3.dtype)
    if randomize:
        # Drawn where the generator lives (a CPU one with rays on a GPU: the same jitter on both).
        jitter_RS = torch.rand(num_rays, num_samples, dtype=origins_R3.dtype, generator=generator,
                               device=origins_R3.device if generator is None else generator.device)
        jitter_RS = jitter_RS.to(origins_R3.device)
    else:
        jitter_RS = torch.full((1, num_samples), 0.5, device=origins_R3.device, dtype=origins_R3.dtype)
    if field.config.contract:
        s_RS, delta_RS = _contracted_samples(field, origins_R3, dirs_R3, (offsets_S + jitter_RS) / num_samples)
        hit_R = torch.ones(num_rays, dtype=torch.bool, device=origins_R3.device)
    else:
        s_near_R, s_far_R, hit_R = ray_box_intersection(origins_R3, dirs_R3, field.box_min_3, field.box_max_3)
        delta_R = (s_far_R - s_near_R) / num_samples
        s_RS = s_near_R[:, None] + delta_R[:, None] * (offsets_S + jitter_RS)
        delta_RS = delta_R[:, None].expand(-1, num_samples)
    points_RS3 = torch.addcmul(origins_R3[:, None, :], s_RS[..., None], dirs_R3[:, None, :])
    density_RS, rgb_RS3 = _query_samples(field, points_RS3, hit_R, delta_RS, skip_empty, stop_transmittance)
    return composite(density_RS, rgb_RS3, s_RS, delta_RS, background_rgb)


def _contracted_samples(field: RadianceField, origins_R3: Tensor, dirs_R3: Tensor,
                        u_RS: Tensor) -> tuple[Tensor, Tensor]:
    """Distances s (R, S) of samples at fractions u_RS (in [0, 1], increasing along each ray,
    S = its width) of a ray's contracted length, and the contracted length delta (R, S) of
    each sample's interval [edge i, edge i + 1] (edges at i / S)."""
    num_samples = u_RS.shape[-1]
    edges_E = torch.linspace(0.0, 1.0, num_samples + 1, device=u_RS.device, dtype=u_RS.dtype)
    s_near_R, s_far_R, hit_R = ray_box_intersection(origins_R3, dirs_R3, field.box_min_3, field.box_max_3)
    # Rays that miss the box: the "box" segment shrinks to their closest approach to its centre.
    closest_R = ((field.box_centre_3 - origins_R3) * dirs_R3).sum(dim=-1).clamp_min(0.0)
    s_near_R = torch.where(hit_R, s_near_R, closest_R)
    s_far_R = torch.where(hit_R, s_far_R, closest_R)

    def point(s_R: Tensor) -> Tensor:
        return origins_R3 + s_R[:, None] * dirs_R3

    with torch.no_grad():  # where the samples go is a quadrature choice, not a function to train
        # Beyond the box the infinity-norm radius m (in box units) grows by rate_R per unit of s;
        # s = s_far + (m_far / rate) v / (1 - v) is uniform in 1/m, so uniform in 2 - 1/m.
        rate_R = (dirs_R3 / field.box_half_3).abs().amax(dim=-1)
        m_far_R = ((point(s_far_R) - field.box_centre_3) / field.box_half_3).abs().amax(dim=-1).clamp_min(1.0)
        scale_R = m_far_R / rate_R
        at_infinity_R3 = field.box_centre_3 + 2.0 * dirs_R3 / rate_R[:, None]
        lengths_R3 = torch.stack([
            (field.contracted(point(s_near_R)) - field.contracted(origins_R3)).norm(dim=-1),
            s_far_R - s_near_R,
            (at_infinity_R3 - field.contracted(point(s_far_R))).norm(dim=-1)], dim=-1)
        bounds_R3 = lengths_R3.cumsum(dim=-1) / lengths_R3.sum(dim=-1, keepdim=True).clamp_min(1e-12)

    def distance(u_RX: Tensor) -> Tensor:
        a1_R1, a2_R1 = bounds_R3[:, :1], bounds_R3[:, 1:2]
        before_RX = s_near_R[:, None] * u_RX / a1_R1.clamp_min(1e-12)
        inside_RX = (s_near_R[:, None]
                     + (s_far_R - s_near_R)[:, None] * (u_RX - a1_R1) / (a2_R1 - a1_R1).clamp_min(1e-12))
        v_RX = ((u_RX - a2_R1) / (1.0 - a2_R1).clamp_min(1e-12)).clamp(0.0, 1.0) * (1.0 - _FAR_MARGIN)
        beyond_RX = s_far_R[:, None] + scale_R[:, None] * v_RX / (1.0 - v_RX)
        return torch.where(u_RX < a1_R1, before_RX, torch.where(u_RX < a2_R1, inside_RX, beyond_RX))

    s_RS = distance(u_RS.expand(origins_R3.shape[0], -1))
    s_RE = distance(edges_E.expand(origins_R3.shape[0], -1))
    edges_RE3 = origins_R3[:, None, :] + s_RE[..., None] * dirs_R3[:, None, :]
    edge_points_RE3 = field.contracted(edges_RE3.reshape(-1, 3))
    delta_RS = edge_points_RE3.reshape(*s_RE.shape, 3).diff(dim=1).norm(dim=-1)
    return s_RS, delta_RS


def _query_samples(field: RadianceField, points_RS3: Tensor, hit_R: Tensor, delta_RS: Tensor,
                   skip_empty: bool, stop_transmittance: float) -> tuple[Tensor, Tensor]:
    """Density (R, S) and colour (R, S, 3) of every sample, querying the field only where it
    matters: samples of missed rays, of empty cells (skip_empty) and, when gradients are
    recorded, behind the point where a ray's transmittance fell below stop_transmittance
    (found by a cheaper density-only pass without gradients) get zeros."""
    num_rays, num_samples = points_RS3.shape[:2]
    points_P3 = points_RS3.reshape(-1, 3)
    keep_P = hit_R[:, None].expand(-1, num_samples).reshape(-1)
    if skip_empty:
        keep_P = keep_P & field.occupied(points_P3, inside_only=False)
    index_K = keep_P.nonzero().squeeze(-1)
    if stop_transmittance > 0.0 and torch.is_grad_enabled():
        with torch.no_grad():
            optical_depth_K = field.density_inside(points_P3[index_K]) * delta_RS.reshape(-1)[index_K]
            optical_depth_RS = points_P3.new_zeros(num_rays * num_samples).index_put(
                (index_K,), optical_depth_K).reshape(num_rays, num_samples)
            # Transmittance in front of each sample (exclusive cumulative sum).
            before_RS = torch.cumsum(optical_depth_RS, dim=-1) - optical_depth_RS
            alive_P = (before_RS < -math.log(stop_transmittance)).reshape(-1)
            index_K = index_K[alive_P[index_K]]
    density_K, rgb_K3 = field.query_inside(points_P3[index_K])
    density_P = points_P3.new_zeros(points_P3.shape[0]).index_put((index_K,), density_K)
    rgb_P3 = points_P3.new_zeros(points_P3.shape[0], 3).index_put((index_K,), rgb_K3)
    return density_P.reshape(num_rays, num_samples), rgb_P3.reshape(num_rays, num_samples, 3)


def composite(density_RS: Tensor, rgb_RS3: Tensor, s_RS: Tensor, delta_RS: Tensor,
              background_rgb: Tensor | float = 1.0) -> RenderOutput:
    """Alpha-composite samples (density per unit length, colour, distance s, interval
    length delta) over a background colour."""
    optical_depth_RS = density_RS * delta_RS
    alpha_RS = 1.0 - torch.exp(-optical_depth_RS)
    # Transmittance before each sample: exp of the exclusive cumulative sum (stable, no cumprod).
    accumulated_RS = torch.cumsum(optical_depth_RS, dim=-1)
    transmittance_RS = torch.exp(-(accumulated_RS - optical_depth_RS))
    weights_RS = transmittance_RS * alpha_RS
    opacity_R = weights_RS.sum(dim=-1)
    background = torch.as_tensor(background_rgb, dtype=rgb_RS3.dtype, device=rgb_RS3.device)
    rgb_R3 = (weights_RS[..., None] * rgb_RS3).sum(dim=-2) + (1.0 - opacity_R[:, None]) * background
    depth_R = (weights_RS * s_RS).sum(dim=-1) / opacity_R.clamp_min(_MIN_OPACITY)
    depth_R = torch.where(opacity_R > _MIN_OPACITY, depth_R, torch.zeros_like(depth_R))
    return RenderOutput(rgb_R3=rgb_R3, depth_R=depth_R, opacity_R=opacity_R)


@torch.no_grad()
def render_image(field: RadianceField, K_33: Tensor, c2w_44: Tensor, height: int, width: int,
                 num_samples: int = 64, background_rgb: Tensor | float = 1.0,
                 chunk: int = 16384) -> RenderOutput:
    """Render a full (height, width) image without gradients, in chunks of rays.

    Returns a RenderOutput with leading shape (H, W): rgb (H, W, 3), depth (H, W) along the
    ray, opacity (H, W), and z_depth (H, W) along the optical axis (for back-projection with
    K: point = z_depth * K^-1 (u, v, 1)). Samples are at interval midpoints (deterministic).
    """
    device = field.grid.device
    K_133 = torch.as_tensor(K_33, dtype=torch.float32, device=device).reshape(1, 3, 3)
    c2w_144 = torch.as_tensor(c2w_44, dtype=torch.float32, device=device).reshape(1, 4, 4)
    uv_1R2 = pixel_grid(height, width, device=device)[None]
    origins_R3, dirs_R3 = (x[0] for x in rays_from_pixels(K_133, c2w_144, uv_1R2))
    background = torch.as_tensor(background_rgb, dtype=torch.float32, device=device)
    per_ray_background = background.ndim == 2
    parts = []
    for start in range(0, origins_R3.shape[0], chunk):
        stop = start + chunk
        parts.append(render_rays(field, origins_R3[start:stop], dirs_R3[start:stop], num_samples,
                                 background[start:stop] if per_ray_background else background,
                                 randomize=False))
    rgb_R3 = torch.cat([p.rgb_R3 for p in parts])
    depth_R = torch.cat([p.depth_R for p in parts])
    opacity_R = torch.cat([p.opacity_R for p in parts])
    z_depth_R = depth_R * ray_z_scale(K_133, uv_1R2)[0]
    return RenderOutput(rgb_R3=rgb_R3.reshape(height, width, 3), depth_R=depth_R.reshape(height, width),
                        opacity_R=opacity_R.reshape(height, width),
                        z_depth_R=z_depth_R.reshape(height, width))
