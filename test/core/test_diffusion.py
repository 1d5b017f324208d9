"""The DDPM wrapper: noise schedule, the denoising objective through encoder + field, sampling."""

import math

import pytest
import torch

from nvs_ros.core import cameras
from nvs_ros.core.diffusion import DiffusionConfig, GenerativeLifting, NoiseSchedule, random_pixels, t_max_at
from nvs_ros.core.field import FieldConfig, RadianceField
from nvs_ros.core.orbit_poses import OrbitConfig, PoseRefinement
from nvs_ros.core.pose_encoder import PoseEncoder, PoseEncoderConfig

SMALL_ENCODER = PoseEncoderConfig(input_size=32, channels=(8, 16, 16, 16), hidden=32, groups=4,
                                  orbit=OrbitConfig(num_azimuths=4, ring_elevations_deg=(20.0, 50.0)))
SIZE = 16


def _engine(noise: str = "none", rays: int = 2048) -> GenerativeLifting:
    torch.manual_seed(0)
    field = RadianceField(FieldConfig(resolution=16, initial_opacity=0.3))
    refinement = PoseRefinement(4, SMALL_ENCODER.orbit, radius=3.0)
    config = DiffusionConfig(noise=noise, rays_per_step=rays, samples_per_ray=16)
    return GenerativeLifting(PoseEncoder(SMALL_ENCODER), field, refinement, config)


def _intrinsics(batch: int) -> torch.Tensor:
    focal = 0.5 * SIZE / math.tan(math.radians(25.0))
    K_33 = torch.tensor([[focal, 0, (SIZE - 1) / 2], [0, focal, (SIZE - 1) / 2], [0, 0, 1.0]])
    return K_33.expand(batch, 3, 3).clone()


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_q_sample_has_the_mean_and_variance_of_alpha_bar(kind: str) -> None:
    schedule = NoiseSchedule(kind, 1000)
    assert schedule.alpha_bar_T[0] > 0.99 and schedule.alpha_bar_T[-1] < 1e-3
    assert (schedule.alpha_bar_T[1:] < schedule.alpha_bar_T[:-1]).all()
    generator = torch.Generator().manual_seed(0)
    x0 = torch.full((4, 20000), 0.7)
    t_B = torch.tensor([0, 100, 500, 900])
    x_t = schedule.q_sample(x0, t_B, torch.randn(x0.shape, generator=generator))
    abar_B = schedule.alpha_bar_T[t_B]
    torch.testing.assert_close(x_t.mean(dim=1), 0.7 * abar_B.sqrt(), atol=0.02, rtol=0)
    torch.testing.assert_close(x_t.var(dim=1), 1 - abar_B, atol=0.02, rtol=0.05)


def test_curriculum_keeps_the_input_clean_until_the_ramp() -> None:
    ddpm = DiffusionConfig(noise="ddpm", t_max=300, t_ramp=(0.5, 0.8))
    assert [t_max_at(ddpm, p) for p in (0.0, 0.5, 0.65, 0.8, 1.0)] == [0, 0, 150, 300, 300]
    assert t_max_at(DiffusionConfig(noise="none"), 1.0) == 0


def test_noise_none_is_an_autoencoder_and_ddpm_adds_noise() -> None:
    x0 = torch.rand(2, 3, 8, 8)
    t = torch.tensor([500, 500])
    torch.testing.assert_close(_engine("none").noisy_input(x0, t), 2 * x0 - 1)
    noisy = _engine("ddpm").noisy_input(x0, t, torch.Generator().manual_seed(0))
    assert (noisy - (2 * x0 - 1)).abs().mean() > 0.3


def test_random_pixels_returns_the_colours_at_those_pixels() -> None:
    images = torch.rand(2, 5, 7, 3)
    uv, colours = random_pixels(images, 30, torch.Generator().manual_seed(1))
    assert uv.shape == (2, 30, 2) and colours.shape == (2, 30, 3)
    u, v = uv[1, :, 0].long(), uv[1, :, 1].long()
    assert (u < 7).all() and (v < 5).all()
    torch.testing.assert_close(colours[1], images[1, v, u])


