"""Poses from a declared source (odometry TF, a poses file) as the frame and scale of the products.

A monocular reconstruction is defined up to a similarity: the engine's gauge puts the cameras
around the origin at a fixed distance. When some cameras also have poses from a source the user
declares (a robot's odometry, which is metric; a poses file), the products are given in that
source's frame through the similarity that best maps the estimated cameras onto those poses.

The rotation comes from the camera orientations, not from the centres: a robot driving straight
ahead has its camera centres on a line, which leaves a centre-only (Umeyama) fit free to spin
about that line. Scale and translation then come from the centres by least squares. Cameras whose
orientation disagrees with the first fit by more than `max_rotation_deg` (a wrong estimate, an
odometry jump) are left out of the second fit.
"""

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from nvs_ros.core.metrics import rotation_angle_deg
from nvs_ros.core.sim3 import Sim3


@dataclass(frozen=True)
class PriorAlignment:
    to_prior: Sim3
    """Maps the scene's frame (the engine's gauge) into the source's frame."""
    inlier_N: np.ndarray
    """Cameras the final fit used (False also where a camera has no prior or no estimate)."""
    rotation_residual_deg_N: np.ndarray
    """Angle between each aligned estimate and its prior (NaN without both)."""
    centre_residual_N: np.ndarray
    """Distance between each aligned camera centre and its prior, in the source's units."""
    scale_source: str
    """What fixes the scale: the source's name ("odometry", "poses file")."""


def align_to_prior(c2w_N44: np.ndarray, prior_c2w_N44: np.ndarray, scale_source: str,
                   max_rotation_deg: float = 15.0, min_baseline: float = 1e-3) -> PriorAlignment | None:
    """The similarity from estimated cameras (N, 4, 4) to their priors (N, 4, 4; NaN rows where a
    camera has none), or None when the priors cannot fix one: fewer than two cameras with both
    poses, or their prior centres within `min_baseline` of each other (no baseline, no scale)."""
    c2w_N44, prior_c2w_N44 = np.asarray(c2w_N44, np.float64), np.asarray(prior_c2w_N44, np.float64)
    if c2w_N44.shape != prior_c2w_N44.shape:
        raise ValueError(f"estimates {c2w_N44.shape} and priors {prior_c2w_N44.shape} differ in shape")
    both_N = np.isfinite(c2w_N44).all(axis=(1, 2)) & np.isfinite(prior_c2w_N44).all(axis=(1, 2))
    to_prior = _fit(c2w_N44, prior_c2w_N44, both_N, min_baseline)
    if to_prior is None:
        return None
    inlier_N = both_N & (_rotation_residuals(to_prior, c2w_N44, prior_c2w_N44) <= max_rotation_deg)
    refit = _fit(c2w_N44, prior_c2w_N44, inlier_N, min_baseline)
    if refit is not None:
        to_prior = refit
    else:  # too few agree to refit: keep the fit on all of them
        inlier_N = both_N
    rotation_N = np.where(both_N, _rotation_residuals(to_prior, c2w_N44, prior_c2w_N44), np.nan)
    aligned_N3 = to_prior.apply_points(np.where(both_N[:, None], c2w_N44[:, :3, 3], 0.0))
    centre_N = np.where(both_N, np.linalg.norm(aligned_N3 - np.nan_to_num(prior_c2w_N44[:, :3, 3]), axis=1), np.nan)
    return PriorAlignment(to_prior, inlier_N, rotation_N, centre_N, scale_source)


