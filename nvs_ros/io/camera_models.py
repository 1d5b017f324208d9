"""Camera models: the lenses of ROS CameraInfo and camera_calibration files, and their undistortion.

Every image enters through here (the node's CameraInfo, bags, image folders): a `CameraModel`
describes the images as they arrive, `undistorter(camera)` turns them into a pinhole camera, and
everything downstream sees pinhole images only.

Lenses (sensor_msgs/distortion_models.hpp names; D in ROS's and OpenCV's order):
- "pinhole": no distortion (any model whose D is all zero, or empty, is this one),
- "plumb_bob": k1 k2 p1 p2 k3 (Brown-Conrady; 4 coefficients are read as k3 = 0),
- "rational_polynomial": k1 k2 p1 p2 k3 k4 k5 k6,
- "equidistant": k1 k2 k3 k4 (fisheye, OpenCV's cv2.fisheye model).
Undistortion uses OpenCV's maps as ROS's image_geometry does (`initUndistortRectifyMap`, or its
fisheye twin), computed once per camera (`undistorter` is cached) and applied with `cv2.remap`.
The output keeps the image size; its intrinsics are chosen so that only valid pixels remain
(`getOptimalNewCameraMatrix` alpha = 0; fisheye: `estimateNewCameraMatrixForUndistortRectify`
balance = 0). CameraInfo's R (stereo rectification) is not applied: poses are of the camera's
own optical frame (header.frame_id), not of a rectified stereo frame.

REP 104: K, D and P describe the full-resolution sensor; the image is its `roi` (full-resolution
pixels; width = height = 0 means the whole sensor), then binned by `binning_x` x `binning_y`
(0 and 1: none). The camera of the image as published is therefore K with the principal point
moved by the ROI offset, then scaled by 1 / binning (in the pixel-centre convention of
core.cameras, where image_geometry scales cx by 1 / binning; the two differ by (b - 1) / 2b px).
Images on an `image_rect*` topic (image_proc's output) are already undistorted with P's
intrinsics, whatever D says (image_proc publishes the raw camera's CameraInfo beside them): P is
used and nothing is remapped.
"""

import functools
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from nvs_ros.core.cameras import scale_intrinsics
from nvs_ros.io.errors import CameraModelError, UncalibratedCameraError

Lens = Literal["pinhole", "plumb_bob", "rational_polynomial", "equidistant"]
COEFFICIENT_COUNTS: dict[str, tuple[int, ...]] = {
    "pinhole": (0,), "plumb_bob": (4, 5), "rational_polynomial": (8,), "equidistant": (4,)}
"""How many coefficients D may hold for each lens."""
RECTIFIED_TOPIC_PREFIX = "image_rect"
"""image_proc names its undistorted outputs image_rect and image_rect_color."""


@dataclass(frozen=True)
class UndistortConfig:
    """How images are brought to a pinhole camera."""

    valid_pixels_only: bool = True
    """True: the new intrinsics zoom in until every output pixel sees the raw image (alpha /
    balance 0); False: they keep the whole raw field of view (alpha / balance 1) and the
    border outside it is filled from the nearest raw pixel."""
    interpolation: Literal["linear", "cubic"] = "linear"
    """cv2.remap's interpolation; linear is image_geometry's default."""


