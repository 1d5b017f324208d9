"""A tiny vectorised ray caster: analytic primitives, solid textures, Lambertian shading.

Rays are origins (R, 3) and directions (R, 3) in world coordinates. Directions need not be unit
length: a hit distance t is in units of the direction's length, so for the camera rays made
here (z = 1 in the camera frame) t is the depth along the optical axis. Shading is view
independent (Lambertian + ambient, hard shadows from one directional light), as NeRF and SfM
assume.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nvs_ros.io.solid_texture import SolidTexture, SplitTexture, ValueNoise, linear_map

PixelToXY = Callable[[np.ndarray], np.ndarray]
"""Pixel positions (P, 2) -> camera-frame ray (x, y) at z = 1, (P, 2): a camera with a lens."""
_T_MIN = 1e-9
"""Hits closer than this (in direction lengths) are ignored: avoids self-hits."""
_SHADOW_OFFSET = 1e-4
"""Shadow rays start this far (scene units) off the surface, along the normal."""


@dataclass(frozen=True)
class Sphere:
    centre_3: np.ndarray
    radius: float

    def intersect(self, origins_R3: np.ndarray, dirs_R3: np.ndarray) -> np.ndarray:
        """Nearest hit distance t > 0 per ray (R,), inf where missed."""
        oc_R3 = origins_R3 - self.centre_3
        a_R = np.einsum("ij,ij->i", dirs_R3, dirs_R3)
        b_R = np.einsum("ij,ij->i", oc_R3, dirs_R3)
        c_R = np.einsum("ij,ij->i", oc_R3, oc_R3) - self.radius ** 2
        disc_R = b_R * b_R - a_R * c_R
        root_R = np.sqrt(np.maximum(disc_R, 0.0))
        near_R, far_R = (-b_R - root_R) / a_R, (-b_R + root_R) / a_R
        t_R = np.where(near_R > _T_MIN, near_R, far_R)
        return np.where((disc_R >= 0.0) & (t_R > _T_MIN), t_R, np.inf)

    def normals(self, points_R3: np.ndarray) -> np.ndarray:
        """Unit outward normals (R, 3) at surface points."""
        return (points_R3 - self.centre_3) / self.radius

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        return self.centre_3, self.radius


@dataclass(frozen=True)
class Box:
    """A box turned by `yaw_rad` about the world z axis. `inside=True` is a room: rays from
    inside hit its walls and normals point inwards."""

    centre_3: np.ndarray
    half_3: np.ndarray
    yaw_rad: float = 0.0
    inside: bool = False

    def _rotation_33(self) -> np.ndarray:
        c, s = np.cos(self.yaw_rad), np.sin(self.yaw_rad)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    def bounding_sphere(self) -> tuple[np.ndarray, float] | None:
        return None if self.inside else (self.centre_3, float(np.linalg.norm(self.half_3)))

    def corners(self) -> np.ndarray:
        """The 8 corners (8, 3), world coordinates."""
        signs_83 = np.array(np.meshgrid([-1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0])).reshape(3, 8).T
        return self.centre_3 + (signs_83 * self.half_3) @ self._rotation_33().T

    def intersect(self, origins_R3: np.ndarray, dirs_R3: np.ndarray) -> np.ndarray:
        """Nearest hit distance t > 0 per ray (R,), inf where missed (slab test in the box frame)."""
        rotation_33 = self._rotation_33()
        local_o_R3 = linear_map(origins_R3 - self.centre_3, rotation_33.T)
        local_d_R3 = linear_map(dirs_R3, rotation_33.T)
        t_enter_R = np.full(len(origins_R3), -np.inf)
        t_exit_R = np.full(len(origins_R3), np.inf)
        for axis in range(3):
            d_R = local_d_R3[:, axis]
            # A zero component would give 0 * inf = nan below; a tiny one gives the right +-inf.
            inv_d_R = 1.0 / np.copysign(np.maximum(np.abs(d_R), 1e-12), d_R)
            t_lo_R = (-self.half_3[axis] - local_o_R3[:, axis]) * inv_d_R
            t_hi_R = (self.half_3[axis] - local_o_R3[:, axis]) * inv_d_R
            np.maximum(t_enter_R, np.minimum(t_lo_R, t_hi_R), out=t_enter_R)
            np.minimum(t_exit_R, np.maximum(t_lo_R, t_hi_R), out=t_exit_R)
        t_R = t_exit_R if self.inside else t_enter_R
        return np.where((t_enter_R <= t_exit_R) & (t_R > _T_MIN), t_R, np.inf)

    def normals(self, points_R3: np.ndarray) -> np.ndarray:
        """Unit normals (R, 3) at surface points: outward, or inward for a room."""
        rotation_33 = self._rotation_33()
        local_R3 = linear_map(points_R3 - self.centre_3, rotation_33.T) / self.half_3
        axis_R = np.abs(local_R3).argmax(axis=1)
        normals_R3 = np.zeros_like(local_R3)
        rows_R = np.arange(len(local_R3))
        normals_R3[rows_R, axis_R] = np.sign(local_R3[rows_R, axis_R])
        if self.inside:
            normals_R3 = -normals_R3
        return linear_map(normals_R3, rotation_33)


@dataclass(frozen=True)
class Cylinder:
    """A capped cylinder with a vertical (world z) axis through `centre_xy`, from z_min to z_max."""

    centre_xy: np.ndarray
    radius: float
    z_min: float
    z_max: float

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        half_height = 0.5 * (self.z_max - self.z_min)
        centre_3 = np.array([*self.centre_xy, self.z_min + half_height])
        return centre_3, float(np.hypot(self.radius, half_height))

    def intersect(self, origins_R3: np.ndarray, dirs_R3: np.ndarray) -> np.ndarray:
        """Nearest hit distance t > 0 per ray (R,), inf where missed (side and both caps)."""
        oxy_R2 = origins_R3[:, :2] - self.centre_xy
        dxy_R2 = dirs_R3[:, :2]
        a_R = np.einsum("ij,ij->i", dxy_R2, dxy_R2)
        b_R = np.einsum("ij,ij->i", oxy_R2, dxy_R2)
        c_R = np.einsum("ij,ij->i", oxy_R2, oxy_R2) - self.radius ** 2
        disc_R = b_R * b_R - a_R * c_R
        with np.errstate(divide="ignore", invalid="ignore"):
            side_R = (-b_R - np.sqrt(np.maximum(disc_R, 0.0))) / a_R
        side_z_R = origins_R3[:, 2] + side_R * dirs_R3[:, 2]
        side_ok_R = ((disc_R >= 0) & (a_R > 0) & (side_R > _T_MIN)
                     & (side_z_R >= self.z_min) & (side_z_R <= self.z_max))
        t_R = np.where(side_ok_R, side_R, np.inf)
        dz_R = np.copysign(np.maximum(np.abs(dirs_R3[:, 2]), 1e-12), dirs_R3[:, 2])
        for z_cap in (self.z_min, self.z_max):
            cap_R = (z_cap - origins_R3[:, 2]) / dz_R
            cap_xy_R2 = oxy_R2 + cap_R[:, None] * dxy_R2
            cap_ok_R = (cap_R > _T_MIN) & (np.einsum("ij,ij->i", cap_xy_R2, cap_xy_R2) <= self.radius ** 2)
            t_R = np.minimum(t_R, np.where(cap_ok_R, cap_R, np.inf))
        return t_R

    def normals(self, points_R3: np.ndarray) -> np.ndarray:
        """Unit outward normals (R, 3): radial on the side, +-z on the caps (the nearest surface)."""
        radial_R2 = points_R3[:, :2] - self.centre_xy
        rho_R = np.linalg.norm(radial_R2, axis=1)
        off_side_R = np.abs(rho_R - self.radius)
        off_top_R = np.abs(points_R3[:, 2] - self.z_max)
        off_bottom_R = np.abs(points_R3[:, 2] - self.z_min)
        normals_R3 = np.zeros_like(points_R3)
        normals_R3[:, :2] = radial_R2 / np.maximum(rho_R, 1e-12)[:, None]
        top_R = (off_top_R < off_side_R) & (off_top_R <= off_bottom_R)
        bottom_R = (off_bottom_R < off_side_R) & ~top_R
        normals_R3[top_R] = (0.0, 0.0, 1.0)
        normals_R3[bottom_R] = (0.0, 0.0, -1.0)
        return normals_R3


Shape = Sphere | Box | Cylinder


@dataclass(frozen=True)
class Surface:
    shape: Shape
    texture: SolidTexture | SplitTexture
    casts_shadow: bool = True


@dataclass(frozen=True)
class Scene:
    """Textured surfaces lit by one directional light plus ambient light."""

    surfaces: list[Surface]
    noise: ValueNoise
    light_dir_3: np.ndarray
    """Unit vector from the scene towards the light."""
    ambient: float = 0.4
    """Fraction of light that reaches every surface, shadowed or not."""
    background_3: np.ndarray = field(default_factory=lambda: np.ones(3))
    """RGB in [0, 1] of rays that hit nothing."""

    def trace(self, origins_R3: np.ndarray, dirs_R3: np.ndarray,
              shadow_casters_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Nearest hit per ray: distance t (R,) (inf if none) and surface index (R,) (-1 if none)."""
        t_R = np.full(len(origins_R3), np.inf)
        index_R = np.full(len(origins_R3), -1)
        dd_R = np.einsum("ij,ij->i", dirs_R3, dirs_R3)
        for i, surface in enumerate(self.surfaces):
            if shadow_casters_only and not surface.casts_shadow:
                continue
            bounds = surface.shape.bounding_sphere()
            if bounds is None:
                rays_C = np.arange(len(origins_R3))
            else:  # exact tests only for the rays that pass the bounding sphere (most miss it)
                rays_C = np.flatnonzero(_may_hit_sphere(*bounds, origins_R3, dirs_R3, dd_R))
            t_surface_C = surface.shape.intersect(origins_R3[rays_C], dirs_R3[rays_C])
            closer_C = t_surface_C < t_R[rays_C]
            t_R[rays_C[closer_C]] = t_surface_C[closer_C]
            index_R[rays_C[closer_C]] = i
        return t_R, index_R

    def shade(self, origins_R3: np.ndarray, dirs_R3: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Colour (R, 3) in [0, 1], hit distance t (R,) and surface index (R,) (-1: background)."""
        t_R, index_R = self.trace(origins_R3, dirs_R3)
        rgb_R3 = np.tile(self.background_3, (len(t_R), 1))
        hit_R = index_R >= 0
        points_H3 = origins_R3[hit_R] + t_R[hit_R, None] * dirs_R3[hit_R]
        normals_H3 = np.zeros_like(points_H3)
        albedo_H3 = np.zeros_like(points_H3)
        for i, surface in enumerate(self.surfaces):
            on_surface_H = index_R[hit_R] == i
            normals_H3[on_surface_H] = surface.shape.normals(points_H3[on_surface_H])
            albedo_H3[on_surface_H] = surface.texture.colour(points_H3[on_surface_H], self.noise)
        rgb_R3[hit_R] = albedo_H3 * self._irradiance(points_H3, normals_H3)[:, None]
        return np.clip(rgb_R3, 0.0, 1.0), t_R, index_R

    def _irradiance(self, points_H3: np.ndarray, normals_H3: np.ndarray) -> np.ndarray:
        cos_H = np.clip(np.einsum("ij,j->i", normals_H3, self.light_dir_3), 0.0, None)  # no BLAS threads
        facing_H = cos_H > 0
        shadow_origins_F3 = points_H3[facing_H] + _SHADOW_OFFSET * normals_H3[facing_H]
        shadow_dirs_F3 = np.broadcast_to(self.light_dir_3, shadow_origins_F3.shape)
        blocked_F = self.trace(shadow_origins_F3, shadow_dirs_F3, shadow_casters_only=True)[1] >= 0
        lit_H = np.zeros(len(points_H3))
        lit_H[facing_H] = np.where(blocked_F, 0.0, cos_H[facing_H])
        return self.ambient + (1.0 - self.ambient) * lit_H


def _may_hit_sphere(centre_3: np.ndarray, radius: float, origins_R3: np.ndarray, dirs_R3: np.ndarray,
                    dd_R: np.ndarray) -> np.ndarray:
    """Whether each ray meets the sphere ahead of its origin (R,) bool; dd_R = |dirs|^2."""
    oc_R3 = origins_R3 - centre_3
    b_R = np.einsum("ij,ij->i", oc_R3, dirs_R3)
    c_R = np.einsum("ij,ij->i", oc_R3, oc_R3) - radius ** 2
    return (b_R * b_R >= dd_R * c_R) & ((b_R < 0.0) | (c_R < 0.0))


def camera_rays(K_33: np.ndarray, c2w_44: np.ndarray, height: int, width: int,
                samples_per_side: int = 1, pixel_to_xy: PixelToXY | None = None) -> tuple[np.ndarray, np.ndarray]:
    """World rays of a pinhole camera (zero skew; OpenCV axes and pixel convention), s x s per pixel.

    pixel_to_xy: a camera with a lens instead, as the map from pixel positions (P, 2) to the
    camera-frame (x, y) of their rays at z = 1 (K_33 is then unused).

    Returns origins and directions (H * W * s * s, 3), pixel-major (reshape to (H, W, s*s, 3));
    sub-samples sit on a regular grid centred on the pixel centre (u, v). Directions have camera
    z = 1, so hit distances are depths along the optical axis.
    """
    offsets_S = (np.arange(samples_per_side) + 0.5) / samples_per_side - 0.5
    u_W = (np.arange(width)[:, None] + offsets_S).ravel()  # sub-sample columns, left to right
    v_H = (np.arange(height)[:, None] + offsets_S).ravel()
    s = samples_per_side
    # Camera-frame directions (x, y, 1) on the (H*s, W*s) sub-sample grid, then pixel-major.
    if pixel_to_xy is None:
        x_HsWs = np.broadcast_to((u_W - K_33[0, 2]) / K_33[0, 0], (height * s, width * s))
        y_HsWs = np.broadcast_to(((v_H - K_33[1, 2]) / K_33[1, 1])[:, None], (height * s, width * s))
    else:
        uv_P2 = np.stack(np.broadcast_arrays(u_W[None, :], v_H[:, None]), axis=-1).reshape(-1, 2)
        x_HsWs, y_HsWs = pixel_to_xy(uv_P2).reshape(height * s, width * s, 2).transpose(2, 0, 1)
    xy1_HsWs3 = np.stack([x_HsWs, y_HsWs, np.ones((height * s, width * s))], axis=-1)
    dirs_cam_R3 = xy1_HsWs3.reshape(height, s, width, s, 3).transpose(0, 2, 1, 3, 4).reshape(-1, 3)
    dirs_R3 = linear_map(dirs_cam_R3, c2w_44[:3, :3])
    origins_R3 = np.broadcast_to(c2w_44[:3, 3], dirs_R3.shape)
    return np.ascontiguousarray(origins_R3), dirs_R3


def render_view(scene: Scene, K_33: np.ndarray, c2w_44: np.ndarray, height: int, width: int,
                samples_per_side: int = 2, pixel_to_xy: PixelToXY | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased colour (H, W, 3) in [0, 1] and foreground coverage (H, W) in [0, 1];
    `pixel_to_xy`: a lens, as in `camera_rays`.

    Shading and the sub-sample average are in linear light; the colour returned is display
    encoded (gamma 1 / 2.2), which keeps shadowed and dark texture regions readable.
    """
    origins_R3, dirs_R3 = camera_rays(K_33, c2w_44, height, width, samples_per_side, pixel_to_xy)
    rgb_R3, _, index_R = scene.shade(origins_R3, dirs_R3)
    samples = samples_per_side * samples_per_side
    rgb_HW3 = rgb_R3.reshape(height, width, samples, 3).mean(axis=2) ** (1.0 / 2.2)
    coverage_HW = (index_R >= 0).reshape(height, width, samples).mean(axis=2)
    return rgb_HW3, coverage_HW


def render_depth(scene: Scene, K_33: np.ndarray, c2w_44: np.ndarray, height: int, width: int) -> np.ndarray:
    """Depth along the optical axis (H, W) through each pixel centre, inf where nothing is hit."""
    origins_R3, dirs_R3 = camera_rays(K_33, c2w_44, height, width, 1)
    return scene.trace(origins_R3, dirs_R3)[0].reshape(height, width)
