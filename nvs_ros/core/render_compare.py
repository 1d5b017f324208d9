"""Render-and-compare (SparseAGS's analysis by synthesis): how well a trained field explains
views from given poses (full-image residuals), and pose refinement against it.

Refinement moves each camera by an se(3) twist in the world frame, c2w <- exp(twist) @ c2w,
with the field fixed: damped Gauss-Newton (Levenberg-Marquardt's step) on the colour residuals of
a few hundred random pixels, redrawn every step, with the Jacobian from forward differences
(the pose and six nudged copies render in one batch, no backward pass). It re-poses suspect
views (core.outlier_correction). New frames are registered by core.direct_alignment instead,
which renders the field once per round rather than seven times per step: on chair (38 frames)
render-and-compare's 5 steps reached 66% within 5 degrees at ~150 ms of CPU with an alignment
after them, the alignment alone 95% at ~50 ms.
The world origin is the scene's centre (the gauge of core.orbit_poses), so the rotational part
turns a camera about what it looks at: along the viewing sphere (azimuth, elevation) and about
its line of sight (roll), the ways poses of a 360 capture are wrong. With the twist in
the camera frame instead, such an error needs a rotation and a translation together, and the
Adam refiner crawled along that valley (tiny test scene, 20 steps from the sphere anchors:
2.3-4.2 degrees left, against 0.8-1.1 in the world frame).
"""

import torch
from torch import Tensor

from nvs_ros.core import cameras
from nvs_ros.core.diffusion import GenerativeLifting, random_pixels
from nvs_ros.core.gauss_newton import damped_gauss_newton_step
from nvs_ros.core.refine_config import RefineConfig


@torch.no_grad()
def view_residuals(engine: GenerativeLifting, images_BHW3: Tensor, K_B33: Tensor, c2w_B44: Tensor,
                   rays_per_chunk: int = 16384) -> Tensor:
    """(B,) full-image MSE of each view rendered from its pose (images in [0, 1], any size;
    deterministic samples, as many per ray as in training)."""
    b, h, w, _ = images_BHW3.shape
    uv_P2 = cameras.pixel_grid(h, w, device=images_BHW3.device)
    per_chunk = max(1, rays_per_chunk // (h * w))
    residuals = []
    for start in range(0, b, per_chunk):
        chunk = slice(start, min(b, start + per_chunk))
        count = chunk.stop - chunk.start
        rgb_BP3 = engine.render_pixels(K_B33[chunk], c2w_B44[chunk, None], uv_P2[None].expand(count, -1, -1),
                                       randomize=False)[:, 0]
        residuals.append(((rgb_BP3 - images_BHW3[chunk].reshape(count, -1, 3)) ** 2).mean(dim=(-1, -2)))
    return torch.cat(residuals) if residuals else images_BHW3.new_zeros(0)


def candidate_errors(engine: GenerativeLifting, images_BHW3: Tensor, K_B33: Tensor, c2w_BC44: Tensor) -> Tensor:
    """(B, C) full-image MSE of each frame seen from each of its candidate poses."""
    b, c = c2w_BC44.shape[:2]
    return view_residuals(engine, images_BHW3.repeat_interleave(c, 0), K_B33.repeat_interleave(c, 0),
                          c2w_BC44.reshape(b * c, 4, 4)).reshape(b, c)


@torch.no_grad()
def refine_poses(engine: GenerativeLifting, images_BHW3: Tensor, K_B33: Tensor, c2w_B44: Tensor, steps: int,
                 rays_per_view: int, config: RefineConfig = RefineConfig(),
                 generator: torch.Generator | None = None) -> Tensor:
    """(B, 4, 4) poses after `steps` damped Gauss-Newton steps of render-and-compare on a fixed
    field, each on `rays_per_view` freshly drawn pixels per view (a fixed set lets a view fit its
    few hundred pixels instead of the image: on the tiny test scene it left 6-15 degree errors)."""
    pose_B44 = c2w_B44.detach().float().clone()
    damping_B = pose_B44.new_full((len(pose_B44),), config.damping)
    for _ in range(steps):
        uv_BP2, target_BP3 = random_pixels(images_BHW3, rays_per_view, generator)
        residual_BM, jacobian_BM6 = _linearise(engine, K_B33, pose_B44, uv_BP2, target_BP3, config.difference_step)
        pose_B44 = cameras.se3_exp(damped_gauss_newton_step(residual_BM, jacobian_BM6, damping_B)) @ pose_B44
    return pose_B44


def _linearise(engine: GenerativeLifting, K_B33: Tensor, c2w_B44: Tensor, uv_BP2: Tensor, target_BP3: Tensor,
               difference_step: float) -> tuple[Tensor, Tensor]:
    """Colour residuals (B, M = 3P) at the poses and their Jacobian (B, M, 6) w.r.t. a world-frame
    twist, by forward differences: the pose and its six nudged copies render in one batch, which
    costs a fraction of a backward pass through the field's sampling."""
    nudges_744 = cameras.se3_exp(torch.cat([c2w_B44.new_zeros(1, 6),
                                            difference_step * torch.eye(6, device=c2w_B44.device)]))
    rgb_B7P3 = engine.render_pixels(K_B33, nudges_744[None] @ c2w_B44[:, None], uv_BP2, randomize=False)
    b = len(c2w_B44)
    residual_BM = (rgb_B7P3[:, 0] - target_BP3).reshape(b, -1)
    jacobian_BM6 = ((rgb_B7P3[:, 1:] - rgb_B7P3[:, :1]) / difference_step).reshape(b, 6, -1).transpose(1, 2)
    return residual_BM, jacobian_BM6
