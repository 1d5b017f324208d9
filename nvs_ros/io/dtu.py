"""DTU MVS scans in the IDR/NeuS layout: `cameras_sphere.npz` + `image_half/` (or `image/`) + masks.

`world_mat_i` (4x4, last row 0 0 0 1) is P = K [R | t] for the i-th image (sorted by name),
in pixels of the 1600x1200 originals: world-to-camera, OpenCV axes, world in millimetres.
`scale_mat_i` maps the unit sphere around the object into that world (x_world = S x_unit);
NeuS trains on P S. We keep the world frame of world_mat and do not read scale_mat.
"""

from pathlib import Path

import cv2
import numpy as np

from nvs_ros.core.conventions import w2c_to_c2w
from nvs_ros.core.image_set import ImageSet
from nvs_ros.io.errors import DatasetError
from nvs_ros.io.image_files import (evenly_spaced_indices, list_images, read_images, read_masks,
                                    rescale_intrinsics)

CALIBRATION_SIZE = (1200, 1600)
"""(height, width) of the images `world_mat` projects into."""
_IMAGE_FOLDERS = (("image_half", "mask_half"), ("image", "mask"))


def is_dtu(folder: Path) -> bool:
    return (Path(folder) / "cameras_sphere.npz").is_file()


def load_dtu(folder: str | Path, max_side: int | None = None, views: int | None = None) -> ImageSet:
    """Load all views (or `views` evenly spaced ones), downscaled to `max_side` at load time.

    Reads `image_half/` (with `mask_half/`) if present, else `image/` (with `mask/`); K is
    scaled from the 1600x1200 calibration to the loaded size. Masks are optional.

    capture is "unknown": the 49 views cover a frontal arc of ~105 degrees around the object,
    too wide for forward-facing assumptions and far from a full orbit.
    """
    folder = Path(folder)
    image_dir, mask_dir = _image_folders(folder)
    paths = list_images(image_dir)
    keep = evenly_spaced_indices(len(paths), views)
    P_N34 = _read_projections(folder / "cameras_sphere.npz", len(paths))[keep]
    images_NHW3, _, stored_size = read_images([paths[i] for i in keep], max_side)
    masks_NHW = None
    if mask_dir.is_dir():
        mask_paths = list_images(mask_dir)
        if len(mask_paths) != len(paths):
            raise DatasetError(f"{mask_dir} holds {len(mask_paths)} masks for {len(paths)} images")
        masks_NHW = read_masks([mask_paths[i] for i in keep], max_side, stored_size)
    K_N33, c2w_N44 = decompose_projections(P_N34)
    if not np.allclose(np.array(stored_size) / CALIBRATION_SIZE,
                       stored_size[1] / CALIBRATION_SIZE[1], rtol=1e-3):
        raise DatasetError(f"{image_dir} images are {stored_size[1]}x{stored_size[0]}, not a "
                           f"scaled copy of the {CALIBRATION_SIZE[1]}x{CALIBRATION_SIZE[0]} calibration")
    K_N33 = rescale_intrinsics(K_N33, CALIBRATION_SIZE, images_NHW3.shape[1:3])
    return ImageSet(names=[paths[i].name for i in keep], images_NHW3=images_NHW3, K_N33=K_N33,
                    masks_NHW=masks_NHW, c2w_N44=c2w_N44, capture="unknown", source=str(folder))


def decompose_projections(P_N34: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3x4 projection matrices (any scale or sign) -> (K_N33 with K[2,2] = 1 and positive
    focals, camera-to-world N44 in OpenCV axes)."""
    Ks, Rs, ts = [], [], []
    for P_34 in np.asarray(P_N34, dtype=np.float64):
        # P is homogeneous: make det(M) > 0, so that P = +K[R|t] with det R = +1 and points
        # in front of the camera get a positive third coordinate.
        P_34 = P_34 * np.sign(np.linalg.det(P_34[:, :3]))
        # OpenCV's RQ step returns K with a positive diagonal; with det(M) > 0 that makes
        # det R = +1 (checked by the tests for negative and tiny scales).
        K_33, R_33 = cv2.decomposeProjectionMatrix(P_34)[:2]
        Ks.append(K_33 / K_33[2, 2])
        Rs.append(R_33)
        # t from P directly (P[:, 3] = K t, K not yet normalised), not from the homogeneous
        # camera centre cv2 also returns (less precise when it is far away).
        ts.append(np.linalg.solve(K_33, P_34[:, 3]))
    return np.stack(Ks), w2c_to_c2w(np.stack(Rs), np.stack(ts))


def _image_folders(folder: Path) -> tuple[Path, Path]:
    for image_name, mask_name in _IMAGE_FOLDERS:
        if (folder / image_name).is_dir():
            return folder / image_name, folder / mask_name
    raise DatasetError(f"{folder} has cameras_sphere.npz but none of the image folders "
                       f"{[name for name, _ in _IMAGE_FOLDERS]}")


def _read_projections(path: Path, count: int) -> np.ndarray:
    try:
        cameras = np.load(path)
        return np.stack([cameras[f"world_mat_{i}"][:3, :4] for i in range(count)]).astype(np.float64)
    except KeyError as err:
        raise DatasetError(f"{path} lacks {err.args[0]} for {count} images") from err
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from err
