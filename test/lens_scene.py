"""Lenses the camera-model tests share: the bundled room seen through plumb_bob k1 = -0.3 and an
equidistant fisheye, the pinhole view undistortion must give back, and a pixel error that
ignores the blur of resampling but not misplaced pixels."""

import cv2
import numpy as np

from nvs_ros.core.image_set import ImageSet
from nvs_ros.io.bundled_scene import FOV_DEG, _setup, render_bundled_scene
from nvs_ros.io.camera_models import CameraModel
from nvs_ros.io.procedural_scene import render_view

SIZE = 96


def plumb_bob_camera(size: int = SIZE) -> CameraModel:
    """The issue's barrel lens: plumb_bob k1 = -0.3 on the bundled scene's 55-degree camera."""
    focal = 0.5 * size / np.tan(np.radians(FOV_DEG) / 2.0)
    K_33 = np.array([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2 + 2.0], [0, 0, 1]])
    return CameraModel.create(K_33, size, size, "plumb_bob", [-0.3, 0.05, 0.001, -0.002, 0.0])


def fisheye_camera(size: int = SIZE) -> CameraModel:
    """An equidistant fisheye with 100 degrees across (r = f theta, corrected by k1..k4)."""
    focal = 0.5 * size / np.radians(50.0)
    K_33 = np.array([[focal, 0, (size - 1) / 2 - 1.5], [0, focal, (size - 1) / 2], [0, 0, 1]])
    return CameraModel.create(K_33, size, size, "equidistant", [-0.02, 0.004, -0.001, 0.0002])


LENSES = {"plumb_bob": plumb_bob_camera, "equidistant": fisheye_camera}


def lens_views(camera: CameraModel, num_views: int = 2) -> ImageSet:
    """The bundled room's first ring views as `camera` records them (distorted)."""
    return render_bundled_scene("room", "ring", num_views=num_views, camera=camera)


def pinhole_views(K_33: np.ndarray, width: int, height: int, num_views: int = 2) -> np.ndarray:
    """The same views as a pinhole camera K_33 sees them: what undistortion must give back."""
    layout, _, c2w_N44 = _setup("room", "ring", num_views, width, 0)
    return np.stack([np.round(render_view(layout.scene, K_33, c2w_44, height, width)[0] * 255.0)
                     for c2w_44 in c2w_N44[:num_views]])


def blurred_error(a_HW3: np.ndarray, b_HW3: np.ndarray, border: int = 2) -> float:
    """Mean absolute difference (0-255) after a Gaussian blur (sigma 1.5 px), a border left out.

    Resampling a noise texture blurs it (a half-pixel shift alone differs by ~10 grey levels
    unblurred); blurred, that shift differs by ~2.5 and a lens ignored by 10 or more."""
    blur = lambda x: cv2.GaussianBlur(np.asarray(x, np.float32), (0, 0), 1.5)  # noqa: E731
    diff_HW3 = np.abs(blur(a_HW3) - blur(b_HW3))
    return float(diff_HW3[border:-border, border:-border].mean())
