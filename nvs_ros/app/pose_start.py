"""Where a reconstruction's camera poses start: learnt from the images alone, chained from image
features, read from a poses file, or given by odometry.

A start is asked for as `reconstruct --init` asks: "auto", "none", "features" or the path of an
output folder / poses.json, a COLMAP model (or the dataset folder holding one) or a nerfstudio /
instant-ngp / NeRF-synthetic transforms.json (or its folder): that is the only way their poses
reach an estimator. `resolve_pose_start` turns the request into an `InitialPoses`: the
poses (or none) and where they came from, with the trainer settings that go with them.
"""

import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Literal

import numpy as np

from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.errors import InputError
from nvs_ros.core.image_set import ImageSet
from nvs_ros.core.trainer_config import TrainerConfig, config_for_mode
from nvs_ros.io.colmap_model import find_colmap_model, read_colmap_model
from nvs_ros.io.datasets import load_for_features
from nvs_ros.io.output_folder import read_poses
from nvs_ros.io.transforms_json import is_nerf_synthetic, is_transforms_folder, read_transforms_poses

_log = logging.getLogger(__name__)


class PoseStart(str, Enum):
    """Where the initial poses came from. The values are the words the live scene reports
    (core.live_scene.LiveStatus.pose_start) and run.json records as "initial_poses"."""

    LEARNT = "learnt"
    """None given: the poses are learnt from the images alone."""
    FEATURES = "features"
    """Chained from OpenCV features through the ordered images."""
    POSES_FILE = "poses file"
    """Read from an output folder or poses.json, a COLMAP model or a transforms.json; they also
    fix the products' frame and scale."""
    ODOMETRY = "odometry"
    """The robot's odometry (TF) at each keyframe's stamp; fixes frame and metric scale."""


AUTO, NONE, FEATURES = "auto", "none", "features"
"""The named `--init` requests; anything else is the path of a poses file."""
INIT_HELP = "auto|none|features|POSES"


@dataclass(frozen=True)
class InitialPoses:
    """The poses a reconstruction starts from and their source."""

    start: PoseStart
    c2w_N44: np.ndarray | None = None
    """Camera-to-world (OpenCV axes) per image of the set, NaN rows where a view is not placed;
    None when the poses are learnt."""
    request: str = NONE
    """The `--init` value this was resolved from (run.json "init")."""

    @property
    def prior_source(self) -> str | None:
        """The name of the source that fixes the products' frame and scale, None where the
        reconstruction keeps its own gauge (learnt poses; chained ones have no scale either)."""
        return self.start.value if self.start in (PoseStart.POSES_FILE, PoseStart.ODOMETRY) else None

    def trainer_config(self, mode: Literal["360", "forward"], **settings) -> TrainerConfig:
        """The configuration for `mode`, then `settings`, for a start from these poses: chained
        ones are kept as they are."""
        config = config_for_mode(mode, **settings)
        return config.keeping_initial_poses() if self.start is PoseStart.FEATURES else config

    def learnt_alternative(self, mode: Literal["360", "forward"], **settings) -> TrainerConfig | None:
        """The configuration that learns the poses where chained ones are not converged (chained
        poses the scene does not bear out are not kept blindly); None for other starts."""
        return config_for_mode(mode, **settings) if self.start is PoseStart.FEATURES else None


LEARNT = InitialPoses(PoseStart.LEARNT)


def resolve_pose_start(init: str, source: str | Path, image_set: ImageSet, views: int | None = None,
                       split: str = "train") -> InitialPoses:
    """`init` resolved for `image_set` loaded from `source` (with `views` and `split`): features
    are chained on the same views loaded at a size features can use (io.datasets.load_for_features)."""
    feature_set = (load_for_features(source, image_set, views=views, split=split)
                   if init in (AUTO, FEATURES) else None)
    return initial_poses(init, image_set, feature_set)


def initial_poses(init: str, image_set: ImageSet, feature_set: ImageSet | None = None) -> InitialPoses:
    """`init` for `image_set`: none (learnt); features (OpenCV pose chaining of the ordered images,
    of `feature_set` where given); auto (the chained poses where they place at least half of the
    images, else learnt); or an output folder / poses.json whose poses (matched by image name;
    missing ones NaN) start the refinement."""
    if init == NONE:
        return LEARNT
    if init in (AUTO, FEATURES):
        c2w_N44 = _chained_poses(image_set if feature_set is None else feature_set, required=init == FEATURES)
        return (InitialPoses(PoseStart.LEARNT, None, init) if c2w_N44 is None
                else InitialPoses(PoseStart.FEATURES, c2w_N44, init))
    return InitialPoses(PoseStart.POSES_FILE, read_poses_file(Path(init), image_set), init)


def read_pose_source(path: Path) -> CameraEstimates:
    """The poses at `path`: an output folder or poses.json, a COLMAP model (text or binary, or a
    folder holding one in sparse/0), or a transforms.json (or the folder holding one)."""
    path = Path(path)
    if path.suffix == ".json" and path.name.startswith("transforms") or path.is_dir() and (
            is_transforms_folder(path) or is_nerf_synthetic(path)):
        return read_transforms_poses(path)
    if path.is_dir() and not (path / "poses.json").is_file() and find_colmap_model(path) is not None:
        return read_colmap_model(path)
    return read_poses(path)


def read_poses_file(path: Path, image_set: ImageSet) -> np.ndarray:
    """(N, 4, 4) poses of `image_set`'s views from a poses source (`read_pose_source`), matched
    by image name; NaN where the file has none (or the view is unregistered there)."""
    estimates = read_pose_source(path)
    by_name = {name: i for i, name in enumerate(estimates.names)}
    c2w_N44 = np.full((len(image_set), 4, 4), np.nan)
    for i, name in enumerate(image_set.names):
        if name in by_name and estimates.registered_N[by_name[name]]:
            c2w_N44[i] = estimates.c2w_N44[by_name[name]]
    if not np.isfinite(c2w_N44[:, 0, 0]).any():
        raise InputError(f"{path} places none of the {len(image_set)} images (poses are matched by image name, "
                         f"such as {image_set.names[0]!r}; the file names {estimates.names[:2]}...)")
    _log.info("initial poses for %d of %d images from %s", int(np.isfinite(c2w_N44[:, 0, 0]).sum()),
              len(image_set), path)
    return c2w_N44


def _chained_poses(feature_set: ImageSet, required: bool) -> np.ndarray | None:
    """The chained poses (NaN where a view is not placed), or None (`required`: an error) where
    fewer than half of the views are placed: too little texture or resolution for features."""
    from nvs_ros.baselines.feature_chaining import chained_start

    c2w_N44, placed = chained_start(feature_set.without_ground_truth())
    if c2w_N44 is None and required:
        raise InputError(f"feature chaining placed only {placed} of {len(feature_set)} images (too little "
                         "texture or resolution for features): try --init none")
    if c2w_N44 is None:
        _log.info("too few placed to start from: the poses are learnt from the images alone")
    return c2w_N44
