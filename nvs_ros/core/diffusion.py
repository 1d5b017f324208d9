"""The DDPM that wraps pose encoder + radiance field (Generative Lifting).

Training step: take clean images x0, sample t and noise eps, form x_t = sqrt(abar_t) x0 +
sqrt(1 - abar_t) eps; the encoder predicts K pose hypotheses and their probabilities p_k from
(x_t, t); the field renders every hypothesis; the rendered image is the model's estimate of x0
(x0-prediction), so the denoising loss of hypothesis k is its photometric error e_k against x0.
    loss = sum_k p_k e_k + lambda * CE(logits, argmin_k e_k)
The first term trains the field (on every hypothesis, weighted) and the probabilities; the
second sharpens the distribution toward the best hypothesis.

Images enter the encoder in [-1, 1] (the DDPM's data range); colours are rendered in [0, 1].
Rays are subsampled: `rays_per_step` rendered rays per step over all images and hypotheses;
the hypotheses of one image are rendered at the same pixels, so their errors compare.

`noise="none"` turns the same system into a plain autoencoder (image -> pose -> rendered
image), the paper's ablation. Measured on this CPU (findings note): noise on the encoder input
with t ~ U[0, 100 or 300] from the first step settled in a wrong self-consistent solution while
the noise-free run converged; so noise follows a curriculum that lets t_max grow only after
the poses have settled (`t_max_at`). Measured on the tiny
bundled:object test scene (8 views, 32 px, 1500 steps, RRA@15 / median relative rotation
error after the trainer): none 1.00 / 3.9 and 2.8 degrees (seeds 0, 2); ddpm t_max 100 ramped
over 0.5..0.8 of the phase 1.00 / 2.4, 2.9, 2.5 degrees (seeds 0, 1, 2); t_max 100 from the
start 1.00 / 2.9 (seed 0); t_max 300 from the start 0.46 / 41.5 (seed 1). On
nerf_synthetic_chair (100 views, 64 px, 15 min, seed 0, RRA@15 / CCA@0.1 / median relative
rotation error): none 0.85 / 0.84 / 3.8 degrees, the default curriculum 0.86 / 0.90 / 2.7.
One seed each at full scale: the default is the curriculum because it was never worse.

Sampling: start from x_T ~ N(0, I), let the encoder pick a pose, render it (= x0 estimate),
step to the next t with DDIM (eta = 0); the last render is the generated view. Reconstruction:
render from a given pose.
"""

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvs_ros.core import cameras, rendering
from nvs_ros.core.pose_encoder import PoseHypotheses


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule and training objective."""

    noise: Literal["none", "ddpm"] = "ddpm"
    """"none": plain autoencoder (t = 0, clean input); "ddpm": x_t from the schedule below."""
    schedule: Literal["linear", "cosine"] = "linear"
    """Betas: linear 1e-4..0.02 (Ho et al.) or cosine (Nichol & Dhariwal)."""
    num_timesteps: int = 1000
    """T."""
    t_max: int = 100
    """Largest t drawn in training once the curriculum is done (t ~ U[0, t_max])."""
    t_ramp: tuple[float, float] = (0.5, 0.8)
    """Fractions of the pose-learning phase between which t_max grows linearly from 0; before
    the first the input is clean (the poses settle), after the second t_max is reached."""
    ce_weight: float = 0.1
    """lambda of the classification term."""
    rays_per_step: int = 8192
    """Rendered rays per step, over all images and hypotheses."""
    samples_per_ray: int = 32
    """Field samples per ray."""
    background: float = 1.0
    """Background colour (grey level) behind the field's box (background_model "constant")."""
    background_model: Literal["constant", "envmap"] = "constant"
    """"envmap": a learnable colour per world direction (equirectangular, background_size)
    behind the box, for scenes whose surroundings lie outside the field's box (a room)."""
    background_size: tuple[int, int] = (16, 32)
    """(elevation, azimuth) cells of the environment map."""


