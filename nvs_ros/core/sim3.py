"""Similarity transforms (Sim(3)) between camera sets: x -> s R x + t, fitted to point pairs by
Umeyama's least squares, or by RANSAC over Umeyama fits of triples where a few wrong pairs (a
flipped camera) would drag a least-squares fit."""

import itertools
import math
from dataclasses import dataclass

import numpy as np

# How many RANSAC models are scored at once: bounds memory to chunk * N * 3 floats.
_RANSAC_CHUNK = 256


@dataclass(frozen=True)
class Sim3:
    """Similarity transform x_dst = scale * R_33 @ x_src + t_3."""

    scale: float
    R_33: np.ndarray
    t_3: np.ndarray

    def apply_points(self, pts_N3: np.ndarray) -> np.ndarray:
        """Transform points (..., 3)."""
        return self.scale * np.asarray(pts_N3, dtype=np.float64) @ self.R_33.T + self.t_3

    def apply_c2w(self, c2w_N44: np.ndarray) -> np.ndarray:
        """Transform camera-to-world poses (..., 4, 4).

        The camera turns by R and its centre maps like a point; its axes stay unit length
        (scaling the world moves cameras, it does not change them).
        """
        c2w_N44 = np.asarray(c2w_N44, dtype=np.float64)
        out_N44 = c2w_N44.copy()
        out_N44[..., :3, :3] = self.R_33 @ c2w_N44[..., :3, :3]
        out_N44[..., :3, 3] = self.apply_points(c2w_N44[..., :3, 3])
        return out_N44

    def inverse(self) -> "Sim3":
        """x_src = (1 / scale) * R^T @ (x_dst - t)."""
        return Sim3(1.0 / self.scale, self.R_33.T, -(self.R_33.T @ self.t_3) / self.scale)


def umeyama_sim3(src_N3: np.ndarray, dst_N3: np.ndarray, with_scale: bool = True) -> Sim3:
    """Least-squares similarity (Umeyama 1991) minimising sum ||dst - (s R src + t)||^2.

    R is always a proper rotation (det +1), even where a reflection would fit better. With
    collinear points the rotation about their line is arbitrary. Raises ValueError for fewer
    than 3 points or when the source points coincide (no scale can be fitted).
    """
    src_N3, dst_N3 = _check_point_pairs(src_N3, dst_N3)
    if points_coincide(src_N3):
        raise ValueError("the source points coincide: a Sim(3) is undefined")
    scale_B, R_B33, t_B3 = _umeyama_batch(src_N3[None], dst_N3[None], with_scale)
    return Sim3(float(scale_B[0]), R_B33[0], t_B3[0])


def ransac_sim3(src_N3: np.ndarray, dst_N3: np.ndarray, threshold: float, iterations: int = 1000,
                seed: int = 0) -> tuple[Sim3, np.ndarray]:
    """Robust Sim(3): RANSAC over 3-point samples, then Umeyama refits on the inliers.

    A point is an inlier when ||dst - sim(src)|| < threshold (dst units). The sample model with
    the most inliers wins (ties: smaller truncated residual sum); it is refitted on its inliers
    until the inlier set stops changing. When C(N, 3) <= iterations every triple is tried, so
    small scenes are searched exhaustively. Deterministic for a seed.
    Returns (sim3, inlier_N), the mask being that of the returned model.
    """
    src_N3, dst_N3 = _check_point_pairs(src_N3, dst_N3)
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    if points_coincide(src_N3):
        raise ValueError("the source points coincide: a Sim(3) is undefined")
    sample_B3 = _sample_triples(len(src_N3), iterations, np.random.default_rng(seed))
    best, best_key = None, None
    for start in range(0, len(sample_B3), _RANSAC_CHUNK):
        chunk_B3 = sample_B3[start:start + _RANSAC_CHUNK]
        scale_B, R_B33, t_B3 = _umeyama_batch(src_N3[chunk_B3], dst_N3[chunk_B3], True)
        with np.errstate(invalid="ignore", over="ignore"):  # degenerate samples give nan, dropped below
            residual_BN = np.linalg.norm(
                dst_N3 - (scale_B[:, None, None] * src_N3 @ R_B33.transpose(0, 2, 1) + t_B3[:, None]), axis=-1)
        count_B = (residual_BN < threshold).sum(axis=1)
        cost_B = np.minimum(residual_BN, threshold).sum(axis=1)
        count_B[~np.isfinite(cost_B)] = -1  # degenerate sample: coincident points
        b = np.lexsort((cost_B, -count_B))[0]
        if best_key is None or (count_B[b], -cost_B[b]) > best_key:
            best, best_key = Sim3(float(scale_B[b]), R_B33[b], t_B3[b]), (count_B[b], -cost_B[b])
    if best_key[0] < 0:  # every sample was degenerate (many duplicate points): fit them all
        best = umeyama_sim3(src_N3, dst_N3)
    inlier_N = alignment_residuals(best, src_N3, dst_N3) < threshold
    for _ in range(20):
        if inlier_N.sum() < 3 or points_coincide(src_N3[inlier_N]):
            break
        refit = umeyama_sim3(src_N3[inlier_N], dst_N3[inlier_N])
        refit_inlier_N = alignment_residuals(refit, src_N3, dst_N3) < threshold
        best, stable = refit, np.array_equal(refit_inlier_N, inlier_N)
        inlier_N = refit_inlier_N
        if stable:
            break
    return best, inlier_N


