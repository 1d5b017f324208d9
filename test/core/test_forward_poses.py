"""Forward-facing mode: the near-identity pose model, the NDC ray space, and a short run on the
bundled forward arc that must improve the poses over the reference pose everybody starts at."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from nvs_ros.core import cameras
from nvs_ros.core.diffusion import DiffusionConfig, GenerativeLifting
from nvs_ros.core.field import FieldConfig
from nvs_ros.core.forward_poses import (ForwardConfig, ForwardPoseEncoder, ForwardPoses, NDCRays,
                                        build_forward_engine, forward_gauge, ndc_box_half_size)
from nvs_ros.core.metrics import evaluate_poses
from nvs_ros.core.pose_encoder import PoseEncoderConfig
from nvs_ros.core.trainer import reconstruct
from nvs_ros.core.training_run import TrainingProgress
from nvs_ros.core.trainer_config import TrainerConfig
from nvs_ros.io.datasets import load_image_set

SMALL_ENCODER = PoseEncoderConfig(input_size=32, channels=(16, 32, 32, 32), hidden=64, groups=4)
K_33 = torch.tensor([[30.0, 0.0, 15.0], [0.0, 30.0, 15.0], [0.0, 0.0, 1.0]])


def test_encoder_starts_at_the_reference_pose() -> None:
    encoder = ForwardPoseEncoder(SMALL_ENCODER)
    hyp = encoder(torch.rand(3, 3, 32, 32) * 2 - 1, torch.tensor([0.0, 0.3, 1.0]))
    assert hyp.twist_BK6.shape == (3, 1, 6) and hyp.probs_BK.shape == (3, 1)
    c2w = ForwardPoses(5).hypotheses_c2w(hyp, torch.tensor([0, 2, 4]))
    assert torch.allclose(c2w, torch.eye(4).expand(3, 1, 4, 4), atol=1e-6)


def test_ndc_rays_follow_the_projective_map() -> None:
    """A world point seen by a moved camera lies on that camera's NDC ray, at the NDC position
    the map gives; to_world undoes the map."""
    rays = NDCRays(K_33, 32, 32, near=1.0)
    c2w = cameras.se3_exp(torch.tensor([[0.2, -0.1, 0.05, 0.02, -0.05, 0.01]]))
    point_3 = torch.tensor([0.3, -0.2, 4.0])
    origin_3 = c2w[0, :3, 3]
    origins, dirs = rays(origin_3[None], ((point_3 - origin_3) / (point_3 - origin_3).norm())[None])
    # pixel centres: u = 30 x / z + 15 in [-0.5, 31.5] -> 2 (u + 0.5) / 32 - 1
    ndc_3 = torch.stack([60.0 / 32 * point_3[0] / point_3[2] - 1.0 / 32,
                         60.0 / 32 * point_3[1] / point_3[2] - 1.0 / 32, 1 - 2.0 / point_3[2]])
    offset_3 = ndc_3 - origins[0]
    assert torch.allclose(offset_3 / offset_3.norm(), dirs[0], atol=1e-5)
    assert origins[0, 2] == -1.0
    assert torch.allclose(rays.to_world(ndc_3[None])[0], point_3, atol=1e-5)


def _engine(n: int) -> GenerativeLifting:
    return build_forward_engine(n, K_33, 32, 32, ForwardConfig(), SMALL_ENCODER, FieldConfig(resolution=12),
                                DiffusionConfig(rays_per_step=256, samples_per_ray=8))


def test_gradients_reach_the_forward_pose_parameters() -> None:
    torch.manual_seed(0)
    engine = _engine(4)
    with torch.no_grad():  # some texture, so that moving a camera changes what it sees
        engine.field.grid.normal_(0.0, 1.0)
    images = torch.rand(4, 32, 32, 3)
    x0 = images.permute(0, 3, 1, 2)
    index = torch.arange(4)
    terms = engine.training_loss(x0, images, K_33.expand(4, 3, 3), index, torch.tensor([0, 10, 50, 99]))
    terms.loss.backward()
    assert engine.refinement.twist_N6.grad.abs().sum(dim=1).min() > 0  # every image
    assert engine.encoder.head[-1].weight.grad[:6].abs().sum() > 0  # the twist rows of the encoder
    assert engine.field.grid.grad.abs().sum() > 0
    assert tuple(engine.field.box_max_3.tolist()) == pytest.approx(ndc_box_half_size(ForwardConfig()))


def test_forward_gauge_puts_the_reference_at_the_identity() -> None:
    c2w = cameras.se3_exp(torch.tensor([[1.0, 2.0, 3.0, 0.1, 0.2, 0.3],
                                        [1.5, 2.0, 3.0, 0.1, 0.2, 0.3],
                                        [2.0, 2.0, 3.0, 0.1, 0.2, 0.3]])).double().numpy()
    gauge = forward_gauge(c2w, ForwardConfig(near=2.0, oracle_spread=0.5))
    assert np.allclose(gauge[1], np.eye(4), atol=1e-9)
    spread = np.sqrt(((gauge[:, :3, 3] - gauge[:, :3, 3].mean(0)) ** 2).sum(1).mean())
    assert spread == pytest.approx(1.0)


# 64 px: at 32 px the room's texture is too coarse for the arc's poses (measured: no
# improvement over the reference pose, 8 or 12 views, 500-600 steps).
TINY = TrainerConfig(
    mode="forward", time_budget_s=None, iterations=700, coarse_size=32, fine_size=64, coarse_grid=24, fine_grid=32,
    batch_images=12, refine_fraction=0.2, reassign_size=16, occupancy_every=1000, encoder=SMALL_ENCODER,
    diffusion=DiffusionConfig(rays_per_step=2048, samples_per_ray=24), field=FieldConfig(resolution=24),
)


def test_short_forward_run_reduces_pose_error() -> None:
    """Every camera starts at the reference pose. Measured (seed 0, 700 steps, 30 s on the busy
    CPU): camera-centre error (ATE after Sim(3) alignment, scene units: the arc spans ~1.9) from
    ~0.55 (all centres at one point) to 0.03, CCA@0.1 0 -> 1. Rotations stay where they started
    (median relative rotation error 6.6 degrees, the arc's own): the room's planar walls let a
    translation explain what the arc's convergent rotation does at 64 px (fern, not planar,
    goes from 6.9 to ~1.5 degrees). Seeds 1 and 2 (this config, or the default encoder with
    4096 rays and 500 steps) ended at ATE 0.29-0.56: a single short run is not reliable here,
    the trainer's restarts (lowest photometric loss wins) exist for that."""
    scene = load_image_set("bundled:room:arc", max_side=64, views=12)
    initial = []

    def first_step(progress: TrainingProgress) -> None:
        if progress.step == 1:
            c2w = progress.engine.refinement.hypotheses_c2w(progress.engine.predict(torch.from_numpy(
                scene.images_NHW3).permute(0, 3, 1, 2).float() / 255.0), torch.arange(12))[:, 0]
            initial.append(evaluate_poses(c2w.detach().double().numpy(), np.ones(12, bool), scene.c2w_N44))

    result = reconstruct(scene.without_ground_truth(), TINY, first_step)
    final = evaluate_poses(result.c2w_N44, np.ones(12, bool), scene.c2w_N44)
    assert initial[0]["ATE"] > 0.4 and initial[0]["CCA@0.1"] < 0.2, initial
    assert final["ATE"] < 0.3 * initial[0]["ATE"], (initial, final)
    assert final["CCA@0.1"] >= 0.75, final
    assert final["median_relative_rotation_error_deg"] < 1.3 * initial[0]["median_relative_rotation_error_deg"], final
    assert {row["phase"] for row in result.curves} == {"poses[0]", "poses", "refine"}


