"""The bundled default scene: a procedural scene rendered from known cameras.

The product cannot ship other people's images, so it renders its own input: textured analytic
objects (solid noise textures, Lambertian shading, hard shadows), either standing on a floor in
a textured room ("room") or alone on a white background with masks ("object").

World frame: z up, in scene units (think metres). Objects stand on the plane z = 0 within
1.7 units of the z axis ("room": the room's floor; "object": its main object stands on the
origin, the others beside it); the room is the box x, y in [-5, 5], z in [0, 4.5]. Every
camera is aimed at a point on the z axis (the scene centre: z = 0.4 for "room", half the
objects' height for "object"; for "arc", a point as far behind it as the cameras are in
front, so the views stay near-parallel), from 3.0 units away ("room") or far enough for the
objects to fit in the views ("object", 2 to about 3.3 units).
Camera positions use azimuth a (from +x towards +y) and elevation e above the horizon:
centre = target + d (cos e cos a, cos e sin a, sin e).
Poses are camera-to-world, OpenCV camera axes (x right, y down, z forward), image "up" is
world +z. Intrinsics: square pinhole, 55 degrees field of view, principal point at the image
centre, the same for every view.
"""

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np

from nvs_ros.core.cameras import intrinsics_matrix
from nvs_ros.core.image_set import ImageSet
from nvs_ros.io.camera_models import CameraModel, normalized_coordinates
from nvs_ros.io.procedural_scene import (Box, Cylinder, Scene, Shape, Sphere, Surface, render_depth,
                                         render_view)
from nvs_ros.io.solid_texture import SolidTexture, SplitTexture, ValueNoise, random_palette

Variant = Literal["room", "object"]
CameraPath = Literal["ring", "sphere", "arc"]

FOV_DEG = 55.0
"""Horizontal (= vertical) field of view of every bundled camera."""
_RING_ELEVATION_DEG = 25.0
_SPHERE_ELEVATIONS_DEG = (10.0, 70.0)
"""Elevation range of the "sphere" path (looking straight down would make "up" undefined)."""
_ARC_AZIMUTH_DEG = (-90.0, 36.0)
"""Centre and total span of the "arc" path: cameras on the -y side, looking towards +y."""
_ARC_ELEVATION_DEG = (12.0, 4.0)
"""Mean elevation and amplitude of its small up-down wiggle."""
_SUPERSAMPLES_PER_SIDE = 2
"""2 x 2 rays per pixel, averaged: anti-aliasing."""


@dataclass(frozen=True)
class _Layout:
    scene: Scene
    target_3: np.ndarray
    """Point the cameras look at, world coordinates."""
    camera_distance: float
    """Distance of every camera centre from target_3."""