def _umeyama_batch(src_BM3: np.ndarray, dst_BM3: np.ndarray,
                   with_scale: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Umeyama on B point sets at once; coincident source sets give non-finite scales."""
    mu_src_B3, mu_dst_B3 = src_BM3.mean(axis=1), dst_BM3.mean(axis=1)
    src_c_BM3, dst_c_BM3 = src_BM3 - mu_src_B3[:, None], dst_BM3 - mu_dst_B3[:, None]
    var_src_B = (src_c_BM3**2).sum(axis=(1, 2)) / src_BM3.shape[1]
    cov_B33 = np.einsum("bmi,bmj->bij", dst_c_BM3, src_c_BM3) / src_BM3.shape[1]
    U_B33, S_B3, Vt_B33 = np.linalg.svd(cov_B33)
    # Flip the weakest axis where U V^T would be a reflection.
    fix_B3 = np.ones_like(S_B3)
    fix_B3[:, 2] = np.where(np.linalg.det(U_B33) * np.linalg.det(Vt_B33) < 0, -1.0, 1.0)
    R_B33 = (U_B33 * fix_B3[:, None, :]) @ Vt_B33
    with np.errstate(divide="ignore", invalid="ignore"):
        scale_B = (S_B3 * fix_B3).sum(axis=1) / var_src_B if with_scale else np.ones(len(S_B3))
    t_B3 = mu_dst_B3 - scale_B[:, None] * np.einsum("bij,bj->bi", R_B33, mu_src_B3)
    return scale_B, R_B33, t_B3


def _sample_triples(n: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """Index triples for RANSAC: all of them when there are few, else `iterations` random ones."""
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    if math.comb(n, 3) <= iterations:
        return np.array(list(itertools.combinations(range(n), 3)))
    return np.stack([rng.choice(n, size=3, replace=False) for _ in range(iterations)])


def alignment_residuals(sim: Sim3, src_N3: np.ndarray, dst_N3: np.ndarray) -> np.ndarray:
    return np.linalg.norm(sim.apply_points(src_N3) - dst_N3, axis=-1)


def points_coincide(pts_N3: np.ndarray) -> bool:
    """True when the points' spread is negligible next to their magnitude (or zero)."""
    spread = np.linalg.norm(pts_N3 - pts_N3.mean(axis=0), axis=-1).max()
    return bool(spread <= 1e-9 * np.abs(pts_N3).max())


def _check_point_pairs(src_N3: np.ndarray, dst_N3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    src_N3 = np.asarray(src_N3, dtype=np.float64)
    dst_N3 = np.asarray(dst_N3, dtype=np.float64)
    if src_N3.ndim != 2 or src_N3.shape[1] != 3 or src_N3.shape != dst_N3.shape:
        raise ValueError(f"src and dst must both have shape (N, 3), got {src_N3.shape} and {dst_N3.shape}")
    if len(src_N3) < 3:
        raise ValueError(f"a Sim(3) needs at least 3 point pairs, got {len(src_N3)}")
    if not (np.isfinite(src_N3).all() and np.isfinite(dst_N3).all()):
        raise ValueError("src and dst must be finite")
    return src_N3, dst_N3