@dataclass(frozen=True)
class CameraModel:
    """The camera of the images as they arrive: size, intrinsics (OpenCV pixel convention) and lens.

    Fields are tuples so that a camera is hashable: equal cameras share one undistorter.
    """

    width: int
    height: int
    k: tuple[float, ...]
    """K, 9 numbers, row-major."""
    lens: Lens = "pinhole"
    d: tuple[float, ...] = ()
    """Distortion coefficients in `lens`'s order; empty for "pinhole"."""

    def __post_init__(self) -> None:
        if self.lens not in COEFFICIENT_COUNTS:
            raise CameraModelError(f"distortion model {self.lens!r} is not supported; "
                                   f"supported: {', '.join(COEFFICIENT_COUNTS)}")
        if len(self.d) not in COEFFICIENT_COUNTS[self.lens]:
            raise CameraModelError(f"{self.lens} takes {' or '.join(map(str, COEFFICIENT_COUNTS[self.lens]))} "
                                   f"distortion coefficients, got {len(self.d)}: {list(self.d)}")
        K_33 = self.K_33
        if self.width <= 0 or self.height <= 0:
            raise CameraModelError(f"a camera needs an image size, got {self.width}x{self.height}")
        if not (np.isfinite(K_33).all() and np.isfinite(self.d).all() and K_33[0, 0] > 0 and K_33[1, 1] > 0
                and np.allclose(K_33[2], [0.0, 0.0, 1.0])):
            raise CameraModelError(f"not a pinhole matrix with positive focal lengths: {K_33.tolist()}")

    @classmethod
    def create(cls, K_33: np.ndarray, width: int, height: int, lens: str = "pinhole",
               D: Any = ()) -> "CameraModel":
        """A camera from arrays; a lens whose coefficients are all zero is "pinhole"."""
        D_C = np.asarray(D, dtype=np.float64).ravel()
        if not np.any(D_C != 0) and not np.isnan(D_C).any():
            lens, D_C = "pinhole", D_C[:0]
        return cls(int(width), int(height), tuple(float(v) for v in np.asarray(K_33, dtype=np.float64).ravel()),
                   lens, tuple(float(v) for v in D_C))

    @property
    def K_33(self) -> np.ndarray:
        return np.array(self.k, dtype=np.float64).reshape(3, 3)

    @property
    def D(self) -> np.ndarray:
        return np.array(self.d, dtype=np.float64)

    @property
    def distorted(self) -> bool:
        return self.lens != "pinhole"

    def resized(self, height: int, width: int) -> "CameraModel":
        """The same camera at another resolution (a resize node, a downscaled file): K scaled, D
        kept (it acts on normalised coordinates)."""
        if (height, width) == (self.height, self.width):
            return self
        K_33 = scale_intrinsics(self.K_33, width / self.width, height / self.height)
        return CameraModel.create(K_33, width, height, self.lens, self.d)

    def describe(self) -> str:
        """One line for logs and diagnostics."""
        K_33 = self.K_33
        text = (f"{self.width}x{self.height} fx {K_33[0, 0]:.1f} fy {K_33[1, 1]:.1f} "
                f"cx {K_33[0, 2]:.1f} cy {K_33[1, 2]:.1f}, {self.lens}")
        return text + (f" D = [{', '.join(f'{v:.4g}' for v in self.d)}]" if self.d else "")


def is_rectified_topic(image_topic: str) -> bool:
    """True for image_proc's undistorted outputs (`.../image_rect`, `.../image_rect_color`,
    also with `/compressed`)."""
    return image_topic.removesuffix("/compressed").rsplit("/", 1)[-1].startswith(RECTIFIED_TOPIC_PREFIX)


def camera_from_info(info: Any, *, rectified: bool = False) -> CameraModel:
    """The camera of the images that come with a sensor_msgs/CameraInfo (rclpy or rosbags
    message; anything with its fields). `rectified`: the images are on an image_rect topic.

    Raises UncalibratedCameraError when K[0] = 0, CameraModelError for anything else unusable.
    """
    K_33 = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    if K_33[0, 0] == 0:
        raise UncalibratedCameraError("CameraInfo is uncalibrated (K[0] = 0: the camera driver has no "
                                      "calibration file)")
    lens, D = str(info.distortion_model), np.asarray(info.d, dtype=np.float64)
    if rectified:
        P_34 = np.asarray(info.p, dtype=np.float64).reshape(3, 4)
        if P_34[0, 0] > 0:  # some drivers leave P zero; then K describes the rectified images too
            K_33 = P_34[:, :3].copy()
        lens, D = "pinhole", D[:0]
    width, height = int(info.width), int(info.height)
    roi = info.roi
    if roi.width and roi.height and (roi.x_offset or roi.y_offset or (roi.width, roi.height) != (width, height)):
        K_33[0, 2] -= roi.x_offset
        K_33[1, 2] -= roi.y_offset
        width, height = int(roi.width), int(roi.height)
    binning_x, binning_y = max(1, int(info.binning_x)), max(1, int(info.binning_y))
    if binning_x > 1 or binning_y > 1:
        K_33 = scale_intrinsics(K_33, 1.0 / binning_x, 1.0 / binning_y)
        width, height = width // binning_x, height // binning_y
    return CameraModel.create(K_33, width, height, lens or "pinhole", D)


