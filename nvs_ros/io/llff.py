"""LLFF forward-facing scenes: `poses_bounds.npy` + `images_<k>/` (k-fold downsampled) or `images/`.

`poses_bounds.npy` is (N, 17): a 3x5 matrix [R | t | (h, w, f)] per image, camera-to-world
with rotation columns [down, right, back] (see `conventions.llff_to_cv`), h, w, f in pixels
of the full-size images, then near/far depth bounds. The poses come from COLMAP. The
`sparse/` COLMAP model next to them is not read.
"""

import re
from pathlib import Path

import numpy as np

from nvs_ros.core.cameras import intrinsics_matrix
from nvs_ros.core.conventions import llff_to_cv
from nvs_ros.core.image_set import ImageSet
from nvs_ros.io.errors import DatasetError
from nvs_ros.io.image_files import evenly_spaced_indices, image_centre, list_images, read_images


def is_llff(folder: Path) -> bool:
    return (Path(folder) / "poses_bounds.npy").is_file()


def load_llff(folder: str | Path, max_side: int | None = None,
              views: int | None = None) -> ImageSet:
    """Load all views (or `views` evenly spaced ones), downscaled to `max_side` at load time.

    Image folder: with `max_side`, the most downsampled `images_<k>/` whose images still
    have a longer side >= max_side (else the largest there is); without it, the most
    downsampled folder (LLFF's `images_8/` is what NeRF papers use). f is scaled by
    (loaded width / full width); the principal point is the image centre, (W - 1) / 2.
    """
    folder = Path(folder)
    poses_N17 = _read_poses_bounds(folder / "poses_bounds.npy")
    hwf_N3 = poses_N17[:, :15].reshape(-1, 3, 5)[:, :, 4]
    full_height, full_width, full_focal = hwf_N3[0]
    image_folder = _choose_image_folder(folder, max(full_height, full_width), max_side)
    paths = list_images(image_folder)
    if len(paths) != len(poses_N17):
        raise DatasetError(f"{image_folder} holds {len(paths)} images but "
                           f"{folder / 'poses_bounds.npy'} has {len(poses_N17)} poses")
    keep = evenly_spaced_indices(len(paths), views)
    images_NHW3, _, _ = read_images([paths[i] for i in keep], max_side)
    height, width = images_NHW3.shape[1:3]
    scale = width / full_width
    K_N33 = np.stack([intrinsics_matrix(f * scale, f * scale, *image_centre(height, width))
                      for f in hwf_N3[keep, 2]])
    c2w_N44 = llff_to_cv(poses_N17[keep, :15].reshape(-1, 3, 5)[:, :, :4])
    return ImageSet(names=[paths[i].name for i in keep], images_NHW3=images_NHW3, K_N33=K_N33,
                    c2w_N44=c2w_N44, capture="forward", source=str(folder))


def _read_poses_bounds(path: Path) -> np.ndarray:
    try:
        poses_N17 = np.load(path)
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from err
    if poses_N17.ndim != 2 or poses_N17.shape[1] != 17 or len(poses_N17) == 0:
        raise DatasetError(f"{path} must be (N, 17), got {poses_N17.shape}")
    return poses_N17.astype(np.float64)


def _choose_image_folder(folder: Path, full_side: float, max_side: int | None) -> Path:
    by_factor = {}
    for sub in folder.iterdir():
        match = re.fullmatch(r"images(?:_(\d+))?", sub.name)
        if sub.is_dir() and match:
            by_factor[int(match.group(1) or 1)] = sub
    if not by_factor:
        raise DatasetError(f"{folder} has poses_bounds.npy but no images/ or images_<k>/ folder")
    large_enough = [k for k in by_factor if max_side is None or full_side / k >= max_side]
    return by_factor[max(large_enough) if large_enough else min(by_factor)]
