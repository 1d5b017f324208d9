"""A plain folder of images (png/jpg/jpeg), no ground truth, optional intrinsics file.

Intrinsics, for the images as stored, from the first file found:
- `camera.yaml`: ROS camera_calibration output (`image_width`, `image_height`,
  `camera_matrix: {data: [9 numbers]}`, `distortion_model`, `distortion_coefficients`) or a
  CameraInfo message dump (`width`, `height`, `k`, `distortion_model`, `d`). If its size
  differs from the images' (same aspect ratio), K is scaled. Needs PyYAML. A lens with
  distortion is removed (io.camera_models) before the load-time downscale; K is then the
  undistorted camera's.
- `intrinsics.txt`: "fx fy cx cy" on one line, or a 3x3 matrix (9 numbers, any layout).
Both use the OpenCV pixel convention (pixel centres at integers), as ROS does. Without a file
the focal length is guessed as COLMAP does (f = 1.2 max(W, H), principal point at the image
centre) and a warning is logged.
"""

import logging
import re
from pathlib import Path

import numpy as np

from nvs_ros.core.cameras import intrinsics_matrix
from nvs_ros.core.image_set import ImageSet
from nvs_ros.io.camera_models import CameraModel, camera_from_calibration, undistorter
from nvs_ros.io.errors import CameraModelError, DatasetError
from nvs_ros.io.image_files import (IMAGE_SUFFIXES, evenly_spaced_indices, image_centre,
                                    list_images, read_image, read_images, rescale_intrinsics)

_logger = logging.getLogger(__name__)

INTRINSICS_FILES = ("camera.yaml", "intrinsics.txt")
GUESSED_FOCAL_PER_SIDE = 1.2
"""COLMAP's default focal length, in units of the longer image side."""


def load_image_folder(folder: str | Path, max_side: int | None = None,
                      views: int | None = None) -> ImageSet:
    """Images in natural name order (or `views` evenly spaced ones), downscaled to `max_side`.

    All images must have one size. RGBA images are composited on white and, when every
    image has alpha, alpha > 0.5 gives the masks.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder")
    paths = list_images(folder)
    if not paths:
        raise DatasetError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    keep = evenly_spaced_indices(len(paths), views)
    # The first image is decoded twice: the lens acts at the stored size, before the downscale.
    stored_size = read_image(paths[keep[0]])[0].shape[:2]
    to_pinhole = undistorter(read_camera(folder, stored_size))
    images_NHW3, masks_NHW, stored_size = read_images([paths[i] for i in keep], max_side, to_pinhole)
    K_N33 = rescale_intrinsics(np.tile(to_pinhole.K_33, (len(keep), 1, 1)), stored_size, images_NHW3.shape[1:3])
    return ImageSet(names=[paths[i].name for i in keep], images_NHW3=images_NHW3, K_N33=K_N33,
                    masks_NHW=masks_NHW, capture="unknown", source=str(folder))


def read_camera(folder: Path, size: tuple[int, int]) -> CameraModel:
    """The camera of images of (height, width) `size` in `folder`: from a file, else guessed."""
    found = [folder / name for name in INTRINSICS_FILES if (folder / name).is_file()]
    if len(found) > 1:
        _logger.warning("%s has both %s; using %s", folder, " and ".join(p.name for p in found),
                        found[0].name)
    height, width = size
    if found and found[0].name == "camera.yaml":
        return _read_camera_yaml(found[0], size)
    if found:
        return CameraModel.create(_read_intrinsics_txt(found[0]), width, height)
    focal = GUESSED_FOCAL_PER_SIDE * max(height, width)
    _logger.warning("%s has no %s: guessing f = %.1f px (%.1f x the longer side), principal "
                    "point at the centre", folder, " or ".join(INTRINSICS_FILES), focal,
                    GUESSED_FOCAL_PER_SIDE)
    return CameraModel.create(intrinsics_matrix(focal, focal, *image_centre(height, width)), width, height)


def _read_intrinsics_txt(path: Path) -> np.ndarray:
    try:
        text = re.sub(r"#.*", "", path.read_text())
        values = [float(v) for v in re.split(r"[\s,;\[\]]+", text) if v]
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read intrinsics {path}: {err}") from err
    if len(values) == 4:
        return _checked(intrinsics_matrix(*values), path)
    if len(values) == 9:
        return _checked(np.array(values, dtype=np.float64).reshape(3, 3), path)
    raise DatasetError(f"{path} must hold 'fx fy cx cy' or a 3x3 matrix, found {len(values)} numbers")


def _read_camera_yaml(path: Path, size: tuple[int, int]) -> CameraModel:
    try:
        import yaml  # optional: only camera.yaml needs it
    except ImportError as err:
        raise DatasetError(f"reading {path} needs PyYAML (pip install pyyaml), "
                           "or write intrinsics.txt instead") from err
    try:
        camera = camera_from_calibration(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, CameraModelError) as err:
        raise DatasetError(f"cannot read camera calibration {path}: {err}") from err
    calib_size = (camera.height, camera.width)
    if calib_size != tuple(size):
        if abs(calib_size[0] / calib_size[1] - size[0] / size[1]) > 1e-2:
            raise DatasetError(f"{path} is for {calib_size[1]}x{calib_size[0]} images, "
                               f"the folder's are {size[1]}x{size[0]} (another aspect ratio)")
        camera = camera.resized(*size)
    if camera.distorted:
        _logger.info("%s: %s; images are undistorted", path, camera.describe())
    return camera


def _checked(K_33: np.ndarray, path: Path) -> np.ndarray:
    if not (np.allclose(K_33[2], [0.0, 0.0, 1.0]) and K_33[1, 0] == 0.0
            and K_33[0, 0] > 0 and K_33[1, 1] > 0):
        raise DatasetError(f"{path}: not a pinhole matrix with positive focal lengths: "
                           f"{K_33.tolist()}")
    return K_33


def write_image_folder(folder: str | Path, image_set: ImageSet) -> Path:
    """Write `image_set` as an image folder this module reads back: PNGs + intrinsics.txt.

    Ground-truth poses are not written (an image folder has none). All views must share
    one camera, since intrinsics.txt holds one.
    """
    import cv2

    folder = Path(folder)
    if not np.allclose(image_set.K_N33, image_set.K_N33[0]):
        raise DatasetError("an image folder holds one camera; these views have different intrinsics")
    folder.mkdir(parents=True, exist_ok=True)
    for name, image_HW3 in zip(image_set.names, image_set.images_NHW3):
        path = folder / Path(name).with_suffix(".png").name
        if not cv2.imwrite(str(path), cv2.cvtColor(image_HW3, cv2.COLOR_RGB2BGR)):
            raise DatasetError(f"cannot write {path}")
    K_33 = image_set.K_N33[0]
    (folder / "intrinsics.txt").write_text(
        "# fx fy cx cy, pixels, OpenCV convention (centre of the top-left pixel at 0,0)\n"
        + " ".join(repr(float(v)) for v in (K_33[0, 0], K_33[1, 1], K_33[0, 2], K_33[1, 2])) + "\n")
    return folder
