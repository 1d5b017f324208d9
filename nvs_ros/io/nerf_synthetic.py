"""NeRF synthetic (Blender) scenes: `transforms_{split}.json` + RGBA PNG renders.

Format: `camera_angle_x` (horizontal field of view, radians) and `frames`, each with a
`file_path` (relative, usually without ".png") and a `transform_matrix`: camera-to-world in
the OpenGL/Blender camera convention (x right, y up, z back). Images are RGBA; we composite
them on white and take alpha > 0.5 as the object mask.
"""

import json
import logging
import math
from pathlib import Path

import numpy as np

from nvs_ros.core.cameras import intrinsics_matrix
from nvs_ros.core.conventions import c2w_gl_to_cv
from nvs_ros.core.image_set import ImageSet
from nvs_ros.io.errors import DatasetError
from nvs_ros.io.image_files import (evenly_spaced_indices, image_centre, read_images,
                                    rescale_intrinsics)

_logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def is_nerf_synthetic(folder: Path) -> bool:
    return any(Path(folder).glob("transforms_*.json"))


def load_nerf_synthetic(folder: str | Path, split: str = "train", max_side: int | None = None,
                        views: int | None = None) -> ImageSet:
    """Load one split; `views` evenly spaced frames, downscaled to `max_side` at load time.

    Frames whose image file is absent are left out (the shared chair keeps every 8th test
    view only); a split with no image at all is an error. The principal point is the image
    centre, (W - 1) / 2 in the OpenCV pixel convention; f = 0.5 W / tan(camera_angle_x / 2).
    """
    folder = Path(folder)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} for a NeRF synthetic scene; use one of {SPLITS}")
    meta_path = folder / f"transforms_{split}.json"
    meta = _read_json(meta_path)
    frames = [(path, frame) for path, frame in
              ((_frame_path(folder, frame, meta_path), frame) for frame in meta["frames"])
              if path.is_file()]
    if not frames:
        raise DatasetError(f"{meta_path} lists {len(meta['frames'])} frames but none of their "
                           f"image files exist")
    if len(frames) < len(meta["frames"]):
        _logger.info("%s lists %d frames, %d have image files; using those",
                     meta_path, len(meta["frames"]), len(frames))
    frames = [frames[i] for i in evenly_spaced_indices(len(frames), views)]

    images_NHW3, masks_NHW, stored_size = read_images([path for path, _ in frames], max_side)
    height, width = stored_size
    focal = 0.5 * width / math.tan(0.5 * float(meta["camera_angle_x"]))
    K_33 = intrinsics_matrix(focal, focal, *image_centre(height, width))
    K_N33 = rescale_intrinsics(np.tile(K_33, (len(frames), 1, 1)), stored_size,
                               images_NHW3.shape[1:3])
    c2w_gl_N44 = np.array([frame["transform_matrix"] for _, frame in frames], dtype=np.float64)
    return ImageSet(
        names=[path.relative_to(folder).as_posix() for path, _ in frames],
        images_NHW3=images_NHW3, K_N33=K_N33, masks_NHW=masks_NHW,
        c2w_N44=c2w_gl_to_cv(c2w_gl_N44), capture="360", source=str(folder))


def _read_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DatasetError(f"{path} not found") from err
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from err
    if not isinstance(meta, dict) or "camera_angle_x" not in meta or "frames" not in meta:
        raise DatasetError(f"{path} lacks 'camera_angle_x' or 'frames'")
    return meta


def _frame_path(folder: Path, frame: dict, meta_path: Path) -> Path:
    try:
        path = folder / frame["file_path"]
        np.asarray(frame["transform_matrix"], dtype=np.float64).reshape(4, 4)
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"{meta_path}: malformed frame {frame!r:.120}") from err
    return path if path.suffix else path.with_suffix(".png")
