"""Analysis by synthesis (SparseAGS): render-and-compare pose refinement against a trained field,
per-view photometric residuals, outlier views, a discrete search over the viewing sphere, and
the registration of new frames (one encoder pass + a few refinement steps, as ACE relocalizes).

Refinement moves each camera by an se(3) twist in the world frame, c2w <- exp(twist) @ c2w, on
the photometric error of a few hundred random pixels per step; the field stays fixed (only the
twists get gradients). The world origin is the scene's centre (the gauge of core.orbit_poses),
so the rotational part turns a camera about what it looks at: along the viewing sphere
(azimuth, elevation) and about its line of sight (roll), the ways poses of a 360 capture are
wrong. With the twist in the camera frame instead, such an error needs a rotation and a
translation together, and Adam crawled along that valley (measured on the tiny test scene, 20
steps from the sphere anchors: 2.3-4.2 degrees left, against 0.8-1.1 in the world frame; both
frames at once did worse than either, 2.1-4.4).
A view's residual is its full-image MSE at `size`; its confidence is how
close that error comes to the error of the scene's own training views (`reference_psnr`):
    confidence = clip(1 - (reference_psnr - psnr) / psnr_tolerance, 0, 1)
so a frame rendered as well as the training views gets 1 and one `psnr_tolerance` dB worse
gets 0; frames below `min_confidence` are rejected, not forced into the scene.
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nvs_ros.core import cameras
from nvs_ros.core.diffusion import GenerativeLifting, random_pixels
from nvs_ros.core.orbit_poses import anchor_angles


@dataclass(frozen=True)
class RefineConfig:
    """Render-and-compare refinement and registration."""

    steps: int = 20
    """Adam steps of the twist per refinement."""
    lr: float = 0.02
    """Learning rate of the twist (radians and world units; the cameras sit ~3-4 units out)."""
    rays_per_view: int = 384
    """Random pixels rendered per view and step."""
    size: int = 32
    """Longer image side at which views are refined and scored."""
    search_size: int = 16
    """Longer image side at which a new frame's candidate poses are ranked."""
    candidates: int = 3
    """Encoder hypotheses tried per new frame (most likely first), each also turned by 180
    degrees of azimuth: the flip the encoder confuses most (findings note). Every sphere
    anchor is tried too: the encoder of a scene trained on few views generalises poorly."""
    refined_candidates: int = 2
    """Best-ranked candidates refined per new frame."""
    psnr_tolerance: float = 24.0
    """dB below the training views' PSNR at which confidence reaches 0."""
    min_confidence: float = 0.5
    """Registrations below this are rejected."""
    outlier_mads: float = 4.0
    """A view is an outlier when its log residual lies this many MADs above the median."""


@dataclass
class Registration:
    """Poses of new frames in the scene's world frame, with how well they fit."""

    c2w_B44: Tensor
    """Camera-to-world, OpenCV axes, float32."""
    residual_B: Tensor
    """Full-image MSE at the comparison size, colours in [0, 1]."""
    confidence_B: Tensor
    accepted_B: Tensor
    probability_B: Tensor
    """Encoder probability of the hypothesis the pose came from."""


def view_residuals(engine: GenerativeLifting, images_BHW3: Tensor, K_B33: Tensor, c2w_B44: Tensor) -> Tensor:
    """(B,) full-image MSE of each view rendered from its pose (images in [0, 1], any size)."""
    residuals = []
    with torch.no_grad():
        for image_HW3, K_33, c2w_44 in zip(images_BHW3, K_B33, c2w_B44):
            h, w, _ = image_HW3.shape
            rendered = engine.render_view(K_33, c2w_44, h, w)
            residuals.append(((rendered - image_HW3) ** 2).mean())
    return torch.stack(residuals)


