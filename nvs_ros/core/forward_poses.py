"""Camera poses of a forward-facing capture, and the NDC ray space its field lives in.

Scene gauge (ours to choose, not ground truth): the world frame is a reference camera's frame
(OpenCV axes: x right, y down, looking down +z); every camera is near it ("forward": the
photographer stepped sideways in front of one scene, as LLFF captures are taken). A pose is
an se(3) twist xi = (rho, omega) about that reference, c2w = exp(xi); xi = 0 is the reference.
So one hypothesis per image (K = 1) with a near-identity prior replaces the 360 mode's anchors
on a sphere: the encoder predicts a bounded twist (tanh: rotation up to `max_rotation_deg`,
translation up to `max_translation`), zero at initialisation, and per-image learnable twists
refine it (as ACE0's pose refiner), c2w = exp(xi_encoder) @ exp(xi_refine).

Unknown depth (the scene reaches to infinity): the field is a voxel grid in the reference
camera's normalised device coordinates (NDC, as LLFF NeRF), where a world point (x, y, z)
maps to (a_x x / z + b_x, a_y y / z + b_y, 1 - 2 n / z): the reference image spans x, y in
[-1, 1] and depth n..infinity spans z in [-1, 1], uniformly in inverse depth (disparity).
Lines stay lines under this projective map, so a camera ray becomes an NDC ray (its part
beyond the near plane, origin on it) and the standard renderer samples it uniformly in NDC.
The near depth n is a gauge too (scale is unknown): it fixes the unit of translation, which
is why the translation bound is in units of n. Other cameras see past the reference's image
edges: the field's box is wider than [-1, 1] in x and y (`ForwardConfig.ndc_margin`).
"""

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from nvs_ros.core import cameras
from nvs_ros.core.diffusion import DiffusionConfig, GenerativeLifting
from nvs_ros.core.field import FieldConfig, RadianceField
from nvs_ros.core.pose_encoder import PoseEncoderConfig, conv_backbone, pooled_features

_MIN_DIR_Z = 1e-3
"""Rays must travel forward (+z of the reference) to reach the NDC volume; flatter ones are bent
to this slope (cameras near the reference never get there)."""


@dataclass(frozen=True)
class ForwardConfig:
    """Gauge, pose bounds and field box of the forward mode."""

    near: float = 1.0
    """Depth of the near plane in the reference frame (the gauge's unit of length)."""
    max_rotation_deg: float = 20.0
    """Largest rotation the encoder predicts about each axis (tanh-bounded, degrees)."""
    max_translation: float = 0.5
    """Largest translation the encoder predicts along each axis, in units of `near`."""
    ndc_margin: float = 1.3
    """Half-size in x and y of the field's box in NDC (z spans [-1, 1]); 1 is the reference's
    image, larger covers what the other cameras see beside it."""
    oracle_spread: float = 0.2
    """Known poses (the oracle) are scaled so that the RMS distance of the camera centres from
    their mean is this many `near` units: known poses carry no depth, and a hand-held forward
    capture's baseline is a fraction of its nearest depth (LLFF fern: 0.2)."""


@dataclass
class ForwardHypotheses:
    """K pose hypotheses per image as twists about the reference camera (K = 1 here)."""

    twist_BK6: Tensor
    logits_BK: Tensor

    @property
    def probs_BK(self) -> Tensor:
        return torch.softmax(self.logits_BK, dim=-1)


class ForwardPoseEncoder(nn.Module):
    """(noisy image, timestep) -> one bounded twist per image (+ a logit, K = 1).

    The backbone is the pose-distribution encoder's (core.pose_encoder); the head's last layer
    starts at zero, so every image starts at the reference pose (the near-identity prior).
    """

    def __init__(self, config: PoseEncoderConfig = PoseEncoderConfig(),
                 forward: ForwardConfig = ForwardConfig()) -> None:
        super().__init__()
        self.config = config
        self.num_hypotheses = 1
        self.backbone, width = conv_backbone(config)
        self.head = nn.Sequential(nn.Linear(width + 1, config.hidden), nn.SiLU(), nn.Linear(config.hidden, 7))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        bounds = [forward.max_translation * forward.near] * 3 + [math.radians(forward.max_rotation_deg)] * 3
        self.register_buffer("bounds_6", torch.tensor(bounds))

    def forward(self, images_B3HW: Tensor, t_frac_B: Tensor) -> ForwardHypotheses:
        """images_B3HW: RGB in [-1, 1] (x_t, any size); t_frac_B: t / T in [0, 1]."""
        out_B7 = self.head(pooled_features(self.backbone, self.config.input_size, images_B3HW, t_frac_B))
        twist_B6 = self.bounds_6 * torch.tanh(out_B7[:, :6])
        return ForwardHypotheses(twist_B6[:, None], out_B7[:, 6:])


