"""Accuracy metrics: estimated cameras against ground truth, rendered views against photos.

Pose metrics follow ../shared/data/README.md and the PoseDiffusion / RelPose++ / VGGSfM papers:
- rotation accuracy of the relative rotations of all unordered image pairs (RRA@5, RRA@15),
  translation-direction accuracy of the same pairs (RTA@15), and mAA@30 over both;
- camera-centre accuracy (CCA@0.1 of the scene scale) and ATE RMSE after a Sim(3) Umeyama
  alignment of the estimated centres to the ground truth, and the same after a RANSAC Sim(3),
  because a few 180-degree flips wreck a least-squares fit.
An unregistered image is a failure in every fraction, and fractions are taken over ALL images
or pairs, so an estimator cannot score well by registering only its easy images.

Poses are camera-to-world 4x4 (OpenCV camera axes; any axes give the same numbers as long as
estimate and ground truth share them). Angles are in degrees, distances in ground-truth units.
`evaluate_poses` never returns nan or inf: an undefined value is None, so its dict is valid JSON.
"""

import math

import numpy as np

from nvs_ros.core.errors import InputError
from nvs_ros.core.sim3 import Sim3, alignment_residuals, points_coincide, ransac_sim3, umeyama_sim3

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def rotation_angle_deg(R_N33: np.ndarray) -> np.ndarray:
    """Angle of each rotation (..., 3, 3) in degrees, in [0, 180].

    atan2(|skew part|, trace - 1) rather than arccos((trace - 1) / 2): it needs no clipping and
    stays accurate near 0 and 180 degrees, where arccos loses half the digits.
    """
    R_N33 = np.asarray(R_N33, dtype=np.float64)
    skew_N3 = np.stack([R_N33[..., 2, 1] - R_N33[..., 1, 2], R_N33[..., 0, 2] - R_N33[..., 2, 0],
                        R_N33[..., 1, 0] - R_N33[..., 0, 1]], axis=-1)
    trace_N = np.trace(R_N33, axis1=-2, axis2=-1)
    return np.degrees(np.arctan2(np.linalg.norm(skew_N3, axis=-1), trace_N - 1.0))