def render_bundled_scene(variant: Variant = "room", path: CameraPath = "ring",
                         num_views: int = 24, size: int = 128, seed: int = 0,
                         camera: CameraModel | None = None) -> ImageSet:
    """Render the bundled scene from `num_views` cameras on `path`, size x size pixels.

    variant: "room" (objects on a floor inside a textured room) or "object" (objects on white,
        with foreground masks).
    path: "ring" (360 degrees at 25 degrees elevation), "sphere" (Fibonacci spiral over
        elevations 10-70 degrees, 360 degrees of azimuth) or "arc" (36 degrees of azimuth, small
        elevation changes, near-parallel views, like a forward-facing hand-held capture).
    seed: the scene's layout, shapes, textures, colours and light (cameras do not depend on it).
        The same arguments give identical images.
    camera: render through this camera, lens included (ray by ray, no resampling), instead of
        the 55-degree pinhole; `size` is then ignored, K_N33 is the camera's K and the images
        are as that camera records them (distorted): test data for io.camera_models.

    Returns an ImageSet with ground-truth poses (see the module docstring for the world frame),
    capture "360" (ring, sphere) or "forward" (arc), and masks for "object".
    """
    layout, K_33, c2w_N44 = _setup(variant, path, num_views, size, seed)
    height = width = size
    pixel_to_xy = None
    if camera is not None:
        height, width, K_33 = camera.height, camera.width, camera.K_33
        pixel_to_xy = functools.partial(normalized_coordinates, camera)
    images_NHW3 = np.empty((num_views, height, width, 3), dtype=np.uint8)
    coverage_NHW = np.empty((num_views, height, width))
    for i, c2w_44 in enumerate(c2w_N44):
        rgb_HW3, coverage_NHW[i] = render_view(layout.scene, K_33, c2w_44, height, width,
                                               _SUPERSAMPLES_PER_SIDE, pixel_to_xy)
        images_NHW3[i] = np.round(rgb_HW3 * 255.0).astype(np.uint8)
    return ImageSet(
        names=[f"view_{i:03d}.png" for i in range(num_views)],
        images_NHW3=images_NHW3,
        K_N33=np.tile(K_33, (num_views, 1, 1)),
        masks_NHW=coverage_NHW >= 0.5 if variant == "object" else None,
        c2w_N44=c2w_N44,
        capture="forward" if path == "arc" else "360",
        source=f"bundled:{variant}/{path}/views={num_views}/size={size}/seed={seed}"
               + (f"/camera={camera.describe()}" if camera is not None else ""),
    )


def render_bundled_depth(variant: Variant = "room", path: CameraPath = "ring",
                         num_views: int = 24, size: int = 128, seed: int = 0) -> np.ndarray:
    """Ground-truth depth (N, H, W) float64 of the views `render_bundled_scene` makes with the
    same arguments: distance along each optical axis (camera z, scene units) of the surface
    seen through each pixel centre; inf where no surface is hit (background of "object")."""
    layout, K_33, c2w_N44 = _setup(variant, path, num_views, size, seed)
    return np.stack([render_depth(layout.scene, K_33, c2w_44, size, size) for c2w_44 in c2w_N44])


def _setup(variant: str, path: str, num_views: int, size: int,
           seed: int) -> tuple[_Layout, np.ndarray, np.ndarray]:
    if variant not in ("room", "object"):
        raise ValueError(f"variant must be 'room' or 'object', got {variant!r}")
    if path not in ("ring", "sphere", "arc"):
        raise ValueError(f"path must be 'ring', 'sphere' or 'arc', got {path!r}")
    if num_views < 1 or size < 8:
        raise ValueError(f"need num_views >= 1 and size >= 8, got {num_views} and {size}")
    rng = np.random.default_rng(seed)
    layout = _room_layout(rng) if variant == "room" else _object_layout(rng)
    return layout, _intrinsics(size), _camera_path(path, num_views, layout.target_3, layout.camera_distance)


def _intrinsics(size: int) -> np.ndarray:
    focal = 0.5 * size / np.tan(np.radians(FOV_DEG) / 2.0)
    centre = (size - 1) / 2.0  # OpenCV pixel centres: the image centre is at (size - 1) / 2
    return intrinsics_matrix(focal, focal, centre, centre)


# ----------------------------------------------------------------------------- cameras

