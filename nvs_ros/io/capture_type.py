"""Which reconstruction mode suits a capture: around the scene ("360") or facing one way ("forward").

First source: the loader's hint (`ImageSet.capture`, e.g. the bundled arc, a bag that recorded
it). Without one, the images decide: in a forward capture every view sees most of what a
reference view sees, so nearly every image matches the middle image of the capture order with
many SIFT correspondences that agree on one epipolar geometry (a fundamental matrix: a
homography leaves out the parallax of a deep scene such as fern); around a scene, views far
along the ring share nothing with it. SIFT runs on copies enlarged to `DETECT_SIDE` pixels (the
engine's working images, ~64-128 px, are too small for its scale space).
Measured (inliers with the middle image; 8-point RANSAC finds ~5-15 among random matches):
llff_fern 20 views at 64 / 128 px: min 11 / 23, 18 / 19 of the others >= 16; bundled arc at
128 px: all >= 290; rings at 128 px: bundled room 9 / 23, nerf_synthetic_chair 12 / 23,
middlebury_temple_ring 3 / 15, dtu_scan65 (20 views, a wide arc) 13 / 19 of the others >= 16.
"""

from typing import Literal

import cv2
import numpy as np

from nvs_ros.core.image_set import ImageSet

Mode = Literal["360", "forward"]

DETECT_SIDE = 320
"""Longer side of the images SIFT sees."""
MIN_INLIERS = 16
"""Correspondences (ratio test, then a RANSAC fundamental matrix) for an image to overlap the reference."""
FORWARD_FRACTION = 0.8
"""Share of the other images that must overlap the reference for "forward"."""


def choose_mode(image_set: ImageSet, requested: Literal["360", "forward", "auto"] = "auto") -> Mode:
    """`requested` unless "auto"; then the loader's capture hint, else `looks_forward`."""
    if requested != "auto":
        return requested
    if image_set.capture in ("360", "forward"):
        return image_set.capture
    return "forward" if looks_forward(image_set) else "360"


def looks_forward(image_set: ImageSet) -> bool:
    """True when at least FORWARD_FRACTION of the images overlap the middle one (MIN_INLIERS
    epipolar inliers among SIFT matches)."""
    if len(image_set) < 2:
        return True
    features = [_sift(image) for image in image_set.images_NHW3]
    reference = len(image_set) // 2
    others = [i for i in range(len(image_set)) if i != reference]
    overlapping = sum(_inliers(features[reference], features[i]) >= MIN_INLIERS for i in others)
    return overlapping >= FORWARD_FRACTION * len(others)


def _sift(image_HW3: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(keypoint positions (P, 2), descriptors (P, 128) or None) of an enlarged grey copy."""
    grey = cv2.cvtColor(image_HW3, cv2.COLOR_RGB2GRAY)
    scale = DETECT_SIDE / max(grey.shape)
    grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    keypoints, descriptors = cv2.SIFT_create().detectAndCompute(grey, None)
    return np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2), descriptors


def _inliers(a: tuple[np.ndarray, np.ndarray | None], b: tuple[np.ndarray, np.ndarray | None]) -> int:
    """Fundamental-matrix inliers among the ratio-test matches of two images' features."""
    (points_a, desc_a), (points_b, desc_b) = a, b
    if desc_a is None or desc_b is None or len(desc_a) < 2 or len(desc_b) < 2:
        return 0
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc_a, desc_b, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
    if len(good) < 8:
        return len(good)
    src = points_a[[m.queryIdx for m in good]]
    dst = points_b[[m.trainIdx for m in good]]
    _, mask = cv2.findFundamentalMat(src, dst, cv2.FM_RANSAC, 3.0, 0.99)
    return 0 if mask is None else int(mask.sum())
