"""`transforms.json` folders: NeRF synthetic (Blender) scenes, nerfstudio and instant-ngp captures.

Read:
- NeRF synthetic: `transforms_{train,val,test}.json`, one per split, with `camera_angle_x`
  (horizontal field of view, radians) and RGBA PNG renders (composited on white; alpha > 0.5 is
  the object mask).
- nerfstudio / instant-ngp: one `transforms.json` (one split, "train": every frame) with `fl_x`,
  `fl_y`, `cx`, `cy`, `w`, `h` at the top or per frame (instant-ngp may give `camera_angle_x` /
  `camera_angle_y` instead), `camera_model` PINHOLE, OPENCV or OPENCV_FISHEYE and `k1`-`k4`,
  `p1`, `p2`: OPENCV is plumb_bob (k1 k2 p1 p2, k3 where given), OPENCV_FISHEYE (or
  `is_fisheye`) equidistant (k1-k4), undistorted at load time by io.camera_models like every
  other input; all coefficients zero is a pinhole camera. A lens must be shared by every frame.
Every frame has a `file_path` (relative; NeRF synthetic leaves out ".png") and a
`transform_matrix`: camera-to-world in the OpenGL/Blender camera convention (x right, y up,
z back), the ground truth of the images (never shown to an estimator; an `--init` source when
asked for). Pixel convention: nerfstudio and instant-ngp put the centre of the top-left pixel at
(0.5, 0.5), nvs_ros (OpenCV) at (0, 0): cx and cy move by 0.5 px on the way in and out.

Written (`nvs-ros export --format nerfstudio`): transforms.json as nerfstudio's
`nerfstudio_dataparser` reads it: PINHOLE, intrinsics at the top where all frames share them,
frames with `file_path` and `transform_matrix`, and `ply_file_path` for a point cloud.
"""

import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np

from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.cameras import intrinsics_matrix
from nvs_ros.core.conventions import c2w_cv_to_gl, c2w_gl_to_cv
from nvs_ros.core.errors import InputError
from nvs_ros.core.image_set import ImageSet
from nvs_ros.io.camera_models import CameraModel, undistorter
from nvs_ros.io.errors import CameraModelError, DatasetError
from nvs_ros.io.image_files import evenly_spaced_indices, read_images, rescale_intrinsics
from nvs_ros.io.output_folder import write_json

_logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
TRANSFORMS = "transforms.json"
PIXEL_OFFSET = 0.5
"""nerfstudio's / instant-ngp's principal point minus nvs_ros's (OpenCV's), in pixels."""
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
INTRINSICS_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


def is_nerf_synthetic(folder: Path) -> bool:
    return any(Path(folder).glob("transforms_*.json"))


def is_transforms_folder(folder: Path) -> bool:
    """A nerfstudio or instant-ngp capture: one transforms.json."""
    return (Path(folder) / TRANSFORMS).is_file()


def transforms_path(folder: str | Path, split: str = "train") -> Path:
    """The json of `split` in `folder`: transforms_{split}.json (NeRF synthetic), else transforms.json
    (one split, "train"); `folder` may also be the json file itself."""
    folder = Path(folder)
    if folder.suffix == ".json":
        return folder
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} for a transforms.json folder; use one of {SPLITS}")
    if is_nerf_synthetic(folder):
        return folder / f"transforms_{split}.json"
    if split != "train":
        raise DatasetError(f"{folder / TRANSFORMS} has no {split!r} split; only 'train' (all frames)")
    return folder / TRANSFORMS


