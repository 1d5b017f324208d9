"""Corner tracking between two frames (pyramidal Lucas-Kanade optical flow, OpenCV): the
viewpoint cue of keyframe selection (core.keyframes.ViewpointCue).

Corners of a keyframe (Shi-Tomasi) are tracked into a frame and back; a corner tracks when both
directions succeed and it returns within `max_round_trip_px` of where it started. Image motion
that flow follows (a pan, the next frame of a video) leaves the corners tracked; a new viewpoint
(a turn around an object: sides appear and disappear, shading changes) leaves many untracked.
"""

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class TrackingConfig:
    max_corners: int = 100
    """Corners taken from a keyframe at most."""
    corner_quality: float = 0.01
    """Shi-Tomasi quality level: a corner's response relative to the strongest one."""
    min_corner_distance_px: float = 4.0
    min_corner_strength: float = 0.001
    """Smallest eigenvalue of a corner's structure tensor (cv2.cornerMinEigenVal, 3x3 block) at
    least: the quality level is relative to the strongest corner, so a plain image's noise would
    give corners that never track; this keeps only corners above what camera noise makes."""
    min_corners: int = 8
    """A keyframe with fewer corners (a plain image) tells nothing: the cue abstains (NaN)."""
    window_px: int = 9
    """Flow window side: small windows follow only what looks alike up close."""
    pyramid_levels: int = 3
    """Coarser levels follow motion of up to ~window x 2^levels pixels."""
    max_round_trip_px: float = 1.0
    """Forward-backward error above which a corner counts as untracked."""


@dataclass(frozen=True)
class KeyframeCorners:
    gray_HW: np.ndarray
    corners_N12: np.ndarray | None


class CornerTracking:
    """core.keyframes.ViewpointCue by optical flow."""

    def __init__(self, config: TrackingConfig = TrackingConfig()) -> None:
        self.config = config
        self._flow = dict(winSize=(config.window_px, config.window_px), maxLevel=config.pyramid_levels)

    def features(self, gray_HW: np.ndarray) -> KeyframeCorners:
        config = self.config
        corners_N12 = cv2.goodFeaturesToTrack(gray_HW, config.max_corners, config.corner_quality,
                                              config.min_corner_distance_px)
        if corners_N12 is not None:
            strength_HW = cv2.cornerMinEigenVal(gray_HW, 3)
            column_N, row_N = np.round(corners_N12[:, 0]).astype(int).T
            corners_N12 = corners_N12[strength_HW[row_N, column_N] >= config.min_corner_strength]
        return KeyframeCorners(gray_HW, corners_N12)

    def untracked(self, keyframe_features: KeyframeCorners, gray_HW: np.ndarray) -> float:
        start_N12 = keyframe_features.corners_N12
        if start_N12 is None or len(start_N12) < self.config.min_corners:
            return float("nan")
        if gray_HW.shape != keyframe_features.gray_HW.shape:
            return 1.0  # another image size: nothing to compare, count it as new
        there_N12, found, _ = cv2.calcOpticalFlowPyrLK(keyframe_features.gray_HW, gray_HW, start_N12, None,
                                                       **self._flow)
        back_N12, found_back, _ = cv2.calcOpticalFlowPyrLK(gray_HW, keyframe_features.gray_HW, there_N12, None,
                                                           **self._flow)
        round_trip_N = np.linalg.norm((back_N12 - start_N12)[:, 0], axis=1)
        tracked_N = (found[:, 0] == 1) & (found_back[:, 0] == 1) & (round_trip_N < self.config.max_round_trip_px)
        return float(1.0 - tracked_N.mean())
