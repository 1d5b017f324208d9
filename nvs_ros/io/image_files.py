"""Reading image files for the dataset loaders: decode, colour, alpha, downscale, sort.

Every loader reads through `read_images`, so all formats agree on what comes out:
RGB uint8, RGBA composited on white, grayscale expanded to RGB, 16-bit scaled to 8-bit,
and a load-time downscale (OpenCV area filter) to the same size `ImageSet.resized` picks.
"""

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from nvs_ros.core.cameras import fit_size, scale_intrinsics
from nvs_ros.core.image_set import evenly_spaced_indices as core_evenly_spaced_indices
from nvs_ros.io.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def natural_key(name: str) -> list:
    """Sort key that orders "img2" before "img10" (digit runs compare as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """The png/jpg/jpeg files directly in `folder`, in natural order of their names."""
    paths = [p for p in Path(folder).iterdir()
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    return sorted(paths, key=lambda p: natural_key(p.name))


def evenly_spaced_indices(count_all: int, views: int | None) -> np.ndarray:
    """Indices of `views` views spread over `count_all` (all if None or more than there are).

    Same choice as `ImageSet.evenly_spaced`, so loaders can pick views before reading files.
    """
    try:
        return core_evenly_spaced_indices(count_all, views)
    except ValueError as err:
        raise DatasetError(str(err)) from err


def read_image(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode one file: (RGB uint8 (H, W, 3), alpha in [0, 1] (H, W) float32 or None).

    RGBA is composited on white; a DatasetError names the file when it cannot be decoded.
    """
    path = Path(path)
    # imdecode of the raw bytes: imread prints a warning and returns None on failure,
    # and cannot tell "missing" from "corrupt".
    try:
        data_B = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise DatasetError(f"cannot read image {path}: {err}") from err
    image = cv2.imdecode(data_B, cv2.IMREAD_UNCHANGED) if data_B.size else None
    if image is None:
        raise DatasetError(f"cannot decode image {path} (corrupt or not an image)")
    image_f = _to_unit_float(image, path)
    if image_f.ndim == 2:
        image_f = image_f[..., None]
    channels = image_f.shape[2]
    if channels not in (1, 2, 3, 4):
        raise DatasetError(f"image {path} has {channels} channels; expected 1, 2, 3 or 4")
    alpha_HW = image_f[..., -1] if channels in (2, 4) else None
    colour_HWC = image_f[..., :-1] if alpha_HW is not None else image_f
    rgb_HW3 = (np.repeat(colour_HWC, 3, axis=2) if colour_HWC.shape[2] == 1
               else colour_HWC[..., ::-1])  # OpenCV decodes to BGR
    if alpha_HW is not None:
        rgb_HW3 = rgb_HW3 * alpha_HW[..., None] + (1.0 - alpha_HW[..., None])
    rgb_HW3 = np.clip(np.round(rgb_HW3 * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb_HW3), alpha_HW


def _to_unit_float(image: np.ndarray, path: Path) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    raise DatasetError(f"image {path} has unsupported pixel type {image.dtype}")


def read_mask(path: Path) -> np.ndarray:
    """A mask file as bool (H, W): foreground where any channel is above half."""
    rgb_HW3, alpha_HW = read_image(path)
    if alpha_HW is not None:
        return alpha_HW > 0.5
    return rgb_HW3.max(axis=2) > 127


def downscale(image_HWC: np.ndarray, max_side: int | None) -> np.ndarray:
    """Area-averaged downscale so the longer side is <= max_side (never up)."""
    if max_side is None:
        return image_HWC
    height, width = fit_size(image_HWC.shape[0], image_HWC.shape[1], max_side)
    if (height, width) == image_HWC.shape[:2]:
        return image_HWC
    return cv2.resize(image_HWC, (width, height), interpolation=cv2.INTER_AREA)


def downscale_mask(mask_HW: np.ndarray, max_side: int | None) -> np.ndarray:
    """A bool mask downscaled like `downscale`: foreground where over half the area was."""
    return downscale(mask_HW.astype(np.float32), max_side) > 0.5


def read_images(paths: Sequence[Path], max_side: int | None = None,
                undistort: Callable[[np.ndarray], np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """Read files that must share one size; undistort each (io.camera_models: the lens acts at
    the stored size) and downscale it to fit `max_side`.

    Returns (images_NHW3 uint8 RGB, alpha masks_NHW bool when every file has alpha else None,
    (height, width) of the files as stored, before downscaling). A file of another size
    than the first raises a DatasetError naming both.
    """
    if not paths:
        raise DatasetError("no images to read")
    images, masks, size = [], [], None
    for path in paths:
        rgb_HW3, alpha_HW = read_image(path)
        if size is None:
            size = rgb_HW3.shape[:2]
        elif rgb_HW3.shape[:2] != size:
            raise DatasetError(
                f"image {path} is {rgb_HW3.shape[1]}x{rgb_HW3.shape[0]} but {paths[0]} is "
                f"{size[1]}x{size[0]}: all images of a set must have one size")
        if undistort is not None:
            rgb_HW3 = undistort(rgb_HW3)
            alpha_HW = None if alpha_HW is None else undistort(alpha_HW)
        images.append(downscale(rgb_HW3, max_side))
        masks.append(None if alpha_HW is None else downscale_mask(alpha_HW > 0.5, max_side))
    masks_NHW = None if any(m is None for m in masks) else np.stack(masks)
    return np.stack(images), masks_NHW, size


def read_masks(paths: Sequence[Path], max_side: int | None, size: tuple[int, int]) -> np.ndarray:
    """Mask files (bool (N, H, W)) that must have the stored image `size`, downscaled alike."""
    masks = []
    for path in paths:
        mask_HW = read_mask(path)
        if mask_HW.shape != tuple(size):
            raise DatasetError(f"mask {path} is {mask_HW.shape[1]}x{mask_HW.shape[0]}, "
                               f"its image is {size[1]}x{size[0]}")
        masks.append(downscale_mask(mask_HW, max_side))
    return np.stack(masks)


def image_centre(height: int, width: int) -> tuple[float, float]:
    """(cx, cy) of the image centre in the OpenCV pixel convention (pixel centres at integers)."""
    return (width - 1) / 2.0, (height - 1) / 2.0


def rescale_intrinsics(K_N33: np.ndarray, size_from: tuple[int, int],
                       size_to: tuple[int, int]) -> np.ndarray:
    """Intrinsics for (height, width) `size_from` -> the same cameras at `size_to`."""
    if tuple(size_from) == tuple(size_to):
        return np.asarray(K_N33, dtype=np.float64)
    return scale_intrinsics(K_N33, size_to[1] / size_from[1], size_to[0] / size_from[0])