def refine_poses(engine: GenerativeLifting, images_BHW3: Tensor, K_B33: Tensor, c2w_B44: Tensor,
                 config: RefineConfig = RefineConfig(), generator: torch.Generator | None = None) -> Tensor:
    """(B, 4, 4) poses after `config.steps` steps of render-and-compare on a fixed field."""
    twist_B6 = torch.zeros(len(c2w_B44), 6, device=c2w_B44.device, requires_grad=True)
    optimizer = torch.optim.Adam([twist_B6], lr=config.lr)
    base_B44 = c2w_B44.detach().float()
    for step in range(config.steps):
        # cosine decay to a tenth: big moves first, then settle (a constant rate jitters ~lr)
        optimizer.param_groups[0]["lr"] = config.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * step / config.steps)))
        uv_BP2, target_BP3 = random_pixels(images_BHW3, config.rays_per_view, generator)
        c2w = cameras.se3_exp(twist_B6) @ base_B44
        rgb_BP3 = engine.render_pixels(K_B33, c2w[:, None], uv_BP2, randomize=False)[:, 0]
        loss = ((rgb_BP3 - target_BP3) ** 2).mean(dim=(-1, -2)).sum()
        # only the twists: the field's gradients would pile up in its parameters
        (grad,) = torch.autograd.grad(loss, [twist_B6])
        twist_B6.grad = grad
        optimizer.step()
    with torch.no_grad():
        return cameras.se3_exp(twist_B6) @ base_B44


def confidence_from_residual(residual_B: Tensor, reference_psnr: float, config: RefineConfig) -> Tensor:
    psnr_B = -10.0 * torch.log10(residual_B.clamp_min(1e-10))
    return (1.0 - (reference_psnr - psnr_B) / config.psnr_tolerance).clamp(0.0, 1.0)


def register_frames(engine: GenerativeLifting, images_BHW3: Tensor, K_B33: Tensor, reference_psnr: float,
                    config: RefineConfig = RefineConfig(), generator: torch.Generator | None = None) -> Registration:
    """Poses of new frames in a trained scene: the encoder's top hypotheses, their 180-degree
    flips and every sphere anchor are compared by rendering at `search_size`; the best
    `refined_candidates` are refined at `size`, and the lowest residual wins; its confidence
    compares it with the training views' fit.

    images_BHW3 in [0, 1] at any size with intrinsics K_B33.
    """
    b = len(images_BHW3)
    hyp = engine.predict(_encoder_input(images_BHW3, engine.encoder.config.input_size))
    azimuth_BC, elevation_BC, probability_BC = _candidate_angles(engine, hyp, config.candidates)
    c = azimuth_BC.shape[1]
    c2w_BC44 = cameras.orbit_c2w(azimuth_BC.reshape(-1), elevation_BC.reshape(-1),
                                 engine.refinement.radius).reshape(b, c, 4, 4)
    tiny_BHW3, tiny_K_B33 = resize_views(images_BHW3, K_B33, config.search_size)
    errors_BC = _candidate_errors(engine, tiny_BHW3, tiny_K_B33, c2w_BC44)
    keep = min(config.refined_candidates, c)
    best_BJ = errors_BC.topk(keep, dim=1, largest=False).indices
    rows_B1 = torch.arange(b)[:, None]
    small_BHW3, small_K_B33 = resize_views(images_BHW3, K_B33, config.size)
    starts = c2w_BC44[rows_B1, best_BJ].reshape(b * keep, 4, 4)
    refined = refine_poses(engine, small_BHW3.repeat_interleave(keep, 0), small_K_B33.repeat_interleave(keep, 0),
                           starts, config, generator)
    residual_BJ = view_residuals(engine, small_BHW3.repeat_interleave(keep, 0),
                                 small_K_B33.repeat_interleave(keep, 0), refined).reshape(b, keep)
    winner_B = residual_BJ.argmin(dim=1)
    rows_B = torch.arange(b)
    residual_B = residual_BJ[rows_B, winner_B]
    confidence_B = confidence_from_residual(residual_B, reference_psnr, config)
    return Registration(c2w_B44=refined.reshape(b, keep, 4, 4)[rows_B, winner_B], residual_B=residual_B,
                        confidence_B=confidence_B, accepted_B=confidence_B >= config.min_confidence,
                        probability_B=probability_BC[rows_B, best_BJ[rows_B, winner_B]])


