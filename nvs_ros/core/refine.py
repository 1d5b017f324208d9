"""Analysis by synthesis (SparseAGS): render-and-compare pose refinement against a trained field,
per-view photometric residuals, outlier views, a discrete search over the viewing sphere, and
the registration of new frames (one encoder pass, a ranking of candidate poses and a direct
alignment to the field's rendered view, as ACE relocalizes a frame in one network pass).

Refinement moves each camera by an se(3) twist in the world frame, c2w <- exp(twist) @ c2w,
with the field fixed: damped Gauss-Newton (Levenberg-Marquardt's step) on the colour residuals of
a few hundred random pixels, redrawn every step, with the Jacobian from forward differences
(the pose and six nudged copies render in one batch, no backward pass). It re-poses suspect
views (the outlier correction). New frames are registered by core.direct_alignment instead,
which renders the field once per round rather than seven times per step: on chair (38 frames)
render-and-compare's 5 steps reached 66% within 5 degrees at ~150 ms of CPU with an alignment
after them, the alignment alone 95% at ~50 ms.
The world origin is the scene's centre (the gauge of core.orbit_poses), so the rotational part
turns a camera about what it looks at: along the viewing sphere (azimuth, elevation) and about
its line of sight (roll), the ways poses of a 360 capture are wrong. With the twist in
the camera frame instead, such an error needs a rotation and a translation together, and the
Adam refiner crawled along that valley (tiny test scene, 20 steps from the sphere anchors:
2.3-4.2 degrees left, against 0.8-1.1 in the world frame).
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
from dataclasses import dataclass

import torch
from torch import Tensor

from nvs_ros.core import cameras
from nvs_ros.core.diffusion import GenerativeLifting, random_pixels
from nvs_ros.core.direct_alignment import align_to_rendered_view
from nvs_ros.core.gauss_newton import damped_gauss_newton_step
from nvs_ros.core.orbit_poses import anchor_angles
from nvs_ros.core.training_loop import DivergenceConfig, DivergenceGuard, field_regulariser


FORWARD_TURN_DEG = 10.0
SEARCH_TURNS = 8
"""Turns about the up axis (every 45 degrees, the flip among them) tried for a suspect view."""
RACE_STEPS = 2
"""Render-and-compare steps every candidate of a suspect view gets before the best goes on."""


@dataclass(frozen=True)
class RefineConfig:
    """Render-and-compare refinement and registration."""

    damping: float = 0.1
    """Levenberg-Marquardt damping, relative to the Gauss-Newton curvature (keeps a step from
    overshooting where a few pixels' gradients dominate)."""
    difference_step: float = 1e-3
    """Twist step of render-and-compare's forward differences (radians and world units; the
    cameras sit ~3-4 units out, a field cell is ~0.05 wide: the nudge stays inside one trilinear
    cell, and the slope is the field's own)."""
    size: int = 32
    """Longer image side at which views are scored (residuals, confidence, outliers) and the
    training views' reference PSNR is measured; the confidence's tolerances are set at it."""
    search_size: int = 16
    """Longer image side at which a new frame's candidate poses are ranked (and its contrast
    measured: at 8 px chair's frames had contrasts of 0.28-0.89, too close to foreign ones)."""
    candidates: int = 3
    """Encoder hypotheses tried per new frame (most likely first), each also turned by 180
    degrees of azimuth: the flip the encoder confuses most (findings note). Every sphere
    anchor is tried too: the encoder of a scene trained on few views generalises poorly."""
    retrieved_candidates: int = 1
    """Training views most alike a new frame (core.appearance.most_alike) whose poses join its
    candidates (scenes that keep their training views' thumbnails): a start that has the
    training camera's roll and distance, not an anchor's. Chair, 38 frames, 2 seeds, with
    render-and-compare after the search: none 45-58% within 5 degrees, median 4.1-5.9;
    1: 66% / 3.0-3.2 (within 15: 82-89% -> 92%); 3 and 6: 66%, within 15 89%. Same latency."""
    aligned_candidates: int = 1
    """Best-ranked candidates aligned per new frame (core.direct_alignment); the one with the
    lowest residual wins. Chair, 38 frames: 1 and 2 both 95% within 5 degrees (3, measured with
    a first version of the alignment: 95%, and a candidate 90 degrees off won one frame); each
    candidate more costs ~30 ms."""
    alignment_sizes: tuple[int, ...] = (32, 64)
    """Longer image sides (capped at the frame's own) of the frame's levels the alignment steps
    go through, coarse to fine; `size` is always among them (the field renders at it). Chair,
    38 frames: (32, 64) 95% within 5 degrees, median 1.6; (32,) 87%, 2.7; (16, 32, 64) 79%, 3.5."""
    alignment_steps: int = 6
    """Gauss-Newton steps per level and round (chair: 8, 95%; 5, 92%), ~0.35 ms each."""
    alignment_rounds: int = 2
    """Renders of the field from the aligning pose, each followed by the steps (chair: 1 round,
    87% within 5 degrees, median 2.0; 2 rounds 95%, 1.6); a render is ~6 ms at 32 px."""
    psnr_tolerance: float = 24.0
    """dB below the training views' PSNR at which the fit confidence reaches 0."""
    contrast_range: tuple[float, float] = (0.25, 0.75)
    """Contrasts mapped to confidence 0 and 1."""
    min_confidence: float = 0.5
    """Registrations below this are rejected."""
    outlier_mads: float = 4.0
    """A view is an outlier when its log residual lies this many MADs above the median."""
    stays_high_factor: float = 5.0
    """A re-posed suspect is also an outlier when the field still explains it this many times
    worse than the median view it trained on: a frame of another scene that the field learnt to
    fit a little while it was in training, which gives it some contrast (measured on chair, 64
    px: foreign temple frames 4.8-8.7 times the chair median; at 4 the live scene's tiny ring
    test lost a keyframe's registration)."""
    suspect_mads: float = 2.0
    """The same, for setting a view aside to re-pose it (lenient: a few flipped views also drag
    their neighbours' residuals up, and a suspect that fits after all simply comes back)."""
    suspect_min_ratio: float = 1.5
    """A suspect's residual is also at least this many times the median view's. On a few views
    the log residuals' spread is tiny, and the MADs alone set aside views 1.2-1.7 times the
    median (4 of 8 right views of a tiny ring, which the field then learnt without and took
    out as outliers). At 2, a right view that a flipped one had dragged up to 1.5 stayed in,
    and the flipped one was taken out instead of turned back (the tests' 8-view ring)."""
    max_suspect_fraction: float = 1.0 / 3.0
    """At most this share of the views (those with the highest residuals) is set aside at once:
    the field must still learn the scene from the others, against which the suspects are then
    judged."""
    search_elevations_deg: tuple[float, ...] = (-10.0, 5.0, 20.0, 35.0, 50.0, 65.0, 80.0)
    search_azimuths: int = 16
    """The grid of poses on the viewing sphere (looking at the centre) tried for a suspect view,
    next to its own pose's turns: a view the pose learning put at a wrong elevation (chair's
    top views, 60-90 degrees up, sat at 20-50) is no turn about the up axis away."""
    correction_candidates: int = 4
    correction_steps: int = 15
    correction_rays_per_view: int = 512
    """Best-ranked search poses that race per suspect, their refinement steps and pixels (more
    than a registration's: re-posing is not latency-bound as registration is)."""


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
                    retrieved_c2w_BR44: Tensor | None = None) -> Registration:
    """Poses of new frames in a trained scene (images_BHW3 in [0, 1], any size, intrinsics K_B33).

    One encoder pass gives candidates: its top hypotheses and their 180-degree flips, next to
    every anchor of the viewing sphere (the encoder of a scene trained on few views generalises
    poorly) and the poses of the training views the frame looks most like (`retrieved_c2w_BR44`).
    All are ranked by their error at `search_size`; the best `aligned_candidates` are aligned to
    the field (core.direct_alignment), and the lowest residual (at `size`) wins. A frame's prior
    pose (odometry, in the scene's frame; NaN rows: none) is aligned too: it wins only where it
    explains the frame best. Deterministic: the same frame gives the same pose.
    """
    hyp = engine.predict(_encoder_input(images_BHW3, engine.encoder.config.input_size))
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
    c2w_B44, residual_B, winner_B = _align_the_best(engine, images_BHW3, K_B33, starts, config)
    contrast_B = 1.0 - view_residuals(engine, tiny_BHW3, tiny_K_B33, c2w_B44) / errors_BC.median(dim=1).values
    confidence_B = torch.minimum(confidence_from_residual(residual_B, reference_psnr, config),
                                 confidence_from_contrast(contrast_B, config))
    return Registration(c2w_B44=c2w_B44, residual_B=residual_B, confidence_B=confidence_B,
                        accepted_B=confidence_B >= config.min_confidence,
                        probability_B=_encoder_probability(probability_BC, best_BJ, winner_B), contrast_B=contrast_B)


