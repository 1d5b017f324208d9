"""COLMAP sparse models (cameras, images, points3D; text or binary), read and written by pycolmap.

A model is read as intrinsics for the images beside it (a dataset folder `DIR/images/` +
`DIR/sparse/0/`) and as an `--init` source (its poses, matched by image name); it is written by
`nvs-ros export --format colmap`. Never ground truth: COLMAP's poses are another estimate.

Conventions, converted here and nowhere else: COLMAP stores world-to-camera (`cam_from_world`)
with OpenCV camera axes, as nvs_ros's c2w inverted; it puts the centre of the top-left pixel at
(0.5, 0.5), nvs_ros (OpenCV, core.cameras) at (0, 0), so principal points move by 0.5 px.
Only pinhole cameras are read (PINHOLE, SIMPLE_PINHOLE, and the perspective models whose
distortion coefficients are all zero): images with lens distortion are refused until nvs_ros
undistorts them.
"""

from pathlib import Path

import numpy as np
import pycolmap

from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.conventions import w2c_to_c2w
from nvs_ros.core.errors import InputError
from nvs_ros.core.image_set import ImageSet
from nvs_ros.io.errors import DatasetError
from nvs_ros.io.image_files import IMAGE_SUFFIXES, evenly_spaced_indices, list_images, read_images, rescale_intrinsics

COLMAP_PIXEL_OFFSET = 0.5
"""COLMAP's principal point minus nvs_ros's (OpenCV's) for the same camera, in pixels."""
MODEL_FOLDERS = (".", "sparse/0", "sparse", "colmap/sparse/0")
"""Where a model is looked for inside a given folder: COLMAP's own layout and nerfstudio's."""
PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")
ZERO_DISTORTION_MODELS = ("SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV")
"""Perspective models that are pinhole cameras when their extra parameters are all zero (the
fisheye models are not: they are equidistant even then)."""
IMAGES_FOLDER = "images"


def find_colmap_model(path: str | Path) -> Path | None:
    """The folder holding cameras.{bin,txt} at `path` or in one of MODEL_FOLDERS under it."""
    for sub in MODEL_FOLDERS:
        folder = Path(path) / sub
        if (folder / "cameras.bin").is_file() or (folder / "cameras.txt").is_file():
            return folder.resolve() if sub == "." else folder
    return None


def colmap_camera_params(K_33: np.ndarray, model: str) -> list[float]:
    """pycolmap camera parameters (COLMAP pixel convention) for OpenCV intrinsics K."""
    fx, fy = K_33[0, 0], K_33[1, 1]
    cx, cy = K_33[0, 2] + COLMAP_PIXEL_OFFSET, K_33[1, 2] + COLMAP_PIXEL_OFFSET
    if model == "SIMPLE_PINHOLE":
        return [0.5 * (fx + fy), cx, cy]
    return [fx, fy, cx, cy]


def intrinsics_from_colmap(camera: pycolmap.Camera) -> np.ndarray:
    """OpenCV 3x3 intrinsics of a pycolmap pinhole camera; InputError for a lens with distortion."""
    model = camera.model.name
    extra = np.asarray(camera.params)[list(camera.extra_params_idxs())]
    if model not in PINHOLE_MODELS and not (model in ZERO_DISTORTION_MODELS and not np.any(extra)):
        raise InputError(f"camera model {model} with distortion: not supported yet (camera {camera.camera_id})")
    K_33 = np.asarray(camera.calibration_matrix(), dtype=np.float64).copy()
    K_33[0, 2] -= COLMAP_PIXEL_OFFSET
    K_33[1, 2] -= COLMAP_PIXEL_OFFSET
    return K_33


def _reconstruction(path: str | Path) -> tuple[pycolmap.Reconstruction, Path]:
    folder = find_colmap_model(path)
    if folder is None:
        raise DatasetError(f"{path} holds no COLMAP model (cameras.bin or cameras.txt in "
                           f"{', '.join(MODEL_FOLDERS)})")
    try:
        return pycolmap.Reconstruction(folder), folder
    except Exception as err:  # pycolmap raises its C++ errors as several Python types
        raise DatasetError(f"cannot read the COLMAP model in {folder}: {err}") from err