def test_forward_oracle_fits_the_images() -> None:
    scene = load_image_set("bundled:room:arc", max_side=32, views=8)
    result = reconstruct(scene, replace(TINY, poses="gt", iterations=200, coarse_size=16, fine_size=32))
    assert (-10 * np.log10(result.photometric_error_N)).mean() > 17.0
    relative = np.swapaxes(result.c2w_N44[4:5, :3, :3], 1, 2) @ result.c2w_N44[:, :3, :3]
    assert np.allclose(relative, np.swapaxes(scene.c2w_N44[4:5, :3, :3], 1, 2) @ scene.c2w_N44[:, :3, :3], atol=1e-5)


def test_forward_capture_starts_from_initial_poses() -> None:
    """Poses from elsewhere (chained features, odometry: another frame and scale, centres off by
    ~10% of the arc) replace pose learning in forward mode too; the refinement pulls the centres in."""
    scene = load_image_set("bundled:room:arc", max_side=64, views=12)
    rng = np.random.default_rng(0)
    elsewhere = np.eye(4)
    elsewhere[:3, :3] = cameras.so3_exp(torch.tensor([[0.3, -0.2, 1.0]], dtype=torch.float64))[0].numpy()
    elsewhere[:3, 3] = [2.0, -1.0, 0.5]
    initial = elsewhere @ scene.c2w_N44
    initial[:, :3, 3] += rng.normal(0.0, 0.1, (12, 3))
    initial[:, :3, 3] *= 4.0
    before = evaluate_poses(initial, np.ones(12, bool), scene.c2w_N44)
    result = reconstruct(scene.without_ground_truth(), replace(TINY, iterations=300), initial_c2w_N44=initial)
    after = evaluate_poses(result.c2w_N44, np.ones(12, bool), scene.c2w_N44)
    assert {row["phase"] for row in result.curves} == {"refine"}
    assert after["ATE"] < 0.8 * before["ATE"], (before, after)  # measured 0.129 -> 0.085; all at the reference: 0.55
    # the room's planar walls trade rotation for translation (test above): rotations drift a little
    assert after["median_relative_rotation_error_deg"] < 5.0, after
