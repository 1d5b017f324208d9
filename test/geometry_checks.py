"""Checks of camera conventions against the images themselves (test helper, not a test)."""

import cv2
import numpy as np


def _skew(v_3: np.ndarray) -> np.ndarray:
    return np.array([[0, -v_3[2], v_3[1]], [v_3[2], 0, -v_3[0]], [-v_3[1], v_3[0], 0]])


def fundamental_from_poses(K_a: np.ndarray, K_b: np.ndarray, c2w_a: np.ndarray, c2w_b: np.ndarray) -> np.ndarray:
    """F with x_b^T F x_a = 0, from OpenCV camera-to-world poses and intrinsics."""
    T_b_a = np.linalg.inv(c2w_b) @ c2w_a
    essential = _skew(T_b_a[:3, 3]) @ T_b_a[:3, :3]
    return np.linalg.inv(K_b).T @ essential @ np.linalg.inv(K_a)


def sift_matches(image_a: np.ndarray, image_b: np.ndarray, ratio: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """Ratio-test SIFT matches between two RGB uint8 images: (M, 2) pixel coordinates each."""
    sift = cv2.SIFT_create(nfeatures=4000)
    kp_a, desc_a = sift.detectAndCompute(cv2.cvtColor(image_a, cv2.COLOR_RGB2GRAY), None)
    kp_b, desc_b = sift.detectAndCompute(cv2.cvtColor(image_b, cv2.COLOR_RGB2GRAY), None)
    if desc_a is None or desc_b is None or len(kp_a) < 2 or len(kp_b) < 2:
        return np.zeros((0, 2)), np.zeros((0, 2))
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc_a, desc_b, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < ratio * n.distance]
    pts_a = np.array([kp_a[m.queryIdx].pt for m in good]).reshape(-1, 2)
    pts_b = np.array([kp_b[m.trainIdx].pt for m in good]).reshape(-1, 2)
    return pts_a, pts_b


def sampson_errors_px(F: np.ndarray, pts_a: np.ndarray, pts_b: np.ndarray) -> np.ndarray:
    """Sampson distance (first-order geometric error, pixels) of each match under F."""
    xa = np.c_[pts_a, np.ones(len(pts_a))]
    xb = np.c_[pts_b, np.ones(len(pts_b))]
    Fxa = xa @ F.T
    Ftxb = xb @ F
    numerator = np.einsum("ij,ij->i", xb, Fxa) ** 2
    denominator = Fxa[:, 0] ** 2 + Fxa[:, 1] ** 2 + Ftxb[:, 0] ** 2 + Ftxb[:, 1] ** 2
    return np.sqrt(numerator / denominator)


def median_sampson_error(image_set, index_a: int, index_b: int) -> tuple[float, int]:
    """Median Sampson error (px) of SIFT matches between two views under their GT poses."""
    pts_a, pts_b = sift_matches(image_set.images_NHW3[index_a], image_set.images_NHW3[index_b])
    if len(pts_a) == 0:
        return float("inf"), 0
    F = fundamental_from_poses(image_set.K_N33[index_a], image_set.K_N33[index_b],
                               image_set.c2w_N44[index_a], image_set.c2w_N44[index_b])
    return float(np.median(sampson_errors_px(F, pts_a, pts_b))), len(pts_a)