def load_transforms(folder: str | Path, split: str = "train", max_side: int | None = None,
                    views: int | None = None) -> ImageSet:
    """Load one split; `views` evenly spaced frames, downscaled to `max_side` at load time.

    Frames whose image file is absent are left out (the shared chair keeps every 8th test
    view only); a split with no image at all is an error. Intrinsics given for another size
    than the files' (nerfstudio's downscaled images_2/ ...) are rescaled to the files'.
    """
    folder = Path(folder)
    meta_path = transforms_path(folder, split)
    meta = _read_json(meta_path)
    frames = [(path, frame) for path, frame in
              ((_frame_path(meta_path.parent, frame, meta_path), frame) for frame in meta["frames"])
              if path.is_file()]
    if not frames:
        raise DatasetError(f"{meta_path} lists {len(meta['frames'])} frames but none of their "
                           f"image files exist")
    if len(frames) < len(meta["frames"]):
        _logger.info("%s lists %d frames, %d have image files; using those",
                     meta_path, len(meta["frames"]), len(frames))
    frames = [frames[i] for i in evenly_spaced_indices(len(frames), views)]

    stored_size = _image_size(frames[0][0])  # the lens acts on the files as stored
    cameras = [_camera(meta, frame, stored_size, meta_path) for _, frame in frames]
    to_pinhole = _undistorter(cameras, meta_path)
    images_NHW3, masks_NHW, stored_size = read_images([path for path, _ in frames], max_side, to_pinhole)
    K_N33 = np.array([rescale_intrinsics(K_33, (camera.height, camera.width), images_NHW3.shape[1:3])
                      for K_33, camera in zip(_pinhole_K(cameras, to_pinhole), cameras)])
    c2w_gl_N44 = np.array([frame["transform_matrix"] for _, frame in frames], dtype=np.float64)
    return ImageSet(
        names=[path.relative_to(meta_path.parent).as_posix() for path, _ in frames],
        images_NHW3=images_NHW3, K_N33=K_N33, masks_NHW=masks_NHW,
        c2w_N44=c2w_gl_to_cv(c2w_gl_N44), capture="360" if is_nerf_synthetic(folder) else "unknown",
        source=str(folder))


def read_transforms_poses(path: str | Path) -> CameraEstimates:
    """The frames of a transforms.json (or of the folder holding it) as poses (OpenCV axes) and
    intrinsics at their stated size, without reading the images (where no size is stated, the
    first image's is read): an `--init` source."""
    meta_path = transforms_path(path)
    meta = _read_json(meta_path)
    paths = [_frame_path(meta_path.parent, frame, meta_path) for frame in meta["frames"]]
    cameras = [_camera(meta, frame, _stored_size(meta, paths), meta_path) for frame in meta["frames"]]
    intrinsics = list(zip(_pinhole_K(cameras, _undistorter(cameras, meta_path)),
                          [(camera.height, camera.width) for camera in cameras]))
    return CameraEstimates(
        names=[p.relative_to(meta_path.parent).as_posix() for p in paths],
        c2w_N44=c2w_gl_to_cv(np.array([frame["transform_matrix"] for frame in meta["frames"]], dtype=np.float64)),
        registered_N=np.ones(len(paths), dtype=bool),
        K_N33=np.array([K_33 for K_33, _ in intrinsics]),
        sizes_N2=np.array([[w, h] for _, (h, w) in intrinsics], dtype=int).reshape(-1, 2))


def write_transforms(folder: Path, estimates: CameraEstimates, file_paths: list[str],
                     ply_file_path: str | None = None) -> Path:
    """transforms.json in `folder` for the registered cameras of `estimates` (c2w with OpenCV
    axes, pinhole intrinsics at `sizes_N2`), their images at `file_paths` (relative to `folder`,
    one per registered camera, in order) and a point cloud at `ply_file_path` (relative)."""
    registered = np.flatnonzero(estimates.registered_N)
    if len(file_paths) != len(registered):
        raise ValueError(f"{len(file_paths)} image files for {len(registered)} registered cameras")
    cameras = [_camera_entry(estimates.K_N33[i], estimates.sizes_N2[i]) for i in registered]
    shared = all(camera == cameras[0] for camera in cameras)
    c2w_gl_N44 = c2w_cv_to_gl(estimates.c2w_N44[registered])
    frames = [{"file_path": file_path, "transform_matrix": c2w_gl_44.tolist(), **({} if shared else camera)}
              for file_path, c2w_gl_44, camera in zip(file_paths, c2w_gl_N44, cameras)]
    meta = {"camera_model": "PINHOLE", **(cameras[0] if shared and cameras else {}), "frames": frames}
    if ply_file_path is not None:
        meta["ply_file_path"] = ply_file_path
    write_json(Path(folder) / TRANSFORMS, meta)
    return Path(folder) / TRANSFORMS


def _camera_entry(K_33: np.ndarray, size_2: np.ndarray) -> dict:
    return {"fl_x": float(K_33[0, 0]), "fl_y": float(K_33[1, 1]), "cx": float(K_33[0, 2]) + PIXEL_OFFSET,
            "cy": float(K_33[1, 2]) + PIXEL_OFFSET, "w": int(size_2[0]), "h": int(size_2[1])}