def _camera_path(path: str, num_views: int, target_3: np.ndarray, distance: float) -> np.ndarray:
    """Camera-to-world poses (N, 4, 4), OpenCV axes, of the cameras on `path`."""
    index_N = np.arange(num_views)
    if path == "ring":
        azimuth_N = 2.0 * np.pi * index_N / num_views
        elevation_N = np.full(num_views, np.radians(_RING_ELEVATION_DEG))
    elif path == "sphere":
        # Fibonacci spiral: equal-area steps in sin(elevation), golden-angle steps in azimuth.
        low, high = np.sin(np.radians(_SPHERE_ELEVATIONS_DEG))
        elevation_N = np.arcsin(low + (high - low) * (index_N + 0.5) / num_views)
        azimuth_N = index_N * np.pi * (3.0 - np.sqrt(5.0))
    else:
        t_N = np.linspace(-1.0, 1.0, num_views) if num_views > 1 else np.zeros(1)
        azimuth_N = np.radians(_ARC_AZIMUTH_DEG[0] + 0.5 * _ARC_AZIMUTH_DEG[1] * t_N)
        elevation_N = np.radians(_ARC_ELEVATION_DEG[0] + _ARC_ELEVATION_DEG[1] * np.sin(3.0 * np.pi * t_N))
    centres_N3 = target_3 + distance * _direction(azimuth_N, elevation_N)
    if path == "arc":
        # Aim at a point as far behind the target as the cameras are in front of it: the views
        # converge only slightly, as in forward-facing (LLFF-style) captures.
        middle_3 = _direction(np.radians(_ARC_AZIMUTH_DEG[0]), np.radians(_ARC_ELEVATION_DEG[0]))
        target_3 = target_3 - distance * middle_3
    return np.stack([_look_at(centre_3, target_3) for centre_3 in centres_N3])


def _direction(azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                     np.sin(elevation) * np.ones_like(azimuth)], axis=-1)