def _candidate_angles(engine: GenerativeLifting, hyp, count: int) -> tuple[Tensor, Tensor, Tensor]:
    """(azimuth, elevation, encoder probability) of each frame's candidates (B, C): its top
    `count` hypotheses, each turned by 180 degrees too, then every anchor (probability 0)."""
    probs_BK = hyp.probs_BK
    b = probs_BK.shape[0]
    top_BT = probs_BK.topk(min(count, probs_BK.shape[1]), dim=1).indices
    azimuth_BT, elevation_BT = hyp.azimuth_BK.gather(1, top_BT), hyp.elevation_BK.gather(1, top_BT)
    probability_BT = probs_BK.gather(1, top_BT)
    anchor_azimuth_A, anchor_elevation_A = anchor_angles(engine.encoder.config.orbit)
    anchors = [x.to(probs_BK.device)[None].expand(b, -1) for x in (anchor_azimuth_A, anchor_elevation_A)]
    azimuth = torch.cat([azimuth_BT, azimuth_BT + math.pi, anchors[0]], dim=1)
    elevation = torch.cat([elevation_BT, elevation_BT, anchors[1]], dim=1)
    probability = torch.cat([probability_BT, probability_BT, torch.zeros_like(anchors[0])], dim=1)
    return azimuth, elevation, probability


def _candidate_errors(engine: GenerativeLifting, images_BHW3: Tensor, K_B33: Tensor, c2w_BC44: Tensor) -> Tensor:
    """(B, C) full-image MSE of each frame seen from each of its candidate poses."""
    b, c = c2w_BC44.shape[:2]
    return view_residuals(engine, images_BHW3.repeat_interleave(c, 0), K_B33.repeat_interleave(c, 0),
                          c2w_BC44.reshape(b * c, 4, 4)).reshape(b, c)


def find_outliers(residual_N: Tensor, config: RefineConfig = RefineConfig()) -> Tensor:
    """(N,) bool: views whose residual stays far above the others' (robust z-score of the log
    residual: median + `outlier_mads` x 1.4826 MAD)."""
    log_N = torch.log(residual_N.clamp_min(1e-10))
    median = log_N.median()
    mad = (log_N - median).abs().median().clamp_min(0.05)
    return log_N > median + config.outlier_mads * 1.4826 * mad


def search_sphere(engine: GenerativeLifting, images_BHW3: Tensor, K_B33: Tensor, c2w_B44: Tensor,
                  azimuth_turns: int = 8) -> Tensor:
    """(B, 4, 4) best of each view's pose turned about the world up axis (+Z, the gauge's) by
    j * 360/azimuth_turns degrees (j = 0 keeps it; the 180-degree flip is among them for an even
    count): how an outlier view is re-posed before it may rejoin the field's training."""
    turns_J = torch.arange(azimuth_turns, device=c2w_B44.device) * (2.0 * math.pi / azimuth_turns)
    rotations_J44 = _turns_about_z(turns_J)
    c2w_BJ44 = rotations_J44[None] @ c2w_B44[:, None].float()
    best_B = _candidate_errors(engine, images_BHW3, K_B33, c2w_BJ44).argmin(dim=1)
    return c2w_BJ44[torch.arange(len(c2w_B44)), best_B]


def _turns_about_z(angles_J: Tensor) -> Tensor:
    c, s = torch.cos(angles_J), torch.sin(angles_J)
    out = torch.eye(4, device=angles_J.device).repeat(len(angles_J), 1, 1)
    out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1] = c, -s, s, c
    return out