def camera_from_calibration(data: dict) -> CameraModel:
    """A camera from a camera.yaml as camera_calibration writes it (`image_width`, `image_height`,
    `camera_matrix`, `distortion_model`, `distortion_coefficients`), or from a CameraInfo dump
    (`width`, `height`, `k`, `distortion_model`, `d`). CameraModelError if it is neither."""
    try:
        if "camera_matrix" in data:
            K_C = data["camera_matrix"]["data"]
            width, height = data["image_width"], data["image_height"]
            D_C = (data.get("distortion_coefficients") or {}).get("data") or []
        else:
            K_C, width, height, D_C = data["k"], data["width"], data["height"], data.get("d") or []
        K_33 = np.array(K_C, dtype=np.float64).reshape(3, 3)
        lens = data.get("distortion_model") or "plumb_bob"  # camera_calibration's default
        return CameraModel.create(K_33, int(width), int(height), str(lens), D_C)
    except (TypeError, KeyError, ValueError, AttributeError) as err:
        raise CameraModelError(f"not a camera calibration: {err!r}") from err


class Undistorter:
    """Remaps images of one camera to a pinhole camera `K_33` of the same size (maps built once)."""

    def __init__(self, camera: CameraModel, config: UndistortConfig = UndistortConfig()) -> None:
        self.camera = camera
        size = (camera.width, camera.height)
        share = 0.0 if config.valid_pixels_only else 1.0  # OpenCV's alpha / balance
        K_33, D = camera.K_33, camera.D
        if not camera.distorted:
            self.K_33, self._maps = K_33, None
            self.valid_fraction = 1.0
            return
        if camera.lens == "equidistant":
            K_new = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
                K_33, D, size, np.eye(3), balance=share, new_size=size)
            map_x, map_y = cv2.fisheye.initUndistortRectifyMap(K_33, D, np.eye(3), K_new, size, cv2.CV_32FC1)
        else:
            K_new, _ = cv2.getOptimalNewCameraMatrix(K_33, D, size, share, size)
            map_x, map_y = cv2.initUndistortRectifyMap(K_33, D, None, K_new, size, cv2.CV_32FC1)
        self.K_33 = np.asarray(K_new, dtype=np.float64)
        inside_HW = ((map_x >= -0.5) & (map_x <= camera.width - 0.5)
                     & (map_y >= -0.5) & (map_y <= camera.height - 0.5))
        self.valid_fraction = float(inside_HW.mean())
        """Share of output pixels that see the raw image (about 1 with valid_pixels_only)."""
        # Fixed-point maps: what image_geometry uses, about twice as fast to apply.
        self._maps = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
        self._interpolation = cv2.INTER_CUBIC if config.interpolation == "cubic" else cv2.INTER_LINEAR

    def __call__(self, image_HWC: np.ndarray) -> np.ndarray:
        """The image (H, W[, C], any dtype cv2.remap takes) as the pinhole camera K_33 sees it."""
        if image_HWC.shape[:2] != (self.camera.height, self.camera.width):
            raise CameraModelError(f"the camera is {self.camera.width}x{self.camera.height}, "
                                   f"the image {image_HWC.shape[1]}x{image_HWC.shape[0]}")
        if self._maps is None:
            return image_HWC
        # Replicate, not black: alpha = 0 leaves at most a sliver of pixels outside the raw image.
        return cv2.remap(image_HWC, *self._maps, self._interpolation, borderMode=cv2.BORDER_REPLICATE)


@functools.lru_cache(maxsize=8)
def undistorter(camera: CameraModel, config: UndistortConfig = UndistortConfig()) -> Undistorter:
    """The Undistorter of `camera`, built on first use: a stream of equal CameraInfos shares its maps."""
    return Undistorter(camera, config)


def normalized_coordinates(camera: CameraModel, uv_P2: np.ndarray) -> np.ndarray:
    """Pixel positions (P, 2) of `camera` -> the camera-frame (x, y) of their rays at z = 1, (P, 2):
    the lens model inverted (iteratively, as exactly as float64 allows); e.g. to render what a
    lens sees (io.bundled_scene)."""
    uv_P12 = np.asarray(uv_P2, dtype=np.float64).reshape(-1, 1, 2)
    # An exact inverse of a strong lens needs more iterations than OpenCV's default 5.
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14)
    if camera.lens == "equidistant":
        xy_P12 = cv2.fisheye.undistortPoints(uv_P12, camera.K_33, camera.D, criteria=criteria)
    elif camera.distorted:
        xy_P12 = cv2.undistortPointsIter(uv_P12, camera.K_33, camera.D, None, None, criteria)
    else:
        xy_P12 = cv2.undistortPoints(uv_P12, camera.K_33, None)
    return xy_P12.reshape(-1, 2).astype(np.float64)