def _look_at(eye_3: np.ndarray, target_3: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world at eye_3 looking at target_3, image up = world +z."""
    forward_3 = (target_3 - eye_3) / np.linalg.norm(target_3 - eye_3)
    right_3 = np.cross(forward_3, (0.0, 0.0, 1.0))
    right_3 /= np.linalg.norm(right_3)
    c2w_44 = np.eye(4)
    c2w_44[:3, :3] = np.stack([right_3, np.cross(forward_3, right_3), forward_3], axis=1)
    c2w_44[:3, 3] = eye_3
    return c2w_44


# ----------------------------------------------------------------------------- scenes

def _room_layout(rng: np.random.Generator) -> _Layout:
    noise = ValueNoise(rng)
    # One box seen from inside, its floor (z = 0) paler than the objects so that they stand out.
    room = Box(np.array([0.0, 0.0, 2.25]), np.array([5.0, 5.0, 2.25]), inside=True)
    # They fill most of each view, so they get the pattern with the most SIFT matches (bands).
    floor_and_walls = SplitTexture(below=_texture(rng, 1.35, ("bands",), (0.3, 0.7)),
                                   above=_texture(rng, 1.05, ("bands",), (0.3, 0.7)), split_z=1e-6)
    surfaces = [Surface(room, floor_and_walls, casts_shadow=False)]
    for xy_2, radius in _scatter_footprints(rng, int(rng.integers(5, 8)), max_radius=1.7):
        surfaces += [Surface(shape, _texture(rng, rng.uniform(2.5, 4.0)))
                     for shape in _standing_object(rng, xy_2, radius)]
    return _Layout(Scene(surfaces, noise, _light_direction(rng), ambient=0.5),
                   target_3=np.array([0.0, 0.0, 0.4]), camera_distance=3.0)


def _object_layout(rng: np.random.Generator) -> _Layout:
    noise = ValueNoise(rng)
    main_radius = rng.uniform(0.4, 0.55)
    shapes = _standing_object(rng, np.zeros(2), main_radius)
    for _ in range(int(rng.integers(0, 3))):
        radius = rng.uniform(0.18, 0.3)
        azimuth = rng.uniform(0.0, 2.0 * np.pi)
        xy_2 = (main_radius + radius + 0.03) * np.array([np.cos(azimuth), np.sin(azimuth)])
        shapes += _standing_object(rng, xy_2, radius)
    # Palettes stay below white so the object never blends into the background.
    surfaces = [Surface(shape, _texture(rng, rng.uniform(2.5, 4.0), max_value=0.9)) for shape in shapes]
    target_3 = np.array([0.0, 0.0, 0.5 * max(_top(shape) for shape in shapes)])
    # Far enough that a sphere around all objects fits in the view cone with a margin (the
    # "arc" views, aimed behind the objects, see them up to ~10 degrees off-axis), and not so
    # close that a single small object fills the views.
    extent = max(_farthest_distance(shape, target_3) for shape in shapes)
    distance = max(2.0, 1.25 * extent / np.sin(np.radians(FOV_DEG) / 2.0))
    return _Layout(Scene(surfaces, noise, _light_direction(rng), ambient=0.5), target_3, distance)


def _scatter_footprints(rng: np.random.Generator, count: int,
                        max_radius: float) -> list[tuple[np.ndarray, float]]:
    """Up to `count` non-overlapping discs (centre xy, radius) inside a disc of max_radius."""
    discs: list[tuple[np.ndarray, float]] = []
    for _ in range(500):
        if len(discs) == count:
            break
        radius = rng.uniform(0.22, 0.45)
        xy_2 = rng.uniform(-max_radius, max_radius, 2)
        if np.linalg.norm(xy_2) + radius > max_radius:
            continue
        if all(np.linalg.norm(xy_2 - other_2) > radius + other + 0.1 for other_2, other in discs):
            discs.append((xy_2, radius))
    return discs


def _standing_object(rng: np.random.Generator, xy_2: np.ndarray, radius: float) -> list[Shape]:
    """A sphere, box or cylinder standing on z = 0 within a footprint disc; boxes and cylinders
    sometimes carry a sphere on top."""
    kind = str(rng.choice(["sphere", "box", "cylinder"]))
    if kind == "sphere":
        return [Sphere(np.array([*xy_2, radius]), radius)]
    height = rng.uniform(0.3, 1.0)
    if kind == "box":
        half_xy_2 = radius / np.sqrt(2.0) * rng.uniform(0.7, 1.0, 2)
        shapes: list[Shape] = [Box(np.array([*xy_2, height / 2]), np.array([*half_xy_2, height / 2]),
                                   yaw_rad=rng.uniform(0.0, np.pi / 2))]
        ball_radius = 0.9 * half_xy_2.min()
    else:
        cylinder_radius = radius * rng.uniform(0.7, 1.0)
        shapes = [Cylinder(xy_2.copy(), cylinder_radius, 0.0, height)]
        ball_radius = 0.9 * cylinder_radius
    if rng.uniform() < 0.4:
        shapes.append(Sphere(np.array([*xy_2, height + ball_radius]), ball_radius))
    return shapes


def _farthest_distance(shape: Shape, point_3: np.ndarray) -> float:
    """Distance from point_3 to the farthest point of the shape."""
    if isinstance(shape, Sphere):
        return float(np.linalg.norm(shape.centre_3 - point_3) + shape.radius)
    if isinstance(shape, Box):
        return float(np.linalg.norm(shape.corners() - point_3, axis=1).max())
    rim_xy = np.linalg.norm(shape.centre_xy - point_3[:2]) + shape.radius
    return float(max(np.hypot(rim_xy, z - point_3[2]) for z in (shape.z_min, shape.z_max)))


def _top(shape: Shape) -> float:
    if isinstance(shape, Sphere):
        return float(shape.centre_3[2] + shape.radius)
    if isinstance(shape, Box):
        return float(shape.centre_3[2] + shape.half_3[2])
    return shape.z_max


def _texture(rng: np.random.Generator, frequency: float,
             styles: tuple[str, ...] = ("bands", "mosaic", "spots"),
             saturation: tuple[float, float] = (0.5, 1.0), max_value: float = 1.0) -> SolidTexture:
    return SolidTexture(style=str(rng.choice(styles)),
                        palette_K3=random_palette(rng, 6, saturation, max_value),
                        frequency=frequency, offset_3=rng.uniform(-500.0, 500.0, 3))


def _light_direction(rng: np.random.Generator) -> np.ndarray:
    return _direction(rng.uniform(0.0, 2.0 * np.pi), np.radians(rng.uniform(50.0, 65.0)))
