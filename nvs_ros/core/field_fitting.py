"""Fitting the radiance field to images with known poses: the ground-truth-pose oracle.

One step: pick random pixels over all training images, cast their rays with the given poses,
render, and minimise the photometric MSE plus a total-variation term on the grid (Adam, cosine
learning-rate decay, coarse-to-fine grid resolution, periodic occupancy updates). The pieces
(`TrainingViews`, `sample_ray_batch`, `photometric_loss`, `FieldSchedule`) are reused by the
joint pose + field trainer, which passes its own (differentiable) poses instead of known ones.
"""

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from nvs_ros.core.cameras import rays_from_pixels
from nvs_ros.core.field import FieldConfig, RadianceField
from nvs_ros.core.image_set import ImageSet
from nvs_ros.core.rendering import render_image, render_rays

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
    rays_per_step: int = 4096
    """Random pixels (rays) per optimisation step, over all training images."""
    num_samples: int = 64
    """Stratified samples per ray inside the field's box."""
    background_rgb: float | tuple[float, float, float] = 1.0
    """Colour of rays that leave the box unabsorbed (1.0: white, for objects on white)."""
    final_lr_ratio: float = 0.1
    """The learning rate decays (cosine) from the field's lr to this fraction of it."""
    occupancy_every: int = 16
    """Steps between occupancy-grid updates (0: never skip empty space)."""
    occupancy_start: float = 0.1
    """Fraction of the budget before empty space is first skipped (the field must take shape)."""
    seed: int = 0


class TrainingViews:
    """Training images as float tensors on a device, with their intrinsics.

    Poses are kept apart (an estimator passes its own, differentiable ones).
    """

    def __init__(self, image_set: ImageSet, device: torch.device | str = "cpu") -> None:
        self.images_NHW3 = torch.as_tensor(image_set.images_NHW3, device=device).float() / 255.0
        self.K_N33 = torch.as_tensor(image_set.K_N33, dtype=torch.float32, device=device)
        self.height, self.width = image_set.height, image_set.width

    def __len__(self) -> int:
        return self.images_NHW3.shape[0]

    @property
    def device(self) -> torch.device:
        return self.images_NHW3.device


@dataclass
class RayBatch:
    origins_R3: Tensor
    dirs_R3: Tensor
    target_R3: Tensor
    """Pixel colours in [0, 1]."""
    image_index_R: Tensor
    """Which training image each ray comes from."""


def sample_ray_batch(views: TrainingViews, c2w_N44: Tensor, num_rays: int,
                     generator: torch.Generator | None = None,
                     image_index_R: Tensor | None = None) -> RayBatch:
    """Rays through `num_rays` random pixels of random training images (uniform over pixels),
    cast with the poses c2w_N44 (one per training image; gradients flow into them).

    image_index_R: choose the images yourself (e.g. a minibatch of images); pixels stay random.
    """
    device = views.device
    if image_index_R is None:
        image_index_R = torch.randint(len(views), (num_rays,), device=device, generator=generator)
    num_rays = image_index_R.shape[0]
    u_R = torch.randint(views.width, (num_rays,), device=device, generator=generator)
    v_R = torch.randint(views.height, (num_rays,), device=device, generator=generator)
    uv_R12 = torch.stack([u_R, v_R], dim=-1).float()[:, None, :]
    origins_R13, dirs_R13 = rays_from_pixels(views.K_N33[image_index_R], c2w_N44[image_index_R], uv_R12)
    target_R3 = views.images_NHW3[image_index_R, v_R, u_R]
    return RayBatch(origins_R13[:, 0], dirs_R13[:, 0], target_R3, image_index_R)


def photometric_loss(rendered_R3: Tensor, target_R3: Tensor) -> Tensor:
    """Mean squared colour error (PSNR = -10 log10 of it)."""
    return (rendered_R3 - target_R3).square().mean()