class NoiseSchedule(nn.Module):
    """DDPM betas and cumulative alphas, t in {0, ..., T - 1}."""

    def __init__(self, kind: Literal["linear", "cosine"] = "linear", num_timesteps: int = 1000) -> None:
        super().__init__()
        if kind == "linear":
            betas_T = torch.linspace(1e-4, 0.02, num_timesteps, dtype=torch.float64)
        elif kind == "cosine":
            s = 0.008
            steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
            f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
            betas_T = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        else:
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {kind!r}")
        self.num_timesteps = num_timesteps
        self.register_buffer("betas_T", betas_T.float())
        self.register_buffer("alpha_bar_T", torch.cumprod(1 - betas_T, dim=0).float())

    def q_sample(self, x0: Tensor, t_B: Tensor, eps: Tensor) -> Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, per batch element (dim 0)."""
        abar = self.alpha_bar_T[t_B].reshape(-1, *([1] * (x0.ndim - 1)))
        return abar.sqrt() * x0 + (1 - abar).sqrt() * eps


def t_max_at(config: DiffusionConfig, progress: float) -> int:
    """Curriculum: the largest t at `progress` (0..1) of the pose-learning phase."""
    if config.noise == "none":
        return 0
    start, end = config.t_ramp
    if progress <= start:
        return 0
    frac = 1.0 if progress >= end else (progress - start) / max(end - start, 1e-9)
    return int(round(frac * config.t_max))


@dataclass
class LossTerms:
    """One training step's loss and what it is made of."""

    loss: Tensor
    photometric: Tensor
    """sum_k p_k e_k, mean over images."""
    classification: Tensor
    errors_BK: Tensor
    """Photometric error (MSE) of every hypothesis, detached."""
    hypotheses: PoseHypotheses
    """(core.forward_poses.ForwardHypotheses in forward mode)"""


