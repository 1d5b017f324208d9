"""The tiny trained scene the analysis-by-synthesis tests share (test/core: render_compare,
direct_alignment, registration, outlier_correction; trained once per session by the fixtures in
test/core/conftest.py), and helpers to move its cameras."""

import math
from dataclasses import replace

import numpy as np
import torch
from tiny_engine import TINY

from nvs_ros.core.cameras import so3_exp
from nvs_ros.core.image_set import ImageSet
from nvs_ros.core.metrics import rotation_angle_deg
from nvs_ros.core.scene import Scene
from nvs_ros.core.trainer import reconstruct
from nvs_ros.io.datasets import load_image_set

HELD_OUT = [4, 13]

KEEPING_THE_FIELD = replace(TINY, fresh_field=False, refine_fraction=0.25, lr_refine_learnt=TINY.lr_refine)
"""These tests judge registration on the scene, not the trainer: at this size a fresh field for the
refinement gets 300 steps, too few to fit 32 px views as finely (training views registered 5.3-5.9
degrees from their poses, against under 5 refined with the field of pose learning; test_trainer
tests the fresh field)."""


def load_ring_views() -> ImageSet:
    """18 views of the bundled object on a ring, 32 px."""
    return load_image_set("bundled:object", max_side=32, views=18)


def train_ring_scene(views: ImageSet) -> Scene:
    """Trained (estimated poses, ~30 s) on 16 of 18 views on a ring; views 4 and 13 held out."""
    torch.set_num_threads(1)
    train = views.subset([i for i in range(len(views)) if i not in HELD_OUT])
    result = reconstruct(train.without_ground_truth(), KEEPING_THE_FIELD)
    TRAIN_IMAGES.update(zip(views.names, views.images_NHW3))
    return Scene.from_training(result.engine, KEEPING_THE_FIELD, train.names, train.images_NHW3, train.K_N33,
                               result.c2w_N44)


TRAIN_IMAGES: dict[str, np.ndarray] = {}
"""The ring's images by name (the scene keeps thumbnails only)."""


def training_image(scene: Scene, i: int) -> np.ndarray:
    """The image of the scene's training view i."""
    return TRAIN_IMAGES[scene.names[i]]


def turned_about_the_centre(c2w_B44: torch.Tensor, degrees: float, axis: tuple[float, float, float]
                            ) -> torch.Tensor:
    """Cameras turned about the scene's centre (the world origin): along the viewing sphere."""
    turn_44 = torch.eye(4)
    turn_44[:3, :3] = so3_exp((torch.tensor(axis) * math.radians(degrees))[None])[0]
    return turn_44 @ c2w_B44


def angle_between(a_B44: torch.Tensor, b_B44: torch.Tensor) -> np.ndarray:
    """(B,) degrees between the cameras' rotations."""
    return rotation_angle_deg((a_B44[:, :3, :3].transpose(1, 2) @ b_B44[:, :3, :3]).double().numpy())


def training_views_moved(scene: Scene, degrees: float, shift: float
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training views 0, 1, 2, 4 (images, K), their poses, and those poses turned about the
    centre and shifted."""
    train_index = [0, 1, 2, 4]
    images = torch.from_numpy(np.stack([training_image(scene, i) for i in train_index])).float() / 255.0
    K = torch.from_numpy(scene.K_N33[train_index]).float()
    truth = torch.from_numpy(scene.c2w_N44[train_index]).float()
    start = turned_about_the_centre(truth, degrees, (0.6, 0.0, 0.8))
    start[:, :3, 3] += shift
    return images, K, truth, start