def read_colmap_model(path: str | Path) -> CameraEstimates:
    """The posed images of the model at (or under) `path`, in name order: c2w with OpenCV axes,
    intrinsics at each camera's size."""
    reconstruction, folder = _reconstruction(path)
    images = sorted((image for image in reconstruction.images.values() if image.has_pose), key=lambda i: i.name)
    if not images:
        raise DatasetError(f"the COLMAP model in {folder} has no posed image")
    w2c_N34 = np.array([image.cam_from_world().matrix() for image in images])
    return CameraEstimates(
        names=[image.name for image in images],
        c2w_N44=w2c_to_c2w(w2c_N34[:, :, :3], w2c_N34[:, :, 3]),
        registered_N=np.ones(len(images), dtype=bool),
        K_N33=np.array([intrinsics_from_colmap(image.camera) for image in images]),
        sizes_N2=np.array([[image.camera.width, image.camera.height] for image in images]))


def is_colmap_folder(folder: Path) -> bool:
    """A COLMAP dataset: a model and the images it describes (in images/ or beside it)."""
    return find_colmap_model(folder) is not None and bool(list_images(_image_folder(folder)))


def _image_folder(folder: Path) -> Path:
    return folder / IMAGES_FOLDER if (folder / IMAGES_FOLDER).is_dir() else folder


def load_colmap_folder(folder: str | Path, max_side: int | None = None, views: int | None = None) -> ImageSet:
    """The images of a COLMAP dataset with the model's intrinsics, without ground truth.

    Images the model does not pose take its camera where it has one only; the model's poses
    start a reconstruction only when asked (`--init FOLDER`)."""
    folder = Path(folder)
    image_dir = _image_folder(folder)
    paths = list_images(image_dir)
    if not paths:
        raise DatasetError(f"{image_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    reconstruction, model_dir = _reconstruction(folder)
    by_name = {image.name: image.camera for image in reconstruction.images.values()}
    only = next(iter(reconstruction.cameras.values())) if reconstruction.num_cameras() == 1 else None
    paths = [paths[i] for i in evenly_spaced_indices(len(paths), views)]
    cameras = [by_name.get(path.name, only) for path in paths]
    if any(camera is None for camera in cameras):
        missing = next(path.name for path, camera in zip(paths, cameras) if camera is None)
        raise DatasetError(f"{missing} is not in the COLMAP model in {model_dir}, which has "
                           f"{reconstruction.num_cameras()} cameras: no intrinsics for it")
    images_NHW3, masks_NHW, stored_size = read_images(paths, max_side)
    if any((camera.height, camera.width) != stored_size for camera in cameras):
        raise DatasetError(f"the COLMAP camera is {cameras[0].width}x{cameras[0].height} but the images in "
                           f"{image_dir} are {stored_size[1]}x{stored_size[0]}")
    K_N33 = np.array([rescale_intrinsics(intrinsics_from_colmap(camera), stored_size, images_NHW3.shape[1:3])
                      for camera in cameras])
    return ImageSet(names=[path.name for path in paths], images_NHW3=images_NHW3, K_N33=K_N33,
                    masks_NHW=masks_NHW, capture="unknown", source=str(folder))


def write_colmap_model(folder: Path, estimates: CameraEstimates, points_P3: np.ndarray,
                       colors_P3: np.ndarray) -> Path:
    """A COLMAP text model (cameras.txt, images.txt, points3D.txt; pycolmap 4 adds rigs.txt and
    frames.txt) of the registered cameras in `estimates` (one PINHOLE camera per distinct
    intrinsics and size) and of the points (P, 3) with colours (P, 3) in [0, 1], written into
    `folder` (created). The points have no tracks: they come from the field, not from matches."""
    reconstruction = pycolmap.Reconstruction()
    camera_ids: dict[tuple, int] = {}
    for i in np.flatnonzero(estimates.registered_N):
        width, height = (int(v) for v in estimates.sizes_N2[i])
        params = colmap_camera_params(estimates.K_N33[i], "PINHOLE")
        key = (width, height, *np.round(params, 9))
        if key not in camera_ids:
            camera_ids[key] = len(camera_ids) + 1
            reconstruction.add_camera_with_trivial_rig(pycolmap.Camera(
                model="PINHOLE", width=width, height=height, params=params, camera_id=camera_ids[key]))
        w2c_44 = np.linalg.inv(estimates.c2w_N44[i])
        image = pycolmap.Image(name=estimates.names[i], camera_id=camera_ids[key], image_id=int(i) + 1)
        reconstruction.add_image_with_trivial_frame(
            image, pycolmap.Rigid3d(pycolmap.Rotation3d(w2c_44[:3, :3]), w2c_44[:3, 3]))
    rgb_P3 = np.round(np.clip(np.asarray(colors_P3, dtype=np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    for xyz_3, rgb_3 in zip(np.asarray(points_P3, dtype=np.float64), rgb_P3):
        reconstruction.add_point3D(xyz_3, pycolmap.Track(), rgb_3)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    reconstruction.write_text(folder)
    return folder
