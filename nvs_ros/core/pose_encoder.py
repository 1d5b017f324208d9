"""The pose-distribution encoder: a small CNN, trained from scratch per scene, that maps a (noisy)
image and its diffusion timestep to K pose hypotheses plus a probability over them.

For 360-degree captures the K hypotheses are tied to anchors on the viewing sphere (see
core.orbit_poses): hypothesis k is "anchor k plus a bounded residual", so the hypotheses cannot
all collapse onto one pose and training can explore views that are far apart. A single-pose
predictor (K = 1) collapses on 360 captures (one pose for every image, the field learns the
average image); with K >= 8 every anchor stays in use (measured, see the findings note).
Forward-facing captures use the same backbone with one twist per image (core.forward_poses).

Everything here is standard ONNX ops (conv, GroupNorm, SiLU, bilinear resize, tanh, sigmoid,
softmax), so the encoder exports to ONNX at opset >= 16 (nvs_ros.runtime.graph).
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvs_ros.core.orbit_poses import OrbitConfig, anchor_angles, elevation_from_logit, elevation_logit


@dataclass(frozen=True)
class PoseEncoderConfig:
    """Architecture of the encoder (the anchors live in `OrbitConfig`)."""

    input_size: int = 64
    """Images are resized (bilinear) to input_size x input_size before the first conv."""
    channels: tuple[int, ...] = (32, 64, 128, 128)
    """Output channels of the stride-2 conv stages."""
    hidden: int = 256
    """Width of the fully connected layer after global pooling."""
    groups: int = 8
    """GroupNorm groups (must divide every entry of `channels`)."""
    azimuth_residual_scale: float = 1.0
    """Largest azimuth residual, in units of half the anchor spacing (1.0: each anchor covers its
    own sector; the residual is tanh-bounded, which keeps a gradient everywhere)."""
    initial_logit_std: float = 1.0
    """Std of the logit rows of the last layer at initialisation. 0 gives every image the
    uniform distribution: the field is then trained from all anchors alike and learns a
    symmetric blob, which the noisy classification targets break only slowly (measured on
    bundled:object, 8 views, 32 px, K = 8: still uniform after 3000 steps). > 0 makes the
    distributions image-dependent from the first step; same setting, 1500 steps: 0.3 reached
    RRA@15 0.32/0.18/0.36 (seeds 0/1/2), 1.0 reached 1.00/1.00 (seeds 0/2, after the trainer's
    re-assignment and refinement)."""
    orbit: OrbitConfig = field(default_factory=OrbitConfig)
    """Anchors on the viewing sphere and the elevation range."""


@dataclass
class PoseHypotheses:
    """K pose hypotheses per image (angles in radians, orbit parameterisation of core.orbit_poses)."""

    azimuth_BK: Tensor
    elevation_BK: Tensor
    logits_BK: Tensor

    @property
    def probs_BK(self) -> Tensor:
        return torch.softmax(self.logits_BK, dim=-1)

    def top(self) -> tuple[Tensor, Tensor, Tensor]:
        """(azimuth_B, elevation_B, probability_B) of the most likely hypothesis of each image."""
        probs_BK = self.probs_BK
        prob_B, k_B = probs_BK.max(dim=-1)
        pick = k_B[:, None]
        return self.azimuth_BK.gather(1, pick)[:, 0], self.elevation_BK.gather(1, pick)[:, 0], prob_B


def _stage(c_in: int, c_out: int, groups: int) -> nn.Sequential:
    # One conv per stage: a second one at each resolution made a training step ~5x slower
    # on the 2-core CPU (measured) for no measured gain.
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU())


def conv_backbone(config: PoseEncoderConfig) -> tuple[nn.Sequential, int]:
    """The stride-2 conv stages over RGB + a timestep channel, and their output width."""
    # 3 colour channels + 1 channel that carries the timestep (t / T, constant over the image)
    stages, c_in = [], 4
    for c_out in config.channels:
        stages.append(_stage(c_in, c_out, config.groups))
        c_in = c_out
    return nn.Sequential(*stages), c_in


def pooled_features(backbone: nn.Module, size: int, images_B3HW: Tensor, t_frac_B: Tensor) -> Tensor:
    """(B, C + 1): globally pooled backbone features of the images resized to size x size, and t / T."""
    if images_B3HW.ndim != 4 or images_B3HW.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images_B3HW.shape)}")
    x_B3HW = F.interpolate(images_B3HW, size=(size, size), mode="bilinear", align_corners=False)
    t_B1 = t_frac_B.to(x_B3HW).reshape(-1, 1)
    t_plane_B1HW = t_B1[:, :, None, None].expand(-1, 1, size, size)
    features_BC = backbone(torch.cat([x_B3HW, t_plane_B1HW], dim=1)).mean(dim=(2, 3))
    return torch.cat([features_BC, t_B1], dim=1)


class PoseEncoder(nn.Module):
    """(noisy image, timestep) -> K anchored pose hypotheses + logits."""

    def __init__(self, config: PoseEncoderConfig = PoseEncoderConfig()) -> None:
        super().__init__()
        self.config = config
        azimuth_K, elevation_K = anchor_angles(config.orbit)
        self.num_hypotheses = len(azimuth_K)
        self.register_buffer("anchor_azimuth_K", azimuth_K)
        self.register_buffer("anchor_elevation_logit_K", elevation_logit(elevation_K, config.orbit))
        self.backbone, c_in = conv_backbone(config)
        self.head = nn.Sequential(nn.Linear(c_in + 1, config.hidden), nn.SiLU(),
                                  nn.Linear(config.hidden, 3 * self.num_hypotheses))
        # Start at the anchors (zero residuals); every hypothesis gets rendered and compared
        # from the first step on.
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        if config.initial_logit_std > 0:
            with torch.no_grad():
                self.head[-1].weight.view(self.num_hypotheses, 3, -1)[:, 2].normal_(0.0, config.initial_logit_std)
        self._max_residual = config.azimuth_residual_scale * math.pi / config.orbit.num_azimuths

    def forward(self, images_B3HW: Tensor, t_frac_B: Tensor) -> PoseHypotheses:
        """images_B3HW: RGB in [-1, 1] (x_t of the diffusion, any size); t_frac_B: t / T in [0, 1].

        Returns azimuth (wrapped to nothing: anchor + residual, may leave [-pi, pi]) and
        elevation (inside the OrbitConfig range) per hypothesis, radians, and the logits.
        """
        features_BC = pooled_features(self.backbone, self.config.input_size, images_B3HW, t_frac_B)
        out_BK3 = self.head(features_BC).reshape(-1, self.num_hypotheses, 3)
        azimuth_BK = self.anchor_azimuth_K + self._max_residual * torch.tanh(out_BK3[..., 0])
        elevation_BK = elevation_from_logit(self.anchor_elevation_logit_K + out_BK3[..., 1],
                                            self.config.orbit)
        return PoseHypotheses(azimuth_BK, elevation_BK, out_BK3[..., 2])