class ForwardPoses(nn.Module):
    """Per-image learnable twists on top of the encoder's (zero at the start), the forward
    counterpart of core.orbit_poses.PoseRefinement (same methods, used by the diffusion wrapper
    and the trainer). `base_N6` holds the encoder's twist per image once it has been fixed."""

    def __init__(self, num_images: int) -> None:
        super().__init__()
        self.twist_N6 = nn.Parameter(torch.zeros(num_images, 6))
        self.register_buffer("base_N6", torch.zeros(num_images, 6))

    def free_c2w(self, hyp: ForwardHypotheses) -> Tensor:
        """(B, K, 4, 4) poses of the hypotheses alone (no per-image refinement)."""
        return cameras.se3_exp(hyp.twist_BK6)

    def hypotheses_c2w(self, hyp: ForwardHypotheses, index_B: Tensor) -> Tensor:
        """(B, K, 4, 4) camera-to-world of the hypotheses of images `index_B`, refined."""
        refine_B116 = self.twist_N6[index_B][:, None]
        return cameras.se3_exp(hyp.twist_BK6) @ cameras.se3_exp(refine_B116.expand_as(hyp.twist_BK6))

    def base_c2w(self, index_B: Tensor) -> Tensor:
        """(B, 4, 4) refined poses of images `index_B` around their fixed base twist."""
        return cameras.se3_exp(self.base_N6[index_B]) @ cameras.se3_exp(self.twist_N6[index_B])

    def set_base_to_top(self, hyp: ForwardHypotheses) -> Tensor:
        """Fix every image's base at its (only) hypothesis, restart the refinements from zero;
        returns the hypothesis' probability (1 with K = 1)."""
        with torch.no_grad():
            self.base_N6.copy_(hyp.twist_BK6[:, 0])
            self.twist_N6.zero_()
        return hyp.probs_BK[:, 0]

    @torch.no_grad()
    def start_at(self, c2w_N44: Tensor) -> None:
        """Every image starts at a given pose (forward gauge): the base is that pose, the
        refinements zero."""
        self.base_N6.copy_(cameras.se3_log(c2w_N44.to(self.base_N6)))
        self.twist_N6.zero_()

    def refinement_parameters(self) -> list[nn.Parameter]:
        return [self.twist_N6]


class NDCRays(nn.Module):
    """Maps world rays (the reference camera's frame) to rays in its NDC volume."""

    def __init__(self, K_33: Tensor, height: int, width: int, near: float) -> None:
        super().__init__()
        K = torch.as_tensor(K_33, dtype=torch.float32)
        # pixel u = fx x / z + cx, centres at integers: u in [-0.5, W - 0.5] -> [-1, 1]
        scale_2 = torch.stack([2.0 * K[0, 0] / width, 2.0 * K[1, 1] / height])
        offset_2 = torch.stack([2.0 * (K[0, 2] + 0.5) / width - 1.0, 2.0 * (K[1, 2] + 0.5) / height - 1.0])
        self.register_buffer("scale_2", scale_2)
        self.register_buffer("offset_2", offset_2)
        self.near = float(near)

    def forward(self, origins_R3: Tensor, dirs_R3: Tensor) -> tuple[Tensor, Tensor]:
        """(origins, unit directions) in NDC of the rays' parts beyond the near plane."""
        dz_R = dirs_R3[:, 2].clamp_min(_MIN_DIR_Z)
        dirs_R3 = torch.cat([dirs_R3[:, :2], dz_R[:, None]], dim=1)
        # Move each origin along its ray onto the near plane z = n.
        origins_R3 = origins_R3 + ((self.near - origins_R3[:, 2]) / dz_R)[:, None] * dirs_R3
        xy_R2 = origins_R3[:, :2] / self.near
        origins_ndc_R3 = torch.cat([self.scale_2 * xy_R2 + self.offset_2,
                                    torch.full_like(dz_R[:, None], -1.0)], dim=1)
        # The ray's point at infinity is (scale d_xy / d_z + offset, 1).
        far_xy_R2 = self.scale_2 * dirs_R3[:, :2] / dz_R[:, None] + self.offset_2
        dirs_ndc_R3 = torch.cat([far_xy_R2, torch.ones_like(dz_R[:, None])], dim=1) - origins_ndc_R3
        return origins_ndc_R3, dirs_ndc_R3 / dirs_ndc_R3.norm(dim=-1, keepdim=True)

    def to_world(self, points_ndc_P3: Tensor) -> Tensor:
        """NDC points (z < 1) back to the reference frame."""
        z_P = 2.0 * self.near / (1.0 - points_ndc_P3[:, 2]).clamp_min(1e-6)
        xy_P2 = (points_ndc_P3[:, :2] - self.offset_2) / self.scale_2 * z_P[:, None]
        return torch.cat([xy_P2, z_P[:, None]], dim=1)


def ndc_box_half_size(config: ForwardConfig) -> tuple[float, float, float]:
    """Half-sizes (x, y, z) of the field's box in NDC (centred at the origin)."""
    return (config.ndc_margin, config.ndc_margin, 1.0)


def build_forward_engine(num_images: int, K_33: Tensor, height: int, width: int, forward: ForwardConfig,
                         encoder: PoseEncoderConfig, field: FieldConfig,
                         diffusion: DiffusionConfig) -> GenerativeLifting:
    """A fresh forward-mode engine: NDC field box, K = 1 encoder, zero refinements. The NDC map
    depends on focal / image size only, so any resolution's intrinsics of the reference camera
    will do (a loaded state dict brings its own)."""
    field_ = RadianceField(replace(field, box_half_size=ndc_box_half_size(forward), box_centre=(0.0, 0.0, 0.0)))
    return GenerativeLifting(ForwardPoseEncoder(encoder, forward), field_, ForwardPoses(num_images), diffusion,
                             NDCRays(K_33, height, width, forward.near))


def forward_gauge(c2w_N44: np.ndarray, config: ForwardConfig) -> np.ndarray:
    """Known poses in the forward gauge: relative to the camera nearest the centres' mean (the
    reference, made the identity), scaled by `config.oracle_spread`."""
    centres_N3 = c2w_N44[:, :3, 3]
    reference = int(np.argmin(np.linalg.norm(centres_N3 - centres_N3.mean(axis=0), axis=1)))
    relative_N44 = np.linalg.inv(c2w_N44[reference]) @ c2w_N44
    spread = np.sqrt(((relative_N44[:, :3, 3] - relative_N44[:, :3, 3].mean(axis=0)) ** 2).sum(axis=1).mean())
    relative_N44[:, :3, 3] *= config.oracle_spread * config.near / max(spread, 1e-12)
    return relative_N44
