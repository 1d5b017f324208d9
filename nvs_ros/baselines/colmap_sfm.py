"""The classical baseline: pycolmap incremental SfM on an image set, as CameraEstimates.

What it runs (pycolmap 4.2): SIFT features, exhaustive matching with geometric verification,
incremental mapping with `min_model_size=3`, ONE shared PINHOLE camera initialised from the
set's known intrinsics. By default the intrinsics are held fixed (the evaluation protocol gives
every estimator the intrinsics); `refine_intrinsics` lets bundle adjustment refine the shared
focal lengths as COLMAP does by default. The largest reconstruction is kept; images outside it
are reported unregistered (NaN pose). The estimator refuses image sets that carry ground truth.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import pycolmap

from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.conventions import w2c_to_c2w
from nvs_ros.core.image_set import ImageSet
from nvs_ros.io.colmap_model import colmap_camera_params, intrinsics_from_colmap

@dataclass(frozen=True)
class ColmapConfig:
    """Every option of a baseline run (recorded in run.json)."""

    max_side: int | None = None
    """Longer image side in pixels after downscaling; None keeps the dataset's size."""
    views: int | None = None
    """Number of views, evenly spaced over the capture order; None takes all."""
    split: str = "train"
    """Dataset split to load (datasets that have splits, e.g. NeRF synthetic)."""
    seed: int = 0
    """Seeds COLMAP's PRNG (RANSAC, mapper, triangulator)."""
    num_threads: int = 2
    """Threads for extraction, matching and mapping (the CPU is shared)."""
    camera_model: Literal["PINHOLE", "SIMPLE_PINHOLE"] = "PINHOLE"
    """Model of the one shared camera. SIMPLE_PINHOLE uses the mean of fx and fy."""
    refine_intrinsics: bool = False
    """Let bundle adjustment and absolute-pose estimation refine the shared focal length(s)."""
    min_model_size: int = 3
    """Smallest reconstruction COLMAP keeps."""
    max_num_features: int = 8192
    """SIFT features per image."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Device for SIFT extraction and matching (pip wheels of pycolmap are CPU-only)."""


@dataclass(frozen=True)
class ColmapResult:
    estimates: CameraEstimates
    timings: dict[str, float]
    """Seconds: features_s, matching_s, mapping_s, total_s."""
    num_models: int
    """Reconstructions COLMAP produced; the largest is kept."""
    num_points3D: int
    """3D points in the kept reconstruction."""
    run_info: dict
    """What run.json records of this run: options, versions, sizes, timings, model counts."""


def shared_intrinsics(K_N33: np.ndarray) -> tuple[np.ndarray, float]:
    """The mean intrinsics of a set and the largest deviation from them, in pixels.

    Calibrated sets (DTU) decompose one physical camera into per-image matrices that differ
    by fractions of a pixel; a single shared camera takes their mean.
    """
    K_33 = K_N33.mean(axis=0)
    return K_33, float(np.abs(K_N33 - K_33).max())


