"""The pose-distribution encoder and the orbit parameterisation of 360-degree captures."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from nvs_ros.core import cameras
from nvs_ros.core.orbit_poses import (OrbitConfig, PoseRefinement, anchor_angles, elevation_from_logit,
                                      elevation_logit, orbit_radius_for_fov)
from nvs_ros.core.pose_encoder import PoseEncoder, PoseEncoderConfig

SMALL = PoseEncoderConfig(input_size=32, channels=(8, 16, 16, 16), hidden=32, groups=4)


def _wrapped_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.atan2(torch.sin(a - b), torch.cos(a - b))


def test_anchors_cover_the_sphere() -> None:
    azimuth_K, elevation_K = anchor_angles(OrbitConfig())
    assert azimuth_K.shape == elevation_K.shape == (16,)
    # 8 azimuths x 2 staggered rings: 16 distinct azimuths, 22.5 degrees apart
    sorted_deg = np.sort(np.degrees(azimuth_K.numpy()) % 360.0)
    np.testing.assert_allclose(np.diff(sorted_deg), 22.5, atol=1e-4)
    np.testing.assert_allclose(sorted(set(np.round(np.degrees(elevation_K.numpy()), 3))), [20.0, 50.0])


def test_elevation_mapping_is_smooth_and_invertible() -> None:
    config = OrbitConfig()
    elevation = torch.tensor([-0.2, 0.0, 0.5, 1.4])
    np.testing.assert_allclose(elevation_from_logit(elevation_logit(elevation, config), config), elevation,
                               atol=1e-5)
    logit = torch.tensor([30.0], requires_grad=True)  # far outside: still inside the range, with a gradient
    value = elevation_from_logit(logit, config)
    value.backward()
    assert value.item() <= math.radians(85.0) + 1e-6 and logit.grad.item() >= 0.0
    logit2 = torch.tensor([3.0], requires_grad=True)
    elevation_from_logit(logit2, config).backward()
    assert logit2.grad.item() > 1e-3


def test_orbit_radius_makes_the_scene_ball_fill_the_view() -> None:
    size, fov = 64, math.radians(55.0)
    focal = 0.5 * size / math.tan(fov / 2)
    K_33 = torch.tensor([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2], [0, 0, 1.0]])
    radius = orbit_radius_for_fov(K_33, size, size, scene_radius=1.25)
    assert radius == pytest.approx(1.25 / math.sin(fov / 2), rel=1e-6)


def test_refinement_deltas_move_the_camera_and_zero_is_identity() -> None:
    config = OrbitConfig()
    refinement = PoseRefinement(3, config, radius=3.0)
    azimuth_BK = torch.tensor([[0.3, 1.0], [2.0, -1.0]])
    elevation_BK = torch.tensor([[0.2, 0.6], [0.4, 0.1]])
    index_B = torch.tensor([0, 2])
    c2w_BK44 = refinement.c2w(azimuth_BK, elevation_BK, index_B)
    expected = cameras.orbit_c2w(azimuth_BK.reshape(-1), elevation_BK.reshape(-1), 3.0).reshape(2, 2, 4, 4)
    torch.testing.assert_close(c2w_BK44, expected, atol=1e-5, rtol=0)
    with torch.no_grad():
        refinement.delta_N4[2, 0] = 0.5      # azimuth of image 2 only
        refinement.delta_N4[2, 3] = math.log(2.0)  # and its radius doubles
    moved = refinement.c2w(azimuth_BK, elevation_BK, index_B)
    torch.testing.assert_close(moved[0], expected[0], atol=1e-5, rtol=0)
    centre = moved[1, 0, :3, 3].detach()
    assert centre.norm().item() == pytest.approx(6.0, rel=1e-4)
    assert math.atan2(centre[1], centre[0]) == pytest.approx(2.5, abs=1e-4)


def test_encoder_outputs_probabilities_and_hypotheses_near_their_anchors() -> None:
    torch.manual_seed(0)
    encoder = PoseEncoder(SMALL)
    images = torch.rand(5, 3, 48, 40) * 2 - 1
    hyp = encoder(images, torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]))
    k = encoder.num_hypotheses
    assert k == 16
    assert hyp.azimuth_BK.shape == hyp.elevation_BK.shape == hyp.logits_BK.shape == (5, k)
    torch.testing.assert_close(hyp.probs_BK.sum(dim=-1), torch.ones(5))
    # every hypothesis stays within its anchor's sector even for large raw outputs
    with torch.no_grad():
        encoder.head[-1].bias.normal_(0.0, 10.0)
    hyp = encoder(images, torch.zeros(5))
    anchor_az_K, _ = anchor_angles(SMALL.orbit)
    assert _wrapped_difference(hyp.azimuth_BK, anchor_az_K).abs().max() <= math.pi / 8 + 1e-5
    lo, hi = (math.radians(d) for d in SMALL.orbit.elevation_range_deg)
    assert hyp.elevation_BK.min() >= lo and hyp.elevation_BK.max() <= hi
    az_B, el_B, p_B = hyp.top()
    assert az_B.shape == el_B.shape == p_B.shape == (5,)
    torch.testing.assert_close(p_B, hyp.probs_BK.max(dim=-1).values)


def test_encoder_starts_at_the_anchors() -> None:
    encoder = PoseEncoder(replace(SMALL, initial_logit_std=0.0))
    hyp = encoder(torch.rand(2, 3, 32, 32), torch.zeros(2))
    anchor_az_K, anchor_el_K = anchor_angles(SMALL.orbit)
    torch.testing.assert_close(hyp.azimuth_BK, anchor_az_K.expand(2, -1))
    torch.testing.assert_close(hyp.elevation_BK, anchor_el_K.expand(2, -1), atol=1e-4, rtol=0)
    torch.testing.assert_close(hyp.probs_BK, torch.full((2, 16), 1 / 16))
    # with the default initialisation the distributions differ per image, the anchors stay
    torch.manual_seed(0)
    hyp = PoseEncoder(SMALL)(torch.rand(2, 3, 32, 32) * 2 - 1, torch.zeros(2))
    torch.testing.assert_close(hyp.azimuth_BK, anchor_az_K.expand(2, -1))
    assert (hyp.probs_BK[0] - hyp.probs_BK[1]).abs().max() > 1e-3


def test_encoder_depends_on_image_and_timestep() -> None:
    torch.manual_seed(1)
    encoder = PoseEncoder(SMALL)
    torch.nn.init.normal_(encoder.head[-1].weight, std=0.5)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    a = encoder(images, torch.zeros(2)).logits_BK
    assert not torch.allclose(a[0], a[1])
    b = encoder(images, torch.ones(2)).logits_BK
    assert not torch.allclose(a, b)

