"""A run's judgement of its own poses, from its own evidence only (never ground truth).

A pose that is wrong without warning is the worst answer the product can give, so every run
says how far its evidence supports it:
- independent starts (`TrainerConfig.starts` > 1): pose learning races several seeds through its
  coarse stage (core.training_phases), each ending with its flips re-assigned; starts that land
  in the same basin agree on the views' relative rotations, and wrong basins are rarely found
  twice.
  Agreement of two pose sets is the share of view pairs whose relative rotations and directions
  differ by less than `agreement_deg` (RRA of one set against the other: free of the gauge,
  which each start fixes its own way), over the pairs whose cameras stand apart in either set
  (starts that all collapsed onto one pose agree on nothing). The kept start's basin is
  confirmed when another start agrees with it on `min_agreement` of the pairs, or when its
  images' error beats every other start's clearly (`clear_win_ratio`): starts cut short in a
  wrong basin explain the images worse. Otherwise, and for a single start, only a finished fit
  far better than the mean image (`confident_gain_db`, below) confirms the basin.
- photometric support: after training, a view the scene explains many times worse than its
  median view (`max_residual_ratio`) is not supported: it is reported unregistered, not placed.
  The ratio is relative to the run's own views, so it holds across scenes, whose absolute
  residuals differ by orders of magnitude.
- fit: the scene must explain its views `min_gain_db` better than their mean image does (the
  blur a field learns when every view sits at one pose, or when training stopped early). A gain
  relative to the same images, not an absolute PSNR: an object on white scores 20 dB from the
  mean image alone, a textured room 12.

The verdict is "converged" when every piece of evidence the run has holds. When one fails it is
"unconverged" for poses the run learnt, and "unconfirmed" for poses it was given (odometry, a
poses file, the feature chain): the scene does not bear them out, which may be the poses' fault
or a field trained too briefly to say (a live round of a few seconds). A learnt run with a single
start has no second opinion on its basin: "unconfirmed" too, unless its fit is confident.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from nvs_ros.core.metrics import relative_pose_errors

CONVERGED = "converged"
UNCONFIRMED = "unconfirmed"
UNCONVERGED = "unconverged"


@dataclass(frozen=True)
class SelfCheckConfig:
    """Thresholds of the self-check (core.self_check)."""

    agreement_deg: float = 20.0
    """Two starts agree on a pair of views when their relative rotations differ by less than this
    (the starts are compared at the end of the coarse stage, 32 px: degrees apart when right)."""
    min_agreement: float = 0.5
    """Share of the view pairs on which another start must agree for the kept start's basin to
    be confirmed. Starts in the right basin still differ in a few views the fine stage and the
    refinement settle (the demo's ring: 43-52% of pairs); starts in different basins agree on
    few (tiny ring: 4-21%)."""
    clear_win_ratio: float = 0.5
    """The kept start wins clearly when its error is below this share of every other start's
    (measured: right tiny rings 0.09, wrong ones 0.98-1.00; the demo's ring 0.60-0.85 right,
    0.72 wrong)."""
    confident_gain_db: float = 14.5
    """A finished fit this many dB better than the mean image confirms the basin on its own. Set
    between the demo's right and wrong runs (bench/README.md, robustness.py), with little margin
    on either side; a tiny ring's right runs stay far below it, and there the race decides."""
    max_residual_ratio: float = 5.0
    """A view whose full-image MSE is above this many times the median view's is not supported."""
    min_supported: float = 0.8
    """Share of the trained views that must be supported for the run to have converged."""
    min_gain_db: float = 3.0
    """dB by which the median view's fit must beat the mean image's."""
    apart_fraction: float = 0.01
    """Cameras closer than this share of the largest distance between two of them stand together
    (their pair says nothing of the agreement)."""


@dataclass
class Verdict:
    """What a run's own evidence says of its poses."""

    status: str
    """CONVERGED, UNCONFIRMED (given poses the scene does not bear out, or one start) or
    UNCONVERGED (learnt poses the evidence contradicts)."""
    reasons: list[str]
    """One line per failed or missing piece of evidence; empty when converged."""
    supported_N: np.ndarray
    """(N,) bool: views the photometric evidence supports."""
    evidence: dict = field(default_factory=dict)
    """The numbers behind it (agreements, residual ratios, median PSNR), for run.json."""

    @property
    def converged(self) -> bool:
        return self.status == CONVERGED

    def summary(self) -> str:
        return self.status if not self.reasons else f"{self.status}: {'; '.join(self.reasons)}"

    def as_dict(self) -> dict:
        return {"status": self.status, "reasons": self.reasons, "supported": int(self.supported_N.sum()),
                "views": len(self.supported_N), "evidence": self.evidence}


def pose_agreement(a_c2w_N44: np.ndarray, b_c2w_N44: np.ndarray, tolerance_deg: float,
                   apart_fraction: float = 0.01) -> float:
    """Share of view pairs on which `a` and `b` agree: relative rotation and direction within
    `tolerance_deg`, over the pairs whose cameras stand apart in either set (0 when none does:
    nothing is confirmed). Views without a finite pose in either disagree."""
    known_N = np.isfinite(a_c2w_N44).all(axis=(1, 2)) & np.isfinite(b_c2w_N44).all(axis=(1, 2))
    if len(known_N) < 2:
        return 0.0
    a = np.where(known_N[:, None, None], a_c2w_N44, np.eye(4))
    b = np.where(known_N[:, None, None], b_c2w_N44, np.eye(4))
    rotation_err_P, direction_err_P = relative_pose_errors(a, b, known_N)
    apart_P = _apart(a, apart_fraction) | _apart(b, apart_fraction)
    if not apart_P.any():
        return 0.0
    agree_P = (rotation_err_P < tolerance_deg) & (direction_err_P < tolerance_deg)
    return float(agree_P[apart_P].mean())


def _apart(c2w_N44: np.ndarray, fraction: float) -> np.ndarray:
    """(P,) pairs i < j whose centres are further apart than `fraction` of the largest distance."""
    centres_N3 = c2w_N44[:, :3, 3]
    i_P, j_P = np.triu_indices(len(centres_N3), k=1)
    distance_P = np.linalg.norm(centres_N3[i_P] - centres_N3[j_P], axis=1)
    return distance_P > fraction * max(float(distance_P.max()), 1e-12)


def judge(error_N: np.ndarray, mean_image_error_N: np.ndarray, judged_N: np.ndarray,
          start_c2w: list[np.ndarray] | None = None, start_errors: list[float] | None = None,
          kept_start: int = 0, given_poses: bool = False, config: SelfCheckConfig = SelfCheckConfig()) -> Verdict:
    """The verdict of a run whose views (`judged_N`: those the run placed) end with full-image MSEs
    `error_N` (`mean_image_error_N`: against the mean of the judged images instead); `start_c2w`
    and `start_errors` are the poses and the images' error each start of the race ended its
    coarse stage with (`kept_start` went on); `given_poses`: the poses started from elsewhere
    (features, odometry, a file), whose own checks stand in for the starts'."""
    error_N = np.asarray(error_N, dtype=np.float64)
    judged_N = np.asarray(judged_N, dtype=bool)
    finite_N = judged_N & np.isfinite(error_N)
    median = float(np.median(error_N[finite_N])) if finite_N.any() else math.inf
    ratio_N = error_N / max(median, 1e-12)
    supported_N = finite_N & (ratio_N <= config.max_residual_ratio)
    gain_N = 10.0 * np.log10(np.maximum(mean_image_error_N, 1e-12) / np.maximum(error_N, 1e-12))
    evidence: dict = {"median_psnr_db": -10.0 * math.log10(max(median, 1e-10)) if math.isfinite(median) else 0.0,
                      "gain_over_mean_image_db": float(np.median(gain_N[finite_N])) if finite_N.any() else 0.0,
                      "supported_share": float(supported_N.sum() / max(judged_N.sum(), 1)),
                      "judged_views": int(judged_N.sum()),
                      "max_residual_ratio": float(ratio_N[finite_N].max()) if finite_N.any() else None}
    if start_c2w is not None and len(start_c2w) > 1:
        others = [e for i, e in enumerate(start_errors or []) if i != kept_start]
        evidence["start_agreement"] = [pose_agreement(start_c2w[kept_start], other, config.agreement_deg,
                                                      config.apart_fraction)
                                       for i, other in enumerate(start_c2w) if i != kept_start]
        evidence["start_win_ratio"] = start_errors[kept_start] / max(min(others), 1e-12) if others else 1.0
    status, reasons = verdict_of(evidence, given_poses, config)
    return Verdict(status=status, reasons=reasons, supported_N=supported_N, evidence=evidence)


def verdict_of(evidence: dict, given_poses: bool, config: SelfCheckConfig = SelfCheckConfig()) -> tuple[str, list[str]]:
    """Status and reasons from a run's evidence (`Verdict.evidence`: also how a stored run is
    judged again with other thresholds)."""
    reasons: list[str] = []
    failed = UNCONFIRMED if given_poses else UNCONVERGED
    status = CONVERGED
    gain_db, supported_share = evidence["gain_over_mean_image_db"], evidence["supported_share"]
    if gain_db < config.min_gain_db:
        status = failed
        reasons.append(f"the scene explains its views hardly better than their mean image ({gain_db:.1f} dB)")
    if supported_share < config.min_supported:
        status = failed
        judged = evidence["judged_views"]
        reasons.append(f"{judged - round(supported_share * judged)} of {judged} views are not explained by the "
                       f"scene (residual > {config.max_residual_ratio:g} x the median view's)")
    if "start_agreement" in evidence:
        agreement, win_ratio = max(evidence["start_agreement"]), evidence["start_win_ratio"]
        confirmed = (agreement >= config.min_agreement or win_ratio <= config.clear_win_ratio
                     or gain_db >= config.confident_gain_db)
        if not confirmed:
            status = UNCONVERGED
            reasons.append(f"no other start agrees with the kept one ({agreement:.0%} of view pairs within "
                           f"{config.agreement_deg:g} deg), none explains the images clearly worse "
                           f"(error ratio {win_ratio:.2f}), and the fit is {gain_db:.1f} dB over the mean image")
    elif not given_poses and status == CONVERGED and gain_db < config.confident_gain_db:
        status = UNCONFIRMED
        reasons.append(f"one start and a fit {gain_db:.1f} dB over the mean image: no second opinion on the poses")
    return status, reasons