def write_images(image_set: ImageSet, folder: Path) -> list[str]:
    """Lossless PNGs named by index (dataset names may hold folders or odd characters)."""
    file_names = [f"{i:05d}.png" for i in range(len(image_set))]
    for file_name, image_HW3 in zip(file_names, image_set.images_NHW3):
        if not cv2.imwrite(str(folder / file_name), cv2.cvtColor(image_HW3, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {folder / file_name}")
    return file_names


def _pipeline_options(config: ColmapConfig) -> pycolmap.IncrementalPipelineOptions:
    options = pycolmap.IncrementalPipelineOptions()
    options.min_model_size = config.min_model_size
    options.num_threads = config.num_threads
    options.random_seed = config.seed
    options.mapper.random_seed = config.seed
    options.mapper.num_threads = config.num_threads
    options.triangulation.random_seed = config.seed
    refine = config.refine_intrinsics
    options.ba_refine_focal_length = refine
    options.ba_refine_principal_point = False
    options.ba_refine_extra_params = False
    options.mapper.abs_pose_refine_focal_length = refine
    options.mapper.abs_pose_refine_extra_params = False
    return options


def run_colmap(image_set: ImageSet, config: ColmapConfig, work_dir: Path) -> ColmapResult:
    """Incremental SfM on `image_set` (which must carry no ground-truth poses)."""
    if image_set.has_ground_truth:
        raise ValueError("the estimator must not see ground-truth poses: pass without_ground_truth()")
    start = time.perf_counter()
    pycolmap.set_random_seed(config.seed)
    # COLMAP logs every registration step; keep its warnings and errors only.
    pycolmap.logging.minloglevel = int(pycolmap.logging.WARNING)
    image_dir, database = work_dir / "images", work_dir / "database.db"
    image_dir.mkdir(parents=True, exist_ok=True)
    file_names = write_images(image_set, image_dir)
    K_33, K_spread_px = shared_intrinsics(image_set.K_N33)
    device = pycolmap.Device.__members__[config.device]

    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = config.camera_model
    reader.camera_params = ",".join(f"{p:.10g}" for p in colmap_camera_params(K_33, config.camera_model))
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = config.num_threads
    extraction.sift.max_num_features = config.max_num_features
    t0 = time.perf_counter()
    pycolmap.extract_features(database, image_dir, image_names=file_names,
                              camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                              extraction_options=extraction, device=device)
    t1 = time.perf_counter()
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = config.num_threads
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = config.seed
    pycolmap.match_exhaustive(database, matching_options=matching,
                              verification_options=verification, device=device)
    t2 = time.perf_counter()
    models = pycolmap.incremental_mapping(database, image_dir, work_dir / "sparse",
                                          options=_pipeline_options(config))
    t3 = time.perf_counter()

    largest = max(models.values(), key=lambda rec: rec.num_reg_images(), default=None)
    estimates = _estimates_from(largest, image_set, file_names, K_33)
    timings = {"features_s": t1 - t0, "matching_s": t2 - t1, "mapping_s": t3 - t2,
               "total_s": time.perf_counter() - start}
    num_points3D = 0 if largest is None else largest.num_points3D()
    run_info = {"estimator": "pycolmap", "pycolmap_version": pycolmap.__version__,
                "config": dataclasses.asdict(config), "seed": config.seed, "timings": timings,
                "source": image_set.source, "num_views": len(image_set),
                "image_size": [image_set.width, image_set.height], "num_models": len(models),
                "num_points3D": num_points3D, "input_intrinsics_spread_px": K_spread_px}
    return ColmapResult(estimates, timings, len(models), num_points3D, run_info)


def _estimates_from(reconstruction: pycolmap.Reconstruction | None, image_set: ImageSet,
                    file_names: list[str], K_33: np.ndarray) -> CameraEstimates:
    """CameraEstimates for every image of the set; those not in the reconstruction are NaN."""
    n = len(image_set)
    R_w2c_N33, t_w2c_N3 = np.full((n, 3, 3), np.nan), np.full((n, 3), np.nan)
    registered_N = np.zeros(n, dtype=bool)
    K_used_33 = K_33
    images_by_name = {} if reconstruction is None else {
        image.name: image for image in reconstruction.images.values()}
    for i, file_name in enumerate(file_names):
        image = images_by_name.get(file_name)
        if image is None or not image.has_pose:
            continue
        cam_from_world = image.cam_from_world()  # world-to-camera, OpenCV axes
        R_w2c_N33[i] = cam_from_world.rotation.matrix()
        t_w2c_N3[i] = cam_from_world.translation
        registered_N[i] = True
        K_used_33 = intrinsics_from_colmap(image.camera)  # one shared camera: the same for all
    c2w_N44 = w2c_to_c2w(np.where(registered_N[:, None, None], R_w2c_N33, np.eye(3)),
                         np.where(registered_N[:, None], t_w2c_N3, 0.0))
    c2w_N44[~registered_N] = np.nan
    sizes_N2 = np.tile([image_set.width, image_set.height], (n, 1))
    return CameraEstimates(names=list(image_set.names), c2w_N44=c2w_N44, registered_N=registered_N,
                           K_N33=np.tile(K_used_33, (n, 1, 1)), sizes_N2=sizes_N2)
