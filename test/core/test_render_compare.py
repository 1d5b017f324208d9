"""Render-and-compare on the tiny trained scene: refinement recovers a known perturbation."""

import numpy as np
import torch
from ring_scene import angle_between, training_views_moved

from nvs_ros.core.render_compare import refine_poses, view_residuals
from nvs_ros.core.scene import Scene


def test_refinement_recovers_a_known_perturbation(ring_scene: Scene) -> None:
    images, K, truth, start = training_views_moved(ring_scene, 8.0, 0.08)
    refined = refine_poses(ring_scene.engine, images, K, start, steps=60, rays_per_view=256,
                           generator=torch.Generator().manual_seed(0))
    before, after = angle_between(start, truth), angle_between(refined, truth)
    assert np.median(after) < 0.4 * np.median(before), (before, after)
    assert view_residuals(ring_scene.engine, images, K, refined).mean() < view_residuals(ring_scene.engine, images, K, start).mean()
