"""nvs_ros.app.reconstruction: the initial poses of the views registered after training become their
priors in the trained scene's gauge, and a registration that lands on its prior is confirmed."""

from dataclasses import replace

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from tiny_engine import TINY

from nvs_ros.core.sim3 import Sim3
from nvs_ros.core.refine_config import RefineConfig
from nvs_ros.core.scene import Scene
from nvs_ros.core.trainer import reconstruct
from nvs_ros.io.datasets import load_image_set
from nvs_ros.app.reconstruction import all_estimates, confirmed_by_prior, held_out_priors

GAUGE = load_image_set("bundled", max_side=16, views=12).c2w_N44
"""A ring of 12 cameras: 10 trained, views 0 and 6 held out."""
HELD_OUT = np.isin(np.arange(12), [0, 6])
TO_FILE = Sim3(2.5, Rotation.from_euler("xyz", [10.0, -20.0, 35.0], degrees=True).as_matrix(),
               np.array([1.0, -2.0, 3.0]))
"""From the scene's gauge to the frame of the initial poses (another scale, orientation, origin)."""


def test_held_out_views_get_their_initial_poses_in_the_scene_gauge() -> None:
    initial = TO_FILE.apply_c2w(GAUGE)
    initial[6] = np.nan  # no initial pose for this one
    priors = held_out_priors(GAUGE[~HELD_OUT], initial, HELD_OUT)
    np.testing.assert_allclose(priors[0], GAUGE[0], atol=1e-9)
    assert np.isnan(priors[1]).all()
    initial[0] = np.nan
    assert held_out_priors(GAUGE[~HELD_OUT], initial, HELD_OUT) is None


def test_a_registration_is_confirmed_only_where_it_lands_on_its_prior() -> None:
    near, turned, moved = GAUGE[0].copy(), GAUGE[0].copy(), GAUGE[0].copy()
    near[:3, 3] += 0.02
    turned[:3, :3] = turned[:3, :3] @ Rotation.from_euler("y", 8.0, degrees=True).as_matrix()
    moved[:3, 3] *= 1.3
    confirmed = confirmed_by_prior(GAUGE[~HELD_OUT], np.stack([near, turned, moved, near]),
                                   np.stack([GAUGE[0], GAUGE[0], GAUGE[0], np.full((4, 4), np.nan)]))
    assert confirmed.tolist() == [True, False, False, False]
    trained = GAUGE[~HELD_OUT].copy()
    trained[3] = np.nan  # a view taken out as an outlier has no pose
    assert confirmed_by_prior(trained, near[None], GAUGE[:1]).tolist() == [True]


def test_a_held_out_view_is_registered_from_its_initial_pose_and_confirmed_by_it() -> None:
    """A tiny scene started from its known poses, whose registration accepts nothing on
    confidence alone (min_confidence above 1): the held-out view is accepted only when its
    initial pose is given, and then lands on it; ~20 s."""
    torch.set_num_threads(1)
    views = load_image_set("bundled:object", max_side=32, views=9)
    held_out_N = np.arange(9) == 4
    train = views.subset(np.flatnonzero(~held_out_N))
    config = replace(TINY, iterations=600)
    result = reconstruct(train.without_ground_truth(), config, initial_c2w_N44=TO_FILE.apply_c2w(train.c2w_N44))
    scene = Scene.from_training(result.engine, config, train.names, train.images_NHW3, train.K_N33, result.c2w_N44,
                                refine=RefineConfig(min_confidence=1.01))
    without = all_estimates(views, held_out_N, result, scene, config)
    assert not without.registered_N[4]
    initial = TO_FILE.apply_c2w(views.c2w_N44)
    with_prior = all_estimates(views, held_out_N, result, scene, config, initial)
    assert with_prior.registered_N[4]
    prior = held_out_priors(scene.c2w_N44, initial, held_out_N)[0]
    assert confirmed_by_prior(scene.c2w_N44, with_prior.c2w_N44[4:5], prior[None])[0]