@dataclass(frozen=True)
class PriorGate:
    """How near its prior (odometry, a poses file, chained features) a registered pose must land
    to count as the same answer: two independent sources that agree. The offset is a share of
    the cameras' ring radius (the mean distance of their centres from their centroid: the
    poses' own scale), or a multiple of the priors' median residual where that is larger
    (odometry that drifts widens the gate as much as it has drifted)."""

    max_offset_fraction: float
    max_turn_deg: float
    residual_factor: float = 0.0

    def accepts(self, c2w_M44: np.ndarray, prior_M44: np.ndarray, ring_c2w_N44: np.ndarray,
                residual: float = 0.0) -> np.ndarray:
        """(M,) bool: poses within the gate around their priors (all in one frame, whose
        cameras `ring_c2w_N44` set the ring radius; NaN rows ignored)."""
        max_offset = max(self.max_offset_fraction * ring_radius(ring_c2w_N44), self.residual_factor * residual)
        return within_prior_gate(c2w_M44, prior_M44, max_offset, self.max_turn_deg)


def ring_radius(c2w_N44: np.ndarray) -> float:
    """Mean distance of the (finite) camera centres from their centroid."""
    c2w_N44 = np.asarray(c2w_N44, np.float64)
    centres_N3 = c2w_N44[np.isfinite(c2w_N44).all(axis=(1, 2)), :3, 3]
    return float(np.linalg.norm(centres_N3 - centres_N3.mean(axis=0), axis=1).mean()) if len(centres_N3) else 0.0


def within_prior_gate(c2w_N44: np.ndarray, prior_c2w_N44: np.ndarray, max_offset: float,
                      max_turn_deg: float) -> np.ndarray:
    """(N,) bool: poses whose centre lies within `max_offset` of their prior's and whose rotation
    is within `max_turn_deg` of it (both in the priors' frame; False where a prior is NaN)."""
    c2w_N44, prior_c2w_N44 = np.asarray(c2w_N44, np.float64), np.asarray(prior_c2w_N44, np.float64)
    known_N = np.isfinite(prior_c2w_N44).all(axis=(1, 2)) & np.isfinite(c2w_N44).all(axis=(1, 2))
    offset_N = np.linalg.norm(np.nan_to_num(c2w_N44[:, :3, 3] - prior_c2w_N44[:, :3, 3], nan=np.inf), axis=1)
    turn_N = rotation_angle_deg(np.swapaxes(np.nan_to_num(c2w_N44[:, :3, :3]), 1, 2)
                                @ np.nan_to_num(prior_c2w_N44[:, :3, :3]))
    return known_N & (offset_N <= max_offset) & (turn_N <= max_turn_deg)


def _fit(c2w_N44: np.ndarray, prior_c2w_N44: np.ndarray, use_N: np.ndarray, min_baseline: float) -> Sim3 | None:
    if use_N.sum() < 2:
        return None
    est, prior = c2w_N44[use_N], prior_c2w_N44[use_N]
    # chordal mean of the per-camera rotations prior_R @ est_R^T
    R_33 = Rotation.from_matrix(prior[:, :3, :3] @ np.swapaxes(est[:, :3, :3], 1, 2)).mean().as_matrix()
    est_centres_M3 = est[:, :3, 3] @ R_33.T
    prior_centres_M3 = prior[:, :3, 3]
    est_spread_M3 = est_centres_M3 - est_centres_M3.mean(axis=0)
    prior_spread_M3 = prior_centres_M3 - prior_centres_M3.mean(axis=0)
    if np.linalg.norm(prior_spread_M3, axis=1).max() < min_baseline or not np.any(est_spread_M3):
        return None
    scale = float((est_spread_M3 * prior_spread_M3).sum() / (est_spread_M3 ** 2).sum())
    if not scale > 0:  # the estimates move against the priors: no similarity relates them
        return None
    t_3 = prior_centres_M3.mean(axis=0) - scale * est_centres_M3.mean(axis=0)
    return Sim3(scale, R_33, t_3)


def _rotation_residuals(to_prior: Sim3, c2w_N44: np.ndarray, prior_c2w_N44: np.ndarray) -> np.ndarray:
    aligned_N33 = to_prior.R_33 @ np.nan_to_num(c2w_N44[:, :3, :3])
    return rotation_angle_deg(np.swapaxes(aligned_N33, 1, 2) @ np.nan_to_num(prior_c2w_N44[:, :3, :3]))