def resize_views(images_BHW3: Tensor, K_B33: Tensor, max_side: int) -> tuple[Tensor, Tensor]:
    """Images resized (antialiased) to a longer side of max_side, with their intrinsics."""
    _, h, w, _ = images_BHW3.shape
    height, width = cameras.fit_size(h, w, max_side)
    if (height, width) == (h, w):
        return images_BHW3, K_B33
    resized = torch.nn.functional.interpolate(images_BHW3.permute(0, 3, 1, 2), size=(height, width),
                                              mode="bilinear", antialias=True, align_corners=False)
    sx, sy = width / w, height / h
    scale_33 = torch.diag(torch.tensor([sx, sy, 1.0], device=K_B33.device))
    K = scale_33 @ K_B33
    # OpenCV pixel centres: u' = (u + 0.5) s - 0.5
    K[:, 0, 2] += 0.5 * sx - 0.5
    K[:, 1, 2] += 0.5 * sy - 0.5
    return resized.permute(0, 2, 3, 1).contiguous(), K


def _encoder_input(images_BHW3: Tensor, size: int) -> Tensor:
    return torch.nn.functional.interpolate(images_BHW3.permute(0, 3, 1, 2), size=(size, size), mode="bilinear",
                                           antialias=True, align_corners=False)


class JointRefinement:
    """The field and every view's pose trained together on the photometric loss (SparseAGS's
    final joint refinement; also how a live scene keeps learning as views are added).

    Views carry a fixed base pose and a learnable twist; `active_N` takes views out of the
    field's training (outliers) without forgetting them.
    """

    def __init__(self, engine: GenerativeLifting, c2w_N44: Tensor, pose_lr: float = 1e-3,
                 field_lr_scale: float = 1.0) -> None:
        self.engine = engine
        self.pose_lr = pose_lr
        self.base_N44 = c2w_N44.detach().float().clone()
        self.twist_N6 = torch.zeros(len(c2w_N44), 6, device=c2w_N44.device, requires_grad=True)
        self.active_N = torch.ones(len(c2w_N44), dtype=torch.bool, device=c2w_N44.device)
        groups = engine.field.parameter_groups()
        for group in groups:
            group["lr"] *= field_lr_scale
        self.field_optimizer = torch.optim.Adam(groups)
        self.pose_optimizer = torch.optim.Adam([self.twist_N6], lr=pose_lr)

    def c2w(self, index_B: Tensor | None = None) -> Tensor:
        twist = self.twist_N6 if index_B is None else self.twist_N6[index_B]
        base = self.base_N44 if index_B is None else self.base_N44[index_B]
        return cameras.se3_exp(twist) @ base

    def add_views(self, c2w_B44: Tensor) -> None:
        """Append views (e.g. registered frames); their twists start at zero."""
        with torch.no_grad():
            self.base_N44 = torch.cat([self.c2w().detach(), c2w_B44.detach().float()])
        self.twist_N6 = torch.zeros(len(self.base_N44), 6, device=self.base_N44.device, requires_grad=True)
        self.active_N = torch.cat([self.active_N, torch.ones(len(c2w_B44), dtype=torch.bool,
                                                             device=self.active_N.device)])
        self.pose_optimizer = torch.optim.Adam([self.twist_N6], lr=self.pose_lr)

    def set_poses(self, index_B: Tensor, c2w_B44: Tensor) -> None:
        """Replace the poses of some views (e.g. after a sphere search)."""
        with torch.no_grad():
            base = self.c2w().detach()
            base[index_B] = c2w_B44.float()
            self.base_N44 = base
            self.twist_N6.zero_()

    def step(self, images_NHW3: Tensor, K_N33: Tensor, batch: int, generator: torch.Generator | None = None) -> float:
        """One Adam step of field and twists on a random batch of active views; returns the loss."""
        active = torch.nonzero(self.active_N)[:, 0]
        pick = active[torch.randperm(len(active), generator=generator)[:batch].to(active.device)]
        loss = self.engine.posed_loss(images_NHW3[pick], K_N33[pick], self.c2w(pick), generator)
        total = loss + (self.engine.field.config.tv_weight * self.engine.field.tv_loss()
                        if self.engine.field.config.tv_weight > 0 else 0.0)
        self.field_optimizer.zero_grad(set_to_none=True)
        self.twist_N6.grad = None
        total.backward()
        self.field_optimizer.step()
        self.pose_optimizer.step()
        return float(loss.detach())