def relative_pose_errors(est_c2w_N44: np.ndarray, gt_c2w_N44: np.ndarray,
                         registered_N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relative rotation and translation-direction errors (degrees) of all pairs i < j.

    Pairs are in np.triu_indices(N, 1) order. The relative pose of (i, j) is camera j seen
    from camera i: rotation R_i^T R_j and direction R_i^T (C_j - C_i), both invariant to any
    Sim(3) of the world. The direction error is the full angle in [0, 180] (PoseDiffusion folds
    it to [0, 90] because two-view geometry has a sign ambiguity; full poses do not). A pair
    whose estimated cameras coincide while the true ones do not gets 180 degrees, so
    collapsing all cameras to one point cannot score. A pair with an unregistered image
    gets +inf for both errors.
    """
    est_c2w_N44, registered_N, gt_c2w_N44 = _check_poses(est_c2w_N44, registered_N, gt_c2w_N44)
    i_P, j_P = np.triu_indices(len(gt_c2w_N44), k=1)
    # Placeholders for unregistered rows (NaN) keep the arithmetic warning-free; overwritten below.
    est_c2w_N44 = np.where(registered_N[:, None, None], est_c2w_N44, np.eye(4))
    est_rel_P33 = _relative_rotations(est_c2w_N44, i_P, j_P)
    gt_rel_P33 = _relative_rotations(gt_c2w_N44, i_P, j_P)
    rotation_err_P = rotation_angle_deg(est_rel_P33.transpose(0, 2, 1) @ gt_rel_P33)
    est_dir_P3, est_zero_P = _relative_directions(est_c2w_N44, i_P, j_P, registered_N)
    gt_dir_P3, gt_zero_P = _relative_directions(gt_c2w_N44, i_P, j_P, np.ones_like(registered_N))
    cross_P = np.linalg.norm(np.cross(est_dir_P3, gt_dir_P3), axis=-1)
    translation_err_P = np.degrees(np.arctan2(cross_P, (est_dir_P3 * gt_dir_P3).sum(axis=-1)))
    translation_err_P[est_zero_P != gt_zero_P] = 180.0
    translation_err_P[est_zero_P & gt_zero_P] = 0.0
    failed_P = ~(registered_N[i_P] & registered_N[j_P])
    rotation_err_P[failed_P] = np.inf
    translation_err_P[failed_P] = np.inf
    return rotation_err_P, translation_err_P


def evaluate_poses(est_c2w_N44: np.ndarray, registered_N: np.ndarray,
                   gt_c2w_N44: np.ndarray) -> dict[str, float | int | None]:
    """Every pose metric of one estimate against the ground truth of the same N images.

    Keys: num_images, registered, registered_fraction; RRA@5, RRA@15, RTA@15 and mAA@30 (mean
    over thresholds 1..30 degrees of the fraction of pairs with max(rotation, direction error)
    below it), all over all N(N-1)/2 pairs; scene_scale (GT centroid to farthest GT centre);
    CCA@0.1 (fraction of all N images whose aligned centre is within 0.1 * scene_scale of the
    GT centre) and ATE (RMSE of the registered centres) after Umeyama Sim(3); ATE_robust and
    CCA@0.1_robust after RANSAC Sim(3) (inlier threshold 0.1 * scene_scale, refitted on the
    inliers; ATE_robust is still over all registered images, outliers included);
    median_rotation_error_deg: median over registered images of the absolute rotation error
    after turning the estimate by the rotation of the robust Sim(3); and
    median_relative_rotation_error_deg over all pairs (unregistered pairs count as infinite).

    Undefined values are None: ATE, ATE_robust and median_rotation_error_deg with fewer than 3
    registered cameras or coincident estimated centres (the CCAs are then 0), and the median
    relative rotation error when more than half of the pairs involve an unregistered image.
    """
    est_c2w_N44, registered_N, gt_c2w_N44 = _check_poses(est_c2w_N44, registered_N, gt_c2w_N44)
    n = len(gt_c2w_N44)
    rotation_err_P, translation_err_P = relative_pose_errors(est_c2w_N44, gt_c2w_N44, registered_N)
    pair_err_P = np.maximum(rotation_err_P, translation_err_P)
    gt_centre_N3 = gt_c2w_N44[:, :3, 3]
    scene_scale = float(np.linalg.norm(gt_centre_N3 - gt_centre_N3.mean(axis=0), axis=1).max())
    if points_coincide(gt_centre_N3):
        raise InputError("the ground-truth camera centres coincide: the scene scale is zero")
    threshold = 0.1 * scene_scale
    plain = _centre_alignment(est_c2w_N44, registered_N, gt_c2w_N44, threshold, robust=False)
    robust = _centre_alignment(est_c2w_N44, registered_N, gt_c2w_N44, threshold, robust=True)
    return {
        "num_images": n,
        "registered": int(registered_N.sum()),
        "registered_fraction": float(registered_N.mean()),
        "RRA@5": float(np.mean(rotation_err_P < 5.0)),
        "RRA@15": float(np.mean(rotation_err_P < 15.0)),
        "RTA@15": float(np.mean(translation_err_P < 15.0)),
        "mAA@30": float(np.mean([np.mean(pair_err_P < t) for t in range(1, 31)])),
        "scene_scale": scene_scale,
        "CCA@0.1": _cca(plain, threshold, n),
        "ATE": _rmse(plain),
        "ATE_robust": _rmse(robust),
        "CCA@0.1_robust": _cca(robust, threshold, n),
        "median_rotation_error_deg": _median_rotation_error(est_c2w_N44, registered_N, gt_c2w_N44,
                                                            robust),
        "median_relative_rotation_error_deg": finite_or_none(float(np.median(rotation_err_P))),
    }


def psnr(rendered_HW3: np.ndarray, reference_HW3: np.ndarray, mask_HW: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB, peak 1 (uint8 images are divided by 255, float images
    are taken as [0, 1]). With a boolean mask only its pixels count.

    Identical images give float('inf'), the true value; JSON cannot hold it, so a metrics dict
    should store finite_or_none(psnr(...)).
    """
    rendered, reference = _check_images(rendered_HW3, reference_HW3, min_side=1)
    squared_HWC = (rendered - reference) ** 2
    if mask_HW is not None:
        mask_HW = np.asarray(mask_HW, dtype=bool)
        if mask_HW.shape != rendered.shape[:2]:
            raise ValueError(f"mask must have shape {rendered.shape[:2]}, got {mask_HW.shape}")
        if not mask_HW.any():
            raise ValueError("the mask selects no pixel")
        squared_HWC = squared_HWC[mask_HW]
    mse = float(np.mean(squared_HWC))
    return math.inf if mse == 0.0 else -10.0 * math.log10(mse)


def ssim(rendered_HW3: np.ndarray, reference_HW3: np.ndarray) -> float:
    """Mean structural similarity (Wang et al. 2004), in [-1, 1], 1 for identical images.

    The definition NeRF papers report: 11x11 Gaussian window of sigma 1.5, data range 1 (uint8
    divided by 255), K1 = 0.01, K2 = 0.03, population (co)variances, windows entirely inside
    the image, computed per channel and averaged. Equal to skimage's structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1).
    """
    x_HWC, y_HWC = _check_images(rendered_HW3, reference_HW3, min_side=_SSIM_WINDOW)
    mu_x, mu_y = _gaussian_filter_valid(x_HWC), _gaussian_filter_valid(y_HWC)
    var_x = _gaussian_filter_valid(x_HWC * x_HWC) - mu_x**2
    var_y = _gaussian_filter_valid(y_HWC * y_HWC) - mu_y**2
    cov_xy = _gaussian_filter_valid(x_HWC * y_HWC) - mu_x * mu_y
    c1, c2 = _SSIM_K1**2, _SSIM_K2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def finite_or_none(value: float) -> float | None:
    """`value` as a float, or None where it is nan or infinite (JSON has no such numbers)."""
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------- helpers


def _relative_rotations(c2w_N44: np.ndarray, i_P: np.ndarray, j_P: np.ndarray) -> np.ndarray:
    R_N33 = c2w_N44[:, :3, :3]
    return R_N33[i_P].transpose(0, 2, 1) @ R_N33[j_P]


def _relative_directions(c2w_N44: np.ndarray, i_P: np.ndarray, j_P: np.ndarray,
                         used_N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit direction of centre j in camera i's frame, and where it is undefined (centres
    closer than 1e-9 of the extent of the `used_N` centres; zero vectors there)."""
    centre_N3 = c2w_N44[:, :3, 3]
    baseline_P3 = np.einsum("pji,pj->pi", c2w_N44[i_P, :3, :3], centre_N3[j_P] - centre_N3[i_P])
    length_P = np.linalg.norm(baseline_P3, axis=-1)
    used_N3 = centre_N3[used_N]
    extent = np.linalg.norm(used_N3 - used_N3.mean(axis=0), axis=-1).max() if len(used_N3) else 0.0
    zero_P = length_P <= 1e-9 * extent
    return baseline_P3 / np.where(zero_P, 1.0, length_P)[:, None] * ~zero_P[:, None], zero_P


def _centre_alignment(est_c2w_N44: np.ndarray, registered_N: np.ndarray, gt_c2w_N44: np.ndarray,
                      threshold: float, robust: bool) -> tuple[Sim3, np.ndarray] | None:
    """(Sim(3) of estimated centres onto GT, centre errors of the registered images), or None."""
    est_M3 = est_c2w_N44[registered_N, :3, 3]
    gt_M3 = gt_c2w_N44[registered_N, :3, 3]
    if len(est_M3) < 3 or points_coincide(est_M3):
        return None
    sim = ransac_sim3(est_M3, gt_M3, threshold)[0] if robust else umeyama_sim3(est_M3, gt_M3)
    return sim, alignment_residuals(sim, est_M3, gt_M3)


def _cca(alignment: tuple[Sim3, np.ndarray] | None, threshold: float, n: int) -> float:
    return 0.0 if alignment is None else float((alignment[1] < threshold).sum() / n)


def _rmse(alignment: tuple[Sim3, np.ndarray] | None) -> float | None:
    return None if alignment is None else float(np.sqrt(np.mean(alignment[1] ** 2)))


def _median_rotation_error(est_c2w_N44: np.ndarray, registered_N: np.ndarray, gt_c2w_N44: np.ndarray,
                           alignment: tuple[Sim3, np.ndarray] | None) -> float | None:
    if alignment is None:
        return None
    aligned_M33 = alignment[0].R_33 @ est_c2w_N44[registered_N, :3, :3]
    gt_M33 = gt_c2w_N44[registered_N, :3, :3]
    return float(np.median(rotation_angle_deg(aligned_M33.transpose(0, 2, 1) @ gt_M33)))


def _check_poses(est_c2w_N44: np.ndarray, registered_N: np.ndarray,
                 gt_c2w_N44: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    est_c2w_N44 = np.asarray(est_c2w_N44, dtype=np.float64)
    gt_c2w_N44 = np.asarray(gt_c2w_N44, dtype=np.float64)
    registered_N = np.asarray(registered_N)
    if gt_c2w_N44.ndim != 3 or gt_c2w_N44.shape[1:] != (4, 4):
        raise ValueError(f"gt_c2w must have shape (N, 4, 4), got {gt_c2w_N44.shape}")
    n = len(gt_c2w_N44)
    if est_c2w_N44.shape != (n, 4, 4) or registered_N.shape != (n,):
        raise ValueError(f"est_c2w must have shape {(n, 4, 4)} and registered {(n,)}, "
                         f"got {est_c2w_N44.shape} and {registered_N.shape}")
    if registered_N.dtype != bool:
        raise ValueError(f"registered must be a boolean mask, got dtype {registered_N.dtype}")
    if n < 2:
        raise InputError(f"pose metrics need at least 2 images (1 pair), got {n}")
    for name, c2w_M44 in (("ground-truth", gt_c2w_N44), ("registered estimated", est_c2w_N44[registered_N])):
        if not np.isfinite(c2w_M44).all():
            raise InputError(f"a {name} pose is not finite")
        R_M33 = c2w_M44[:, :3, :3]
        if not np.allclose(R_M33.transpose(0, 2, 1) @ R_M33, np.eye(3), atol=1e-3) or \
                (np.linalg.det(R_M33) < 0).any():
            raise InputError(f"a {name} pose's rotation is not a rotation matrix")
    return est_c2w_N44, registered_N, gt_c2w_N44


def _check_images(a_HWC: np.ndarray, b_HWC: np.ndarray, min_side: int) -> tuple[np.ndarray, np.ndarray]:
    a_HWC, b_HWC = _to_unit_float(a_HWC), _to_unit_float(b_HWC)
    if a_HWC.shape != b_HWC.shape or a_HWC.ndim != 3:
        raise ValueError(f"images must both have shape (H, W, C), got {a_HWC.shape} and {b_HWC.shape}")
    if min(a_HWC.shape[:2]) < min_side:
        raise ValueError(f"images must be at least {min_side} pixels on each side, got {a_HWC.shape[:2]}")
    return a_HWC, b_HWC


def _to_unit_float(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    return image / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)


def _gaussian_filter_valid(image_HWC: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter keeping only windows inside the image: (H-10, W-10, C)."""
    offsets = np.arange(_SSIM_WINDOW) - _SSIM_WINDOW // 2
    kernel = np.exp(-0.5 * (offsets / _SSIM_SIGMA) ** 2)
    kernel /= kernel.sum()
    h, w = image_HWC.shape[0] - _SSIM_WINDOW + 1, image_HWC.shape[1] - _SSIM_WINDOW + 1
    # A loop over the 11 taps: no (H, W, C, 11) temporary, unlike a sliding-window matmul.
    rows = sum(kernel[k] * image_HWC[k:k + h] for k in range(_SSIM_WINDOW))
    return sum(kernel[k] * rows[:, k:k + w] for k in range(_SSIM_WINDOW))
