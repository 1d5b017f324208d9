"""Registration of new frames in a trained scene: one encoder pass, a ranking of candidate poses
and a direct alignment to the field's rendered view (core.direct_alignment), as ACE relocalizes a
frame in one network pass, with a confidence.

A view's residual is its full-image MSE at `size`. Whether a new frame belongs to the scene is
judged two ways, and its confidence is the lower of the two:
- fit: how close its error comes to the training views' (`reference_psnr`),
      1 - (reference_psnr - psnr) / psnr_tolerance;
- contrast: how much better its pose explains it than a pose anywhere on the viewing sphere,
      1 - residual / median residual over the candidate poses (at `search_size`),
  mapped linearly from `contrast_range` to 0..1. A frame of the scene is far better seen from
  its pose than from elsewhere; a foreign frame is explained equally badly from everywhere.
  Fit alone cannot tell two objects on white apart (the background fits), contrast alone
  cannot tell a frame that no pose explains well.
Measured (chair, 64 px, 87 training views; tiny bundled object, 32 px): held-out views of the
scene reach contrast 0.63-0.89 and 20-29 dB (training views 29-30 dB); frames of the bundled
room, the temple or another object on white 0.02-0.43 and 4-20 dB.
Frames below `min_confidence` are rejected, not forced into the scene.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from nvs_ros.core import cameras
from nvs_ros.core.diffusion import GenerativeLifting
from nvs_ros.core.direct_alignment import align_the_best
from nvs_ros.core.forward_poses import ForwardHypotheses
from nvs_ros.core.orbit_poses import anchor_angles
from nvs_ros.core.pose_encoder import PoseHypotheses
from nvs_ros.core.refine_config import RefineConfig
from nvs_ros.core.render_compare import candidate_errors, view_residuals

FORWARD_TURN_DEG = 10.0

EncoderPass = Callable[[Tensor], PoseHypotheses | ForwardHypotheses]
"""What runs the encoder at inference: images (B, 3, S, S) in [0, 1] at the encoder's input size
-> its hypotheses at t = 0 (`GenerativeLifting.predict`, or a runtime backend's copy of it:
nvs_ros.runtime)."""


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
    contrast_B: Tensor
    """1 - residual / median residual over the candidate poses (both at the search size)."""


def confidence_from_residual(residual_B: Tensor, reference_psnr: float, config: RefineConfig) -> Tensor:
    """The fit confidence (module docstring)."""
    psnr_B = -10.0 * torch.log10(residual_B.clamp_min(1e-10))
    return (1.0 - (reference_psnr - psnr_B) / config.psnr_tolerance).clamp(0.0, 1.0)


def confidence_from_contrast(contrast_B: Tensor, config: RefineConfig) -> Tensor:
    """The contrast confidence (module docstring): `contrast_range` mapped to 0..1."""
    lo, hi = config.contrast_range
    return ((contrast_B - lo) / (hi - lo)).clamp(0.0, 1.0)


def register_frames(engine: GenerativeLifting, images_BHW3: Tensor, K_B33: Tensor, reference_psnr: float,
                    config: RefineConfig = RefineConfig(), prior_c2w_B44: Tensor | None = None,
                    retrieved_c2w_BR44: Tensor | None = None, encoder_pass: EncoderPass | None = None
                    ) -> Registration:
    """Poses of new frames in a trained scene (images_BHW3 in [0, 1], any size, intrinsics K_B33).

    One encoder pass gives candidates: its top hypotheses and their 180-degree flips, next to
    every anchor of the viewing sphere (the encoder of a scene trained on few views generalises
    poorly) and the poses of the training views the frame looks most like (`retrieved_c2w_BR44`).
    All are ranked by their error at `search_size`; the best `aligned_candidates` are aligned to
    the field (core.direct_alignment), and the lowest residual (at `size`) wins. A frame's prior
    pose (odometry, in the scene's frame; NaN rows: none) is aligned too: it wins only where it
    explains the frame best. Deterministic: the same frame gives the same pose. `encoder_pass`:
    what runs the encoder (None: the engine's torch module).
    """
    size = engine.encoder.config.input_size
    hyp = (encoder_pass or engine.predict)(cameras.resized_images(images_BHW3, (size, size)).permute(0, 3, 1, 2))
    c2w_BC44, probability_BC = _candidate_poses(engine, hyp, config.candidates)
    if retrieved_c2w_BR44 is not None:
        c2w_BC44 = torch.cat([c2w_BC44, retrieved_c2w_BR44.to(c2w_BC44)], dim=1)
        probability_BC = torch.cat([probability_BC, probability_BC.new_zeros(retrieved_c2w_BR44.shape[:2])], dim=1)
    tiny_BHW3, tiny_K_B33 = cameras.resize_views(images_BHW3, K_B33, config.search_size)
    errors_BC = candidate_errors(engine, tiny_BHW3, tiny_K_B33, c2w_BC44)
    best_BJ = errors_BC.topk(min(config.aligned_candidates, c2w_BC44.shape[1]), dim=1, largest=False).indices
    starts = [list(c2w_C44[best_J]) for c2w_C44, best_J in zip(c2w_BC44, best_BJ)]
    if prior_c2w_B44 is not None:
        for starts_of_frame, prior_44 in zip(starts, prior_c2w_B44.to(c2w_BC44)):
            if torch.isfinite(prior_44).all():
                starts_of_frame.append(prior_44)
    c2w_B44, residual_B, winner_B = align_the_best(engine, images_BHW3, K_B33, starts, config)
    contrast_B = 1.0 - view_residuals(engine, tiny_BHW3, tiny_K_B33, c2w_B44) / errors_BC.median(dim=1).values
    confidence_B = torch.minimum(confidence_from_residual(residual_B, reference_psnr, config),
                                 confidence_from_contrast(contrast_B, config))
    return Registration(c2w_B44=c2w_B44, residual_B=residual_B, confidence_B=confidence_B,
                        accepted_B=confidence_B >= config.min_confidence,
                        probability_B=_encoder_probability(probability_BC, best_BJ, winner_B), contrast_B=contrast_B)


def _encoder_probability(probability_BC: Tensor, best_BJ: Tensor, winner_B: Tensor) -> Tensor:
    """(B,) encoder probability of each frame's winning candidate (0 where the prior won: it is
    no hypothesis of the encoder)."""
    rows_B = torch.arange(len(winner_B), device=winner_B.device)
    from_encoder_B = winner_B < best_BJ.shape[1]
    chosen_B = best_BJ[rows_B, winner_B.clamp(max=best_BJ.shape[1] - 1)]
    return torch.where(from_encoder_B, probability_BC[rows_B, chosen_B], probability_BC.new_zeros(len(winner_B)))


def _candidate_poses(engine: GenerativeLifting, hyp, count: int) -> tuple[Tensor, Tensor]:
    """(B, C, 4, 4) candidate poses of each frame and their encoder probability (B, C).

    360 captures: the top `count` hypotheses, each turned by 180 degrees too, then every anchor
    of the viewing sphere (probability 0). Forward captures (one hypothesis near the reference
    camera): the hypothesis, and it turned by `FORWARD_TURN_DEG` left, right, up and down, which
    only the contrast needs (a frame of the scene is seen best from its pose).
    """
    if engine.ray_space is not None:
        c2w_B44 = engine.refinement.free_c2w(hyp)[:, 0]
        turns_T44 = _small_turns(math.radians(FORWARD_TURN_DEG), c2w_B44.device)
        c2w_BC44 = torch.cat([c2w_B44[:, None], c2w_B44[:, None] @ turns_T44[None]], dim=1)
        probability_BC = torch.cat([hyp.probs_BK[:, :1], torch.zeros(len(c2w_B44), len(turns_T44),
                                                                     device=c2w_B44.device)], dim=1)
        return c2w_BC44, probability_BC
    azimuth_BC, elevation_BC, probability_BC = _candidate_angles(engine, hyp, count)
    b, c = azimuth_BC.shape
    c2w_BC44 = cameras.orbit_c2w(azimuth_BC.reshape(-1), elevation_BC.reshape(-1),
                                 engine.refinement.radius).reshape(b, c, 4, 4)
    return c2w_BC44, probability_BC


def _small_turns(angle: float, device: torch.device) -> Tensor:
    """(4, 4, 4): rotations by `angle` about the camera's y (left, right) and x (up, down) axes."""
    omega_T3 = torch.tensor([[0.0, angle, 0.0], [0.0, -angle, 0.0], [angle, 0.0, 0.0], [-angle, 0.0, 0.0]],
                            device=device)
    return cameras.se3_exp(torch.cat([torch.zeros_like(omega_T3), omega_T3], dim=1))


def _candidate_angles(engine: GenerativeLifting, hyp, count: int) -> tuple[Tensor, Tensor, Tensor]:
    """(azimuth, elevation, encoder probability) of each frame's candidates (B, C): its top
    `count` hypotheses, each turned by 180 degrees too, then every anchor of the viewing sphere
    (probability 0)."""
    probs_BK = hyp.probs_BK
    b = probs_BK.shape[0]
    top_BT = probs_BK.topk(min(count, probs_BK.shape[1]), dim=1).indices
    azimuth_BT, elevation_BT = hyp.azimuth_BK.gather(1, top_BT), hyp.elevation_BK.gather(1, top_BT)
    probability_BT = probs_BK.gather(1, top_BT)
    azimuth = [azimuth_BT, azimuth_BT + math.pi]
    elevation = [elevation_BT, elevation_BT]
    probability = [probability_BT, probability_BT]
    anchor_azimuth_A, anchor_elevation_A = (x.to(probs_BK.device)[None].expand(b, -1)
                                            for x in anchor_angles(engine.encoder.config.orbit))
    azimuth.append(anchor_azimuth_A)
    elevation.append(anchor_elevation_A)
    probability.append(torch.zeros_like(anchor_azimuth_A))
    return torch.cat(azimuth, dim=1), torch.cat(elevation, dim=1), torch.cat(probability, dim=1)
