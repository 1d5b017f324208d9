"""A live camera frame into the scene worker: at the working size, offered as a keyframe, and at
most `track_rate_hz` (by image stamps) handed over for tracking.

The node's camera callback calls this for every valid frame, so it only selects and hands over:
registration and training run in the worker (app/scene_worker.py).
"""

from collections.abc import Callable

import numpy as np

from nvs_ros.app.scene_worker import QueuedKeyframe, SceneWorker, TrackRequest
from nvs_ros.baselines.feature_tracking import CornerTracking
from nvs_ros.core.keyframes import KeyframeBuffer, KeyframeConfig
from nvs_ros.io.image_files import downscale, rescale_intrinsics

OdometryAt = Callable[[int], np.ndarray | None]
"""T_odom_camera (4x4) at an image stamp, None when there is none."""


class FrameIntake:
    """Keyframe selection and tracking hand-over for one live camera (not thread-safe: one
    camera callback at a time)."""

    def __init__(self, worker: SceneWorker, keyframes: KeyframeConfig, working_max_side: int,
                 track_rate_hz: float, features_max_side: int | None = None) -> None:
        """`features_max_side`: keyframes also go to the worker at up to this size, for the
        feature chain (it needs more pixels than the engine); None: only at the working size."""
        self._worker = worker
        self._keyframe_config = keyframes
        self._max_side = working_max_side
        self._features_max_side = features_max_side
        self._track_period_ns = 1e9 / track_rate_hz if track_rate_hz > 0 else None
        self.keyframes = self._new_keyframe_buffer()
        self._generation = worker.generation
        self._last_track_stamp_ns: int | None = None
        """Stamp of the last frame handed over for tracking."""
        self.render_camera: tuple[np.ndarray, int, int] | None = None
        """K and (width, height) of the newest frame at the working size: rendered views use them."""

    def take(self, index: int, rgb_HW3: np.ndarray, K_33: np.ndarray, stamp_ns: int,
             odometry_prior: OdometryAt, odometry_pose: OdometryAt) -> None:
        """Frame number `index` with its intrinsics; `odometry_prior` is asked only for a new
        keyframe, `odometry_pose` only for a frame handed over for tracking."""
        if self._generation != self._worker.generation:  # the scene was reset: start selecting anew
            self.keyframes, self._generation = self._new_keyframe_buffer(), self._worker.generation
        # The engine works at the working resolution; so does the keyframe check (blur that
        # does not show there does not matter), which keeps the callback cheap.
        small_HW3 = downscale(rgb_HW3, self._max_side)
        small_K_33 = rescale_intrinsics(K_33, rgb_HW3.shape[:2], small_HW3.shape[:2])
        if self.keyframes.offer(index, stamp_ns, small_HW3, small_K_33).accepted:
            features_HW3 = None if self._features_max_side is None else downscale(rgb_HW3, self._features_max_side)
            self._worker.offer_keyframe(QueuedKeyframe(small_HW3, small_K_33, stamp_ns, f"frame_{index:06d}",
                                                       self._generation, odometry_prior(stamp_ns), features_HW3))
        if self._tracking_due(stamp_ns):
            # Only a hand-over here: the worker registers it (the callback stays cheap).
            self._worker.request_tracking(TrackRequest(small_HW3, small_K_33, stamp_ns, odometry_pose(stamp_ns)))
            self._last_track_stamp_ns = stamp_ns
        self.render_camera = (small_K_33, small_HW3.shape[1], small_HW3.shape[0])

    def _tracking_due(self, stamp_ns: int) -> bool:
        """At most track_rate_hz by image stamps (a stamp that jumps back, a looped bag, counts)."""
        if self._track_period_ns is None:
            return False
        last = self._last_track_stamp_ns
        return last is None or abs(stamp_ns - last) >= self._track_period_ns

    def _new_keyframe_buffer(self) -> KeyframeBuffer:
        return KeyframeBuffer(self._keyframe_config, max_side=self._max_side, viewpoint_cue=CornerTracking())