def cosine_lr_factor(progress: float, final_ratio: float) -> float:
    """Learning-rate multiplier at progress in [0, 1]: 1 -> final_ratio along a half cosine."""
    progress = min(max(progress, 0.0), 1.0)
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class FieldSchedule:
    """Coarse-to-fine and occupancy updates of a field as training progresses.

    Call `step(progress, step_index)` once per step; it returns True when the grid was
    upsampled (its parameter replaced: rebuild the optimizer from `field.parameter_groups()`).
    """

    def __init__(self, field: RadianceField, fit_config: FitConfig) -> None:
        self.field = field
        self.fit_config = fit_config
        self._resolutions = list(field.config.resolution_schedule[1:])
        self._fractions = list(field.config.upsample_fractions)
        if len(self._fractions) != len(self._resolutions):
            raise ValueError(f"resolution_schedule {field.config.resolution_schedule} needs "
                             f"{len(self._resolutions)} upsample fractions, got {self._fractions}")

    def step(self, progress: float, step_index: int) -> bool:
        upsampled = False
        while self._fractions and progress >= self._fractions[0]:
            self._fractions.pop(0)
            self.field.upsample(self._resolutions.pop(0))
            upsampled = True
        every = self.fit_config.occupancy_every
        if every and progress >= self.fit_config.occupancy_start and step_index % every == 0:
            self.field.update_occupancy()
        return upsampled


def fit_field(image_set: ImageSet, field_config: FieldConfig, fit_config: FitConfig = FitConfig(),
              steps: int | None = None, time_budget_s: float | None = None,
              device: torch.device | str = "cpu",
              on_step: Callable[[int, float, float], None] | None = None) -> RadianceField:
    """Train a field on `image_set` with its ground-truth poses (the oracle / sanity check).

    Stops after `steps` steps or `time_budget_s` seconds (whichever is given; both: first
    reached). Progress (for learning-rate decay and coarse-to-fine) is measured against it.
    on_step(step, seconds, loss) is called after every step (training curves).
    """
    if image_set.c2w_N44 is None:
        raise ValueError("fit_field needs poses: it is the known-pose oracle")
    if steps is None and time_budget_s is None:
        raise ValueError("give steps or time_budget_s")
    generator = torch.Generator(device=device).manual_seed(fit_config.seed)
    views = TrainingViews(image_set, device)
    c2w_N44 = torch.as_tensor(image_set.c2w_N44, dtype=torch.float32, device=device)
    field = RadianceField(field_config).to(device)
    schedule = FieldSchedule(field, fit_config)
    optimizer = torch.optim.Adam(field.parameter_groups())
    background = torch.as_tensor(fit_config.background_rgb, dtype=torch.float32, device=device)
    start = time.perf_counter()
    step = 0
    while True:
        elapsed = time.perf_counter() - start
        progress = max(step / steps if steps else 0.0, elapsed / time_budget_s if time_budget_s else 0.0)
        if progress >= 1.0:
            break
        if schedule.step(progress, step):
            optimizer = torch.optim.Adam(field.parameter_groups())
        for group in optimizer.param_groups:
            group["lr"] = field.config.lr * cosine_lr_factor(progress, fit_config.final_lr_ratio)
        batch = sample_ray_batch(views, c2w_N44, fit_config.rays_per_step, generator)
        out = render_rays(field, batch.origins_R3, batch.dirs_R3, fit_config.num_samples, background,
                          skip_empty=fit_config.occupancy_every > 0, generator=generator)
        loss = photometric_loss(out.rgb_R3, batch.target_R3)
        total = loss + field.config.tv_weight * field.tv_loss() if field.config.tv_weight else loss
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        step += 1
        if on_step is not None:
            on_step(step, time.perf_counter() - start, loss.item())
    _logger.info("field fitted: %d steps in %.1f s, last loss %.5f, grid %s, occupied %.2f",
                 step, time.perf_counter() - start, loss.item(), tuple(field.grid.shape[2:]),
                 field.occupied_fraction())
    field.update_occupancy()
    return field


@torch.no_grad()
def render_views(field: RadianceField, image_set: ImageSet, c2w_N44: Tensor | None = None,
                 num_samples: int = 64, background_rgb: float | tuple[float, float, float] = 1.0) -> Tensor:
    """Render every view of `image_set` (its poses, or c2w_N44) as (N, H, W, 3) in [0, 1]."""
    device = field.grid.device
    if c2w_N44 is None:
        if image_set.c2w_N44 is None:
            raise ValueError("no poses to render from")
        c2w_N44 = torch.as_tensor(image_set.c2w_N44, dtype=torch.float32)
    K_N33 = torch.as_tensor(image_set.K_N33, dtype=torch.float32)
    background = torch.as_tensor(background_rgb, dtype=torch.float32, device=device)
    return torch.stack([render_image(field, K_N33[n], c2w_N44[n], image_set.height, image_set.width,
                                     num_samples=num_samples, background_rgb=background).rgb_R3
                        for n in range(len(image_set))])
