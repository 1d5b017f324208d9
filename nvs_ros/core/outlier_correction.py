"""Outlier correction (SparseAGS): views whose residual against the field stands out are set
aside while the field trains without them, then re-posed by a search over the viewing sphere and
render-and-compare refinement (core.render_compare); those that fit from no pose stay out of
the field's training (another scene, a blurred or occluded frame)."""

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nvs_ros.core import cameras
from nvs_ros.core.diffusion import GenerativeLifting
from nvs_ros.core.refine_config import RefineConfig
from nvs_ros.core.registration import confidence_from_contrast
from nvs_ros.core.render_compare import candidate_errors, refine_poses, view_residuals

SEARCH_TURNS = 8
"""Turns about the up axis (every 45 degrees, the flip among them) tried for a suspect view."""


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


def _race(engine: GenerativeLifting, images_BHW3: Tensor, K_B33: Tensor, judged_BHW3: Tensor, judged_K_B33: Tensor,
          c2w_BJ44: Tensor, config: RefineConfig, generator: torch.Generator | None) -> Tensor:
    """(B, 4, 4) the winner of a race (successive halving) among each view's J candidates: all
    are refined for `correction_race_steps`, the one with the lowest full-image error on the judged views
    goes on alone for the rest of `correction_steps`. A wrong candidate shows early."""
    b, j = c2w_BJ44.shape[:2]
    race_steps = min(config.correction_race_steps, config.correction_steps)
    raced_BJ44 = refine_poses(engine, images_BHW3.repeat_interleave(j, 0), K_B33.repeat_interleave(j, 0),
                              c2w_BJ44.reshape(-1, 4, 4), race_steps, config.correction_rays_per_view, config,
                              generator).reshape(b, j, 4, 4)
    winner_B = candidate_errors(engine, judged_BHW3, judged_K_B33, raced_BJ44).argmin(dim=1)
    leader_B44 = raced_BJ44[torch.arange(b, device=c2w_BJ44.device), winner_B]
    return refine_poses(engine, images_BHW3, K_B33, leader_B44, config.correction_steps - race_steps,
                        config.correction_rays_per_view, config, generator)


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


def lower_residual(current: OutlierCorrection, restarted: OutlierCorrection) -> OutlierCorrection:
    """Per view, the correction that leaves the lower residual; a view whose restarted pose wins
    has moved (to its start pose or a pose found from there), even where the search kept that pose."""
    restart_N = restarted.residual_N < current.residual_N
    moved_N = restarted.reposed_N | (restart_N & ~restarted.outlier_N)

    def pick(a: Tensor, b: Tensor) -> Tensor:
        return torch.where(restart_N.view(-1, *[1] * (a.dim() - 1)), b, a)

    return OutlierCorrection(c2w_N44=pick(current.c2w_N44, restarted.c2w_N44),
                             outlier_N=pick(current.outlier_N, restarted.outlier_N),
                             reposed_N=pick(current.reposed_N, moved_N),
                             residual_N=pick(current.residual_N, restarted.residual_N))