def _stored_size(meta: dict, paths: list[Path]) -> tuple[int, int] | None:
    """(height, width) of the first image where some frame states no size, else None (not read)."""
    if all(key in meta or key in frame for key in ("w", "h") for frame in meta["frames"]):
        return None
    return _image_size(paths[0])


def _image_size(path: Path) -> tuple[int, int]:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetError(f"{path} cannot be read")
    return image.shape[:2]


def _undistorter(cameras: list[CameraModel], meta_path: Path):
    """The lens's undistorter where the frames have one (one lens for all), else None."""
    if not any(camera.distorted for camera in cameras):
        return None
    if len(set(cameras)) > 1:
        raise InputError(f"{meta_path}: frames with a lens must share one camera (intrinsics and lens)")
    return undistorter(cameras[0])


def _pinhole_K(cameras: list[CameraModel], to_pinhole) -> list[np.ndarray]:
    """The frames' intrinsics as the loaded (undistorted) images have them."""
    return [camera.K_33 if to_pinhole is None else to_pinhole.K_33 for camera in cameras]


def _camera(meta: dict, frame: dict, stored_size: tuple[int, int] | None, meta_path: Path) -> CameraModel:
    """The camera of one frame's image file, in nvs_ros's pixel convention: its own keys, else
    the file's, else the field of view and the stored size."""
    def value(key: str) -> float | None:
        found = frame.get(key, meta.get(key))
        return None if found is None else float(found)

    model = frame.get("camera_model", meta.get("camera_model", "OPENCV"))
    if bool(frame.get("is_fisheye", meta.get("is_fisheye"))):
        model = "OPENCV_FISHEYE"
    k1, k2, k3, k4, p1, p2 = (value(key) or 0.0 for key in DISTORTION_KEYS)
    lenses = {"PINHOLE": ("pinhole", ()), "OPENCV": ("plumb_bob", (k1, k2, p1, p2, k3)),
              "OPENCV_FISHEYE": ("equidistant", (k1, k2, k3, k4))}
    if model not in lenses:
        raise InputError(f"camera model {model} of {meta_path}: only PINHOLE, OPENCV and OPENCV_FISHEYE are read")
    if model == "OPENCV" and k4:
        raise InputError(f"camera model OPENCV of {meta_path} has k4: a fisheye lens needs OPENCV_FISHEYE")
    lens, D = lenses[model]
    width, height = value("w"), value("h")
    if width is None or height is None:
        if stored_size is None:
            raise DatasetError(f"{meta_path} states no image size (w, h)")
        height, width = stored_size
    fx, fy = value("fl_x"), value("fl_y")
    if fx is None and value("camera_angle_x") is None:
        raise DatasetError(f"{meta_path} has neither fl_x nor camera_angle_x")
    if fx is None:
        fx = 0.5 * width / math.tan(0.5 * value("camera_angle_x"))
    if fy is None:
        angle_y = value("camera_angle_y")
        fy = fx if angle_y is None else 0.5 * height / math.tan(0.5 * angle_y)
    cx, cy = value("cx"), value("cy")
    cx = width / 2.0 if cx is None else cx  # the image centre in nerfstudio's pixel convention
    cy = height / 2.0 if cy is None else cy
    K_33 = intrinsics_matrix(fx, fy, cx - PIXEL_OFFSET, cy - PIXEL_OFFSET)
    try:
        camera = CameraModel.create(K_33, int(width), int(height), lens, D)
    except CameraModelError as err:
        raise InputError(f"{meta_path}: {err}") from err
    if stored_size is not None and stored_size != (camera.height, camera.width):
        camera = camera.resized(*stored_size)  # stated for another size than the files' (images_2/ ...)
    return camera


def _read_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DatasetError(f"{path} not found") from err
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from err
    if not isinstance(meta, dict) or "frames" not in meta:
        raise DatasetError(f"{path} lacks 'frames'")
    return meta


def _frame_path(folder: Path, frame: dict, meta_path: Path) -> Path:
    try:
        path = folder / frame["file_path"]
        np.asarray(frame["transform_matrix"], dtype=np.float64).reshape(4, 4)
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"{meta_path}: malformed frame {frame!r:.120}") from err
    return path if path.suffix else path.with_suffix(".png")