class GenerativeLifting(nn.Module):
    """Encoder + field + per-image pose refinements inside a DDPM."""

    def __init__(self, encoder: nn.Module, field: nn.Module, refinement: nn.Module,
                 config: DiffusionConfig = DiffusionConfig(), ray_space: nn.Module | None = None) -> None:
        """encoder + refinement: PoseEncoder + PoseRefinement (360) or their forward-facing
        counterparts (core.forward_poses); ray_space maps world rays into the field's
        coordinates (forward: NDC), None: the field is in world coordinates."""
        super().__init__()
        self.encoder = encoder
        self.field = field
        self.refinement = refinement
        self.ray_space = ray_space
        self.config = config
        self.schedule = NoiseSchedule(config.schedule, config.num_timesteps)
        self.envmap = None
        if config.background_model == "envmap":
            # raw colours, sigmoid -> [0, 1]; starts grey
            self.envmap = nn.Parameter(torch.zeros(1, 3, *config.background_size))

    def background(self, dirs_R3: Tensor) -> Tensor | float:
        """Background colour of rays leaving the box: (R, 3) from the environment map, or the
        constant grey level."""
        if self.envmap is None:
            return self.config.background
        u_R = torch.atan2(dirs_R3[:, 1], dirs_R3[:, 0]) / math.pi
        v_R = -torch.asin(dirs_R3[:, 2].clamp(-1.0, 1.0)) * (2.0 / math.pi)  # row 0 = straight up
        grid_11R2 = torch.stack([u_R, v_R], dim=-1)[None, None]
        rgb_13_1R = F.grid_sample(self.envmap, grid_11R2, mode="bilinear", padding_mode="border",
                                  align_corners=False)
        return torch.sigmoid(rgb_13_1R[0, :, 0].transpose(0, 1))

    # ------------------------------------------------------------------ training

    def noisy_input(self, x0_B3HW: Tensor, t_B: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x_t in [-1, 1]-scaled units from clean images x0 in [0, 1]."""
        x0 = 2.0 * x0_B3HW - 1.0
        if self.config.noise == "none":
            return x0
        # Drawn where the generator lives (the trainer's is on the CPU), so a seed gives the same
        # noise on every device.
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype,
                          device=x0.device if generator is None else generator.device).to(x0.device)
        return self.schedule.q_sample(x0, t_B, eps)

    def sample_t(self, batch: int, t_max: int, device: torch.device,
                 generator: torch.Generator | None = None) -> Tensor:
        """t ~ U{0, ..., t_max} (all zeros when t_max is 0)."""
        if t_max <= 0:
            return torch.zeros(batch, dtype=torch.long, device=device)
        return torch.randint(0, t_max + 1, (batch,), generator=generator, device="cpu").to(device)

    def training_loss(self, x0_B3HW: Tensor, targets_BHW3: Tensor, K_B33: Tensor, index_B: Tensor,
                      t_B: Tensor, generator: torch.Generator | None = None) -> LossTerms:
        """The denoising objective of one batch.

        x0_B3HW: clean images in [0, 1] at the encoder's input size; targets_BHW3: the same
        images in [0, 1] at the rendering resolution, whose intrinsics are K_B33 (OpenCV);
        index_B: image indices (for the per-image refinements); t_B: timesteps.
        """
        hyp = self.encoder(self.noisy_input(x0_B3HW, t_B, generator),
                           t_B.float() / self.schedule.num_timesteps)
        c2w_BK44 = self.refinement.hypotheses_c2w(hyp, index_B)
        b, k = c2w_BK44.shape[:2]
        pixels = max(1, self.config.rays_per_step // (b * k))
        uv_BP2, target_BP3 = random_pixels(targets_BHW3, pixels, generator)
        rgb_BKP3 = self.render_pixels(K_B33, c2w_BK44, uv_BP2)
        errors_BK = ((rgb_BKP3 - target_BP3[:, None]) ** 2).mean(dim=(-1, -2))
        probs_BK = hyp.probs_BK
        photometric = (probs_BK * errors_BK).sum(dim=-1).mean()
        classification = F.cross_entropy(hyp.logits_BK, errors_BK.detach().argmin(dim=-1))
        return LossTerms(photometric + self.config.ce_weight * classification, photometric,
                         classification, errors_BK.detach(), hyp)

    def posed_loss(self, targets_BHW3: Tensor, K_B33: Tensor, c2w_B44: Tensor,
                   generator: torch.Generator | None = None) -> Tensor:
        """Photometric MSE of images rendered from known (or refined) poses: the loss of the
        refinement phase and of the oracle with ground-truth poses."""
        b = targets_BHW3.shape[0]
        uv_BP2, target_BP3 = random_pixels(targets_BHW3, max(1, self.config.rays_per_step // b), generator)
        rgb_BP3 = self.render_pixels(K_B33, c2w_B44[:, None], uv_BP2)[:, 0]
        return ((rgb_BP3 - target_BP3) ** 2).mean()

    def render_pixels(self, K_B33: Tensor, c2w_BK44: Tensor, uv_BP2: Tensor,
                      randomize: bool = True) -> Tensor:
        """(B, K, P, 3) colours of pixels uv_BP2 of image b seen from each of its K poses."""
        b, k = c2w_BK44.shape[:2]
        p = uv_BP2.shape[1]
        K_M33 = K_B33[:, None].expand(b, k, 3, 3).reshape(-1, 3, 3)
        uv_MP2 = uv_BP2[:, None].expand(b, k, p, 2).reshape(-1, p, 2)
        origins_MP3, dirs_MP3 = cameras.rays_from_pixels(K_M33, c2w_BK44.reshape(-1, 4, 4), uv_MP2)
        origins_R3, dirs_R3 = origins_MP3.reshape(-1, 3), dirs_MP3.reshape(-1, 3)
        background = self.background(dirs_R3)
        if self.ray_space is not None:
            origins_R3, dirs_R3 = self.ray_space(origins_R3, dirs_R3)
        out = rendering.render_rays(self.field, origins_R3, dirs_R3,
                                    self.config.samples_per_ray, background_rgb=background,
                                    randomize=randomize)
        return out.rgb_R3.reshape(b, k, p, 3)

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def predict(self, x0_B3HW: Tensor) -> PoseHypotheses:
        """Pose hypotheses of clean images in [0, 1] (t = 0)."""
        t_B = torch.zeros(x0_B3HW.shape[0], device=x0_B3HW.device)
        return self.encoder(2.0 * x0_B3HW - 1.0, t_B)

    @torch.no_grad()
    def render_view(self, K_33: Tensor, c2w_44: Tensor, height: int, width: int) -> Tensor:
        """Reconstruction: the (H, W, 3) image in [0, 1] seen from a given pose."""
        return self.render_full(K_33, c2w_44, height, width).rgb_R3

    @torch.no_grad()
    def render_full(self, K_33: Tensor, c2w_44: Tensor, height: int, width: int,
                    num_samples: int = 64) -> rendering.RenderOutput:
        """rendering.render_image with this model's background (colour, depth, opacity)."""
        if self.ray_space is not None:
            return self._render_full_mapped(K_33, c2w_44, height, width, num_samples)
        background = self.config.background
        if self.envmap is not None:
            uv_1P2 = cameras.pixel_grid(height, width, device=c2w_44.device)[None]
            _, dirs_1P3 = cameras.rays_from_pixels(K_33[None].float(), c2w_44[None].float(), uv_1P2)
            background = self.background(dirs_1P3[0])
        return rendering.render_image(self.field, K_33, c2w_44, height, width, num_samples, background_rgb=background)

    @torch.no_grad()
    def sample(self, K_33: Tensor, height: int, width: int, num_steps: int = 10,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Generation: from pure noise, let the encoder pick a pose (drawn from its distribution)
        and denoise by rendering it, DDIM steps from T - 1 down to 0. Returns the generated
        (H, W, 3) image in [0, 1] and its camera-to-world pose (4, 4)."""
        device = K_33.device
        size = self.encoder.config.input_size
        x_t = torch.randn((1, 3, size, size), generator=generator, device="cpu").to(device)
        steps = torch.linspace(self.schedule.num_timesteps - 1, 0, num_steps).round().long().tolist()
        scale = torch.tensor([[size / width, 0, 0], [0, size / height, 0], [0, 0, 1]], device=device)
        for i, t in enumerate(steps):
            hyp = self.encoder(x_t, torch.full((1,), t / self.schedule.num_timesteps, device=device))
            k = torch.multinomial(hyp.probs_BK.cpu(), 1, generator=generator).to(device)
            # a generated view belongs to no training image: no per-image refinement
            c2w_44 = self.refinement.free_c2w(hyp)[0, int(k)]
            if i == len(steps) - 1:
                break
            K_small = _scaled_intrinsics(K_33, scale)
            x0_hat = 2.0 * self.render_view(K_small, c2w_44, size, size).permute(2, 0, 1)[None] - 1.0
            abar, abar_next = self.schedule.alpha_bar_T[t], self.schedule.alpha_bar_T[steps[i + 1]]
            eps_hat = (x_t - abar.sqrt() * x0_hat) / (1 - abar).sqrt()
            x_t = abar_next.sqrt() * x0_hat + (1 - abar_next).sqrt() * eps_hat
        return self.render_view(K_33, c2w_44, height, width), c2w_44

    @torch.no_grad()
    def _render_full_mapped(self, K_33: Tensor, c2w_44: Tensor, height: int, width: int,
                            num_samples: int = 64, chunk: int = 16384) -> rendering.RenderOutput:
        """render_full through `ray_space`: depths are world z-depths along the camera's axis
        (back-projected from the field's coordinates), the background is constant."""
        uv_1P2 = cameras.pixel_grid(height, width, device=c2w_44.device)[None]
        origins_P3, dirs_P3 = (x[0] for x in cameras.rays_from_pixels(K_33[None].float(), c2w_44[None].float(),
                                                                      uv_1P2))
        mapped_P3, mapped_dirs_P3 = self.ray_space(origins_P3, dirs_P3)
        parts = [rendering.render_rays(self.field, mapped_P3[s:s + chunk], mapped_dirs_P3[s:s + chunk],
                                       num_samples, self.config.background, randomize=False)
                 for s in range(0, len(mapped_P3), chunk)]
        rgb_P3 = torch.cat([p.rgb_R3 for p in parts])
        depth_P = torch.cat([p.depth_R for p in parts])
        opacity_P = torch.cat([p.opacity_R for p in parts])
        world_P3 = self.ray_space.to_world(mapped_P3 + depth_P[:, None] * mapped_dirs_P3)
        c2w_44 = c2w_44.float()
        z_depth_P = ((world_P3 - c2w_44[:3, 3]) @ c2w_44[:3, 2]) * (opacity_P > 1e-6)
        return rendering.RenderOutput(rgb_R3=rgb_P3.reshape(height, width, 3),
                                      depth_R=(z_depth_P / cameras.ray_z_scale(K_33[None].float(), uv_1P2)[0]
                                               ).reshape(height, width),
                                      opacity_R=opacity_P.reshape(height, width),
                                      z_depth_R=z_depth_P.reshape(height, width))


def _scaled_intrinsics(K_33: Tensor, scale_33: Tensor) -> Tensor:
    """Intrinsics after resizing (OpenCV pixel centres: u -> (u + 0.5) s - 0.5)."""
    K = scale_33 @ K_33
    K[0, 2] += 0.5 * scale_33[0, 0] - 0.5
    K[1, 2] += 0.5 * scale_33[1, 1] - 0.5
    return K


def random_pixels(images_BHW3: Tensor, count: int,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """`count` random integer pixel centres per image (u right, v down, float) and their colours."""
    b, h, w, _ = images_BHW3.shape
    flat_BP = torch.randint(0, h * w, (b, count), generator=generator, device="cpu").to(images_BHW3.device)
    colours_BP3 = images_BHW3.reshape(b, h * w, 3).gather(1, flat_BP[..., None].expand(b, count, 3))
    uv_BP2 = torch.stack([flat_BP % w, flat_BP // w], dim=-1).to(images_BHW3.dtype)
    return uv_BP2, colours_BP3