@torch.no_grad()
def align_views(engine: GenerativeLifting, images_BHW3: Tensor, K_B33: Tensor, c2w_B44: Tensor,
                config: RefineConfig = RefineConfig()) -> tuple[Tensor, Tensor]:
    """Training views aligned to the field from where they are (core.direct_alignment, as a new
    frame is), each kept where it then explains its view better: (B, 4, 4) poses and their
    residuals at `size` (B,). Joint refinement moves every pose by a small gradient step on a few
    random pixels per step, and stops short of the field's photometric optimum; the alignment's
    Gauss-Newton steps on whole coarse-to-fine images reach it."""
    small_BHW3, small_K_B33 = cameras.resize_views(images_BHW3, K_B33, config.size)
    c2w_B44 = c2w_B44.detach().float()
    before_B = view_residuals(engine, small_BHW3, small_K_B33, c2w_B44)
    aligned_B44, after_B, _ = _align_the_best(engine, images_BHW3, K_B33, [[c2w_44] for c2w_44 in c2w_B44], config)
    better_B = after_B < before_B
    return torch.where(better_B[:, None, None], aligned_B44, c2w_B44), torch.where(better_B, after_B, before_B)


def _align_the_best(engine: GenerativeLifting, images_BHW3: Tensor, K_B33: Tensor, starts: list[list[Tensor]],
                    config: RefineConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Each frame's starting poses (4, 4) aligned to the field (core.direct_alignment); the one
    that then explains the frame best wins. Returns the (B, 4, 4) poses, their residuals at
    `size` (B,) and the index of each frame's winning start (B,)."""
    levels, rendered = _frame_levels(images_BHW3, K_B33, config)
    poses, residuals, winners = [], [], []
    for b, starts_of_frame in enumerate(starts):
        frame_levels = [(level_BHW3[b], level_K_B33[b]) for level_BHW3, level_K_B33 in levels]
        aligned = [align_to_rendered_view(engine, frame_levels, rendered, c2w_44, config.alignment_rounds,
                                          config.alignment_steps, config.damping) for c2w_44 in starts_of_frame]
        winner = min(range(len(aligned)), key=lambda j: float(aligned[j][1]))
        poses.append(aligned[winner][0])
        residuals.append(aligned[winner][1])
        winners.append(winner)
    return torch.stack(poses), torch.stack(residuals), torch.tensor(winners, device=images_BHW3.device)


def _frame_levels(images_BHW3: Tensor, K_B33: Tensor, config: RefineConfig) -> tuple[list[tuple[Tensor, Tensor]], int]:
    """The frames at `alignment_sizes` and `size` (capped at their own, each size once), coarse
    to fine, and the index of the one at `size`."""
    levels = {}
    for side in sorted({*config.alignment_sizes, config.size}):
        level_BHW3, level_K_B33 = cameras.resize_views(images_BHW3, K_B33, side)
        levels.setdefault(tuple(level_BHW3.shape[1:3]), (level_BHW3, level_K_B33))
    rendered = list(levels).index(cameras.fit_size(*images_BHW3.shape[1:3], config.size))
    return list(levels.values()), rendered


def _encoder_probability(probability_BC: Tensor, best_BJ: Tensor, winner_B: Tensor) -> Tensor:
    """(B,) encoder probability of each frame's winning candidate (0 where the prior won: it is
    no hypothesis of the encoder)."""
    rows_B = torch.arange(len(winner_B), device=winner_B.device)
    from_encoder_B = winner_B < best_BJ.shape[1]
    chosen_B = best_BJ[rows_B, winner_B.clamp(max=best_BJ.shape[1] - 1)]
    return torch.where(from_encoder_B, probability_BC[rows_B, chosen_B], probability_BC.new_zeros(len(winner_B)))


def _race(engine: GenerativeLifting, images_BHW3: Tensor, K_B33: Tensor, judged_BHW3: Tensor, judged_K_B33: Tensor,
          c2w_BJ44: Tensor, config: RefineConfig, generator: torch.Generator | None) -> Tensor:
    """(B, 4, 4) the winner of a race (successive halving) among each view's J candidates: all
    are refined for `RACE_STEPS`, the one with the lowest full-image error on the judged views
    goes on alone for the rest of `correction_steps`. A wrong candidate shows early."""
    b, j = c2w_BJ44.shape[:2]
    race_steps = min(RACE_STEPS, config.correction_steps)
    raced_BJ44 = refine_poses(engine, images_BHW3.repeat_interleave(j, 0), K_B33.repeat_interleave(j, 0),
                              c2w_BJ44.reshape(-1, 4, 4), race_steps, config.correction_rays_per_view, config,
                              generator).reshape(b, j, 4, 4)
    winner_B = candidate_errors(engine, judged_BHW3, judged_K_B33, raced_BJ44).argmin(dim=1)
    leader_B44 = raced_BJ44[torch.arange(b, device=c2w_BJ44.device), winner_B]
    return refine_poses(engine, images_BHW3, K_B33, leader_B44, config.correction_steps - race_steps,
                        config.correction_rays_per_view, config, generator)


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


def candidate_errors(engine: GenerativeLifting, images_BHW3: Tensor, K_B33: Tensor, c2w_BC44: Tensor) -> Tensor:
    """(B, C) full-image MSE of each frame seen from each of its candidate poses."""
    b, c = c2w_BC44.shape[:2]
    return view_residuals(engine, images_BHW3.repeat_interleave(c, 0), K_B33.repeat_interleave(c, 0),
                          c2w_BC44.reshape(b * c, 4, 4)).reshape(b, c)


def find_outliers(residual_N: Tensor, config: RefineConfig = RefineConfig(),
                  reference_N: Tensor | None = None, mads: float | None = None) -> Tensor:
    """(N,) bool: views whose residual stands far above the others' (robust z-score of the log
    residual: median + `mads` (default `outlier_mads`) x 1.4826 MAD, over the `reference_N`
    views if given)."""
    log_N = torch.log(residual_N.clamp_min(1e-10))
    reference = log_N if reference_N is None else log_N[reference_N]
    median = reference.median()
    mad = (reference - median).abs().median().clamp_min(0.05)
    return log_N > median + (config.outlier_mads if mads is None else mads) * 1.4826 * mad


def _turned(c2w_B44: Tensor, azimuth_turns: int) -> Tensor:
    """(B, J, 4, 4): each pose turned about the world up axis (+Z) by j * 360 / azimuth_turns degrees."""
    angles_J = torch.arange(azimuth_turns, device=c2w_B44.device) * (2.0 * math.pi / azimuth_turns)
    turns_J44 = torch.eye(4, device=c2w_B44.device).repeat(azimuth_turns, 1, 1)
    turns_J44[:, :3, :3] = cameras.so3_exp(angles_J[:, None] * torch.tensor([0.0, 0.0, 1.0], device=c2w_B44.device))
    return turns_J44[None] @ c2w_B44[:, None].float()


def _sphere_grid(c2w_N44: Tensor, config: RefineConfig) -> Tensor:
    """(G, 4, 4) cameras looking at the centre from the search grid's elevations and azimuths,
    at the median distance of the given cameras (the views not under suspicion)."""
    radius = c2w_N44[:, :3, 3].norm(dim=1).median() if len(c2w_N44) else torch.tensor(1.0)
    azimuth_A = torch.arange(config.search_azimuths, device=c2w_N44.device) * (2.0 * math.pi / config.search_azimuths)
    elevation_E = torch.tensor([math.radians(e) for e in config.search_elevations_deg], device=c2w_N44.device)
    azimuth_AE, elevation_AE = torch.meshgrid(azimuth_A, elevation_E, indexing="ij")
    return cameras.orbit_c2w(azimuth_AE.reshape(-1), elevation_AE.reshape(-1), float(radius))

@dataclass
class OutlierCorrection:
    """Outcome of `correct_outliers` for N views."""

    c2w_N44: Tensor
    """Poses after re-posing the suspect views (the others unchanged)."""
    outlier_N: Tensor
    """Suspects that fit from no pose: keep them out of the field's training."""
    reposed_N: Tensor
    """Suspects whose pose the search replaced (they rejoin training)."""
    residual_N: Tensor
    """Full-image MSE at `config.size` after the correction."""


def suspect_views(engine: GenerativeLifting, images_NHW3: Tensor, K_N33: Tensor, c2w_N44: Tensor,
                  config: RefineConfig = RefineConfig()) -> Tensor:
    """(N,) bool: views whose residual stands out at `config.size` (`find_outliers` with
    `suspect_mads`, at least `suspect_min_ratio` x the median, the highest
    `max_suspect_fraction` of the views at most)."""
    small_NHW3, small_K_N33 = cameras.resize_views(images_NHW3, K_N33, config.size)
    return suspects_among(view_residuals(engine, small_NHW3, small_K_N33, c2w_N44.detach().float()), config)


def suspects_among(residual_N: Tensor, config: RefineConfig = RefineConfig()) -> Tensor:
    """(N,) bool: the views `suspect_views` sets aside, given their residuals."""
    suspects_N = find_outliers(residual_N, config, mads=config.suspect_mads)
    suspects_N &= residual_N >= config.suspect_min_ratio * residual_N.median()
    limit = int(config.max_suspect_fraction * len(residual_N))
    if int(suspects_N.sum()) > limit:
        ranked = torch.where(suspects_N, residual_N, torch.full_like(residual_N, -math.inf)).argsort(descending=True)
        suspects_N = torch.zeros_like(suspects_N)
        suspects_N[ranked[:limit]] = True
    return suspects_N


def correct_outliers(engine: GenerativeLifting, images_NHW3: Tensor, K_N33: Tensor, c2w_N44: Tensor,
                     suspects_N: Tensor, config: RefineConfig = RefineConfig(),
                     generator: torch.Generator | None = None) -> OutlierCorrection:
    """SparseAGS's outlier step, once the field has been trained without the suspect views:
    each suspect is re-posed by the search over the viewing sphere plus refinement (the new pose
    kept when it lowers the residual). A suspect is an outlier (wrong in a way no pose fixes:
    another scene, a blurred or occluded frame) when its contrast stays low: seen from its pose
    it is not much better explained than from around the sphere (as in registration), or when
    its residual stays far above the other views' (`stays_high_factor`: the field has just been
    trained without the suspects, so even a right pose renders them as unseen views, somewhat
    worse than trained ones, hence a factor rather than the outlier statistics)."""
    small_NHW3, small_K_N33 = cameras.resize_views(images_NHW3, K_N33, config.size)
    c2w_N44 = c2w_N44.detach().float().clone()
    residual_N = view_residuals(engine, small_NHW3, small_K_N33, c2w_N44)
    suspects = torch.nonzero(suspects_N)[:, 0]
    reposed_N = torch.zeros(len(c2w_N44), dtype=torch.bool, device=c2w_N44.device)
    outlier_N = torch.zeros_like(reposed_N)
    if len(suspects) == 0:
        return OutlierCorrection(c2w_N44=c2w_N44, outlier_N=outlier_N, reposed_N=reposed_N, residual_N=residual_N)
    # the candidates race through refinement before they are compared (as in registration):
    # the suspect's own pose was refined with the field before, so unrefined it wins too often
    candidates_BJ44 = torch.cat([_turned(c2w_N44[suspects], SEARCH_TURNS),
                                 _sphere_grid(c2w_N44[~suspects_N], config)[None].expand(len(suspects), -1, -1, -1)],
                                dim=1)
    tiny_BHW3, tiny_K_B33 = cameras.resize_views(images_NHW3[suspects], K_N33[suspects], config.search_size)
    errors_BJ = candidate_errors(engine, tiny_BHW3, tiny_K_B33, candidates_BJ44)
    median_error = errors_BJ.median(dim=1).values
    best_BJ = errors_BJ.topk(min(config.correction_candidates, errors_BJ.shape[1]), dim=1, largest=False).indices
    rows_B1 = torch.arange(len(suspects), device=c2w_N44.device)[:, None]
    refined = _race(engine, small_NHW3[suspects], small_K_N33[suspects], tiny_BHW3, tiny_K_B33,
                    candidates_BJ44[rows_B1, best_BJ], config, generator)
    new_residual = view_residuals(engine, small_NHW3[suspects], small_K_N33[suspects], refined)
    better = new_residual < residual_N[suspects]
    c2w_N44[suspects[better]] = refined[better]
    residual_N[suspects[better]] = new_residual[better]
    reposed_N[suspects[better]] = True
    contrast = 1.0 - view_residuals(engine, tiny_BHW3, tiny_K_B33, c2w_N44[suspects]) / median_error
    trained_N = ~suspects_N
    reference = residual_N[trained_N].median() if trained_N.any() else residual_N.new_tensor(math.inf)
    stays_high = residual_N[suspects] > config.stays_high_factor * reference
    outlier_N[suspects] = (confidence_from_contrast(contrast, config) < config.min_confidence) | stays_high
    return OutlierCorrection(c2w_N44=c2w_N44, outlier_N=outlier_N, reposed_N=reposed_N & ~outlier_N,
                             residual_N=residual_N)


def _encoder_input(images_BHW3: Tensor, size: int) -> Tensor:
    return torch.nn.functional.interpolate(images_BHW3.permute(0, 3, 1, 2), size=(size, size), mode="bilinear",
                                           antialias=True, align_corners=False)


class JointRefinement:
    """The field and every view's pose trained together on the photometric loss (SparseAGS's
    final joint refinement; also how a live scene keeps learning as views are added), with the
    field's regulariser and the divergence guard of every training loop (core.training_loop).

    Views carry a fixed base pose and a learnable twist; `active_N` takes views out of the
    field's training (outliers) without forgetting them. A caller that adds or drops views
    builds a new one from the current poses (`c2w()`).
    """

    def __init__(self, engine: GenerativeLifting, c2w_N44: Tensor, pose_lr: float = 1e-3,
                 field_lr_scale: float = 1.0, divergence: DivergenceConfig = DivergenceConfig()) -> None:
        self.engine = engine
        self.base_N44 = c2w_N44.detach().float().clone()
        self.twists = torch.nn.ParameterDict({"N6": torch.zeros(len(c2w_N44), 6, device=c2w_N44.device)})
        self.active_N = torch.ones(len(c2w_N44), dtype=torch.bool, device=c2w_N44.device)
        groups = engine.field.parameter_groups()
        for group in groups:
            group["lr"] *= field_lr_scale
        self.field_optimizer = torch.optim.Adam(groups)
        self.pose_optimizer = torch.optim.Adam(self.twists.parameters(), lr=pose_lr)
        self.guard = DivergenceGuard(divergence)
        self.steps = 0

    def c2w(self, index_B: Tensor | None = None) -> Tensor:
        twist = self.twists["N6"] if index_B is None else self.twists["N6"][index_B]
        base = self.base_N44 if index_B is None else self.base_N44[index_B]
        return cameras.se3_exp(twist) @ base

    def step(self, images_NHW3: Tensor, K_N33: Tensor, batch: int, generator: torch.Generator | None = None) -> float:
        """One Adam step of field and twists on a random batch of active views; returns the loss.
        A diverged step is not taken: field, poses and optimisers go back to the last good
        snapshot (DivergedError once that has happened too often)."""
        active = torch.nonzero(self.active_N)[:, 0]
        pick = active[torch.randperm(len(active), generator=generator)[:batch].to(active.device)]
        loss = self.engine.posed_loss(images_NHW3[pick], K_N33[pick], self.c2w(pick), generator)
        value = float(loss.detach())
        objects = {"engine": self.engine, "field_optimizer": self.field_optimizer,
                   "pose_optimizer": self.pose_optimizer, "twists": self.twists}
        if not self.guard.healthy(value):
            self.guard.roll_back(objects, f"loss {value:.3g} at step {self.steps}")
            return value
        self.field_optimizer.zero_grad(set_to_none=True)
        self.pose_optimizer.zero_grad(set_to_none=True)
        (loss + field_regulariser(self.engine)).backward()
        self.field_optimizer.step()
        self.pose_optimizer.step()
        self.steps += 1
        self.guard.record(value, self.steps, objects)
        return value