def _batch(engine: GenerativeLifting) -> tuple[torch.Tensor, ...]:
    """Four images of the engine's own field seen from two anchors (a consistent scene)."""
    with torch.no_grad():  # a dense coloured ball in the middle of the box, empty around it
        coords = torch.linspace(-1, 1, engine.field.grid.shape[-1])
        z, y, x = torch.meshgrid(coords, coords, coords, indexing="ij")
        inside = (x**2 + y**2 + z**2) < 0.4
        engine.field.grid[0, 0] = torch.where(inside, 4.0, -6.0)
        engine.field.grid[0, 1:] = 3.0 * torch.stack([x, y, z])
    c2w = cameras.orbit_c2w(torch.tensor([0.0, 0.0, math.pi, math.pi]), torch.full((4,), 0.35), 3.0)
    K = _intrinsics(4)
    targets = torch.stack([engine.render_view(K[i], c2w[i], SIZE, SIZE) for i in range(4)])
    x0 = torch.nn.functional.interpolate(targets.permute(0, 3, 1, 2), size=(32, 32), mode="bilinear")
    return x0, targets, K, torch.arange(4)


def test_gradients_reach_encoder_refinements_and_field() -> None:
    engine = _engine()
    x0, targets, K, index = _batch(engine)
    with torch.no_grad():
        engine.field.grid.mul_(0.5)  # the field no longer explains the images exactly
    terms = engine.training_loss(x0, targets, K, index, torch.zeros(4, dtype=torch.long),
                                 torch.Generator().manual_seed(0))
    assert terms.errors_BK.shape == (4, 8)
    torch.testing.assert_close(terms.loss, terms.photometric + 0.1 * terms.classification)
    terms.loss.backward()
    encoder_grad = sum(p.grad.abs().sum() for p in engine.encoder.parameters() if p.grad is not None)
    assert encoder_grad > 0
    assert engine.refinement.delta_N4.grad[:, [0, 1, 3]].abs().min() > 0  # every image, az/el/radius
    assert engine.refinement.twist_N6.grad.abs().sum() > 0
    assert engine.field.grid.grad.abs().sum() > 0


def test_loss_decreases_on_a_fixed_batch() -> None:
    engine = _engine(rays=512)
    x0, targets, K, index = _batch(engine)
    with torch.no_grad():
        engine.field.grid.zero_()
    optimizer = torch.optim.Adam([{"params": engine.encoder.parameters(), "lr": 1e-3},
                                  {"params": engine.field.parameters(), "lr": 0.05}])
    losses = []
    for step in range(25):
        terms = engine.training_loss(x0, targets, K, index, torch.zeros(4, dtype=torch.long),
                                     torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        terms.loss.backward()
        optimizer.step()
        losses.append(float(terms.photometric.detach()))
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_posed_loss_is_zero_for_the_true_poses_and_sampling_renders_a_view() -> None:
    engine = _engine()
    x0, targets, K, index = _batch(engine)
    c2w = cameras.orbit_c2w(torch.tensor([0.0, 0.0, math.pi, math.pi]), torch.full((4,), 0.35), 3.0)
    engine.config = DiffusionConfig(rays_per_step=2048, samples_per_ray=64)
    # same renderer settings as the targets (midpoints, 64 samples): only the sample jitter differs
    exact = engine.posed_loss(targets, K, c2w, torch.Generator().manual_seed(0))
    wrong = engine.posed_loss(targets, K, c2w.flip(0), torch.Generator().manual_seed(0))
    assert exact < 0.1 * wrong
    image, pose = engine.sample(K[0], SIZE, SIZE, num_steps=3, generator=torch.Generator().manual_seed(0))
    assert image.shape == (SIZE, SIZE, 3) and pose.shape == (4, 4)
    assert torch.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    assert pose[:3, 3].norm().item() == pytest.approx(3.0, rel=1e-4)  # on the orbit sphere


def test_environment_map_colours_rays_by_world_direction() -> None:
    torch.manual_seed(0)
    field = RadianceField(FieldConfig(resolution=8))
    engine = GenerativeLifting(PoseEncoder(SMALL_ENCODER), field, PoseRefinement(1, SMALL_ENCODER.orbit, 3.0),
                               DiffusionConfig(background_model="envmap", background_size=(8, 16)))
    with torch.no_grad():
        engine.envmap[:, :, :4] = 5.0   # upper hemisphere bright
        engine.envmap[:, :, 4:] = -5.0  # lower hemisphere dark
        engine.envmap[:, 0, :, :8] = -5.0  # red off where azimuth < 0 (u < 0)
    dirs = torch.tensor([[0.0, 0.05, 1.0], [0.0, 0.05, -1.0], [0.6, 0.5, 0.5], [0.6, -0.5, 0.5]])
    rgb = engine.background(torch.nn.functional.normalize(dirs, dim=-1))
    assert rgb[0].min() > 0.95 and rgb[1].max() < 0.05
    assert rgb[2, 0] > 0.95 and rgb[3, 0] < 0.05 and rgb[3, 1] > 0.95
    rgb.sum().backward()
    assert engine.envmap.grad.abs().sum() > 0
