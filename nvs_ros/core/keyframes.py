"""Keyframe selection: keep sharp frames that add viewpoint or content, in a bounded buffer.

A frame is accepted when
- it is sharp: its Laplacian energy is not far below that of recent frames (motion blur and
  defocus drop it; the threshold is relative, so texture-poor scenes are not all rejected), and
- it is new: its small normalised thumbnail differs from every keyframe's (1 - NCC above a
  threshold), or, when poses are known, its camera moved or turned enough from every keyframe;
  or, without poses, it adds viewpoint: of the corners of the keyframe it looks most like, at
  least `min_untracked` do not track into it (a viewpoint cue given by the caller, e.g.
  baselines.feature_tracking: optical flow, checked forwards and backwards); or it comes
  `max_frames_between` frames after the last keyframe and the camera is not standing still
  (thumbnail change is content change: slow forward motion barely moves it).
  The thumbnail alone misses turns around an object on a plain background (it looks alike from
  every side); corners that stop tracking see them, while image motion that tracks (a pan, a
  video's next frame) is no new viewpoint. Measured effect: bench/README.md, "keyframes.py".
When the buffer is full, the most redundant keyframe (the one closest to its nearest
neighbour) is evicted, so the buffer keeps covering the whole trajectory.

The check works on a downscaled gray copy and costs about a millisecond for a 640x480 frame.
"""

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Hashable, Protocol

import numpy as np

from nvs_ros.core.cameras import fit_size, scale_intrinsics
from nvs_ros.core.errors import InputError
from nvs_ros.core.image_set import resize_images


@dataclass(frozen=True)
class KeyframeConfig:
    capacity: int = 64
    """Keyframes kept at most."""
    thumbnail_side: int = 16
    """Longer side of the gray thumbnail compared between frames [px]."""
    min_novelty: float = 0.3
    """1 - NCC of thumbnails a frame needs against every keyframe to count as new."""
    max_frames_between: int = 30
    """A sharp frame this many frames after the last keyframe is taken unless nothing moved."""
    still_novelty: float = 0.02
    """Below this 1 - NCC to the last keyframe the camera counts as standing still."""
    min_untracked: float = 0.25
    """Without poses: share of the most similar keyframe's corners that do not track into a frame
    that makes it a new viewpoint (0: no viewpoint cue). Above what a 30 Hz video reaches
    between frames a few degrees apart (it would keep nearly every frame), below what a sparse
    ring's neighbours reach (22.5 degrees apart around an object)."""
    viewpoint_side: int = 128
    """Longer side of the gray image the viewpoint cue works on [px] (the node's working size)."""
    min_translation: float = 0.1
    """With poses: camera movement that counts as new, in pose units."""
    min_rotation_deg: float = 10.0
    """With poses: camera rotation that counts as new."""
    min_relative_sharpness: float = 0.5
    """A frame is blurred when its sharpness is below this fraction of the recent median."""
    sharpness_window: int = 30
    """Recent frames the median sharpness is taken over."""


@dataclass(frozen=True)
class KeyframeDecision:
    accepted: bool
    reason: str
    evicted: Hashable | None = None


class ViewpointCue(Protocol):
    """How much viewpoint a frame adds to a keyframe, from the images alone."""

    def features(self, gray_HW: np.ndarray) -> Any:
        """What the cue keeps of a keyframe (its gray image, uint8, and corners)."""

    def untracked(self, keyframe_features: Any, gray_HW: np.ndarray) -> float:
        """Share (0..1) of the keyframe's corners that do not track into `gray_HW`; NaN when the
        keyframe has too few corners to tell (a plain image)."""


@dataclass
class _Keyframe:
    key: Hashable
    thumbnail: np.ndarray
    c2w_44: np.ndarray | None
    viewpoint: Any = None
    """The viewpoint cue's features of this keyframe (None: no cue)."""


def gray_thumbnail(image_HW3: np.ndarray, side: int) -> np.ndarray:
    """Zero-mean, unit-norm gray thumbnail (area average), longer side ~`side` pixels."""
    # Average a 4x4 grid of pixels per thumbnail cell rather than every pixel: same
    # thumbnail up to noise, a fraction of the memory traffic on a 640x480 frame.
    stride = max(1, max(image_HW3.shape[:2]) // (4 * side))
    image_HW3 = image_HW3[::stride, ::stride]
    height, width = image_HW3.shape[:2]
    block = max(1, max(height, width) // side)
    rows, cols = height // block, width // block
    gray = image_HW3[: rows * block, : cols * block].astype(np.float32).mean(axis=2)
    thumb = gray.reshape(rows, block, cols, block).mean(axis=(1, 3))
    thumb -= thumb.mean()
    norm = np.linalg.norm(thumb)
    return thumb / norm if norm > 0 else thumb


def gray_image(image_HW3: np.ndarray, max_side: int) -> np.ndarray:
    """uint8 gray copy, block-averaged so that its longer side is at most ~max_side pixels."""
    block = max(1, -(-max(image_HW3.shape[:2]) // max_side))
    height, width = (image_HW3.shape[0] // block) * block, (image_HW3.shape[1] // block) * block
    gray = image_HW3[:height, :width].astype(np.float32).mean(axis=2)
    if block > 1:
        gray = gray.reshape(height // block, block, width // block, block).mean(axis=(1, 3))
    return np.round(gray).astype(np.uint8)


def sharpness(image_HW3: np.ndarray, max_side: int = 160) -> float:
    """Mean squared Laplacian of a gray copy downscaled to ~max_side (higher is sharper)."""
    height, width = image_HW3.shape[:2]
    step = max(1, max(height, width) // max_side)
    gray = image_HW3[::step, ::step].astype(np.float32).mean(axis=2)
    laplacian = (gray[1:-1, :-2] + gray[1:-1, 2:] + gray[:-2, 1:-1] + gray[2:, 1:-1]
                 - 4.0 * gray[1:-1, 1:-1])
    return float(np.mean(laplacian**2)) if laplacian.size else 0.0


def _rotation_deg(R_33: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R_33) - 1.0) / 2.0, -1.0, 1.0))))


class KeyframeSelector:
    """Decides, frame by frame, what enters the keyframe buffer (not thread-safe)."""

    def __init__(self, config: KeyframeConfig = KeyframeConfig(), viewpoint_cue: ViewpointCue | None = None):
        """`viewpoint_cue`: how a frame's viewpoint differs from a keyframe's (given by the
        caller: core does not depend on OpenCV); None: thumbnails and poses only."""
        if config.capacity < 2:
            raise InputError(f"keyframe capacity must be at least 2, got {config.capacity}")
        self.config = config
        self._cue = viewpoint_cue if config.min_untracked > 0 else None
        self._keyframes: list[_Keyframe] = []
        self._recent_sharpness: deque[float] = deque(maxlen=config.sharpness_window)
        self._frames_since_keyframe = 0

    @property
    def keys(self) -> list[Hashable]:
        return [keyframe.key for keyframe in self._keyframes]

    def __len__(self) -> int:
        return len(self._keyframes)

    def consider(self, key: Hashable, image_HW3: np.ndarray, c2w_44: np.ndarray | None = None) -> KeyframeDecision:
        """Accept or reject the frame `key`; `c2w_44` when a pose is already known (odometry)."""
        self._frames_since_keyframe += 1
        frame_sharpness = sharpness(image_HW3)
        self._recent_sharpness.append(frame_sharpness)
        if frame_sharpness < self.config.min_relative_sharpness * float(np.median(self._recent_sharpness)):
            return KeyframeDecision(False, "blurred")
        candidate = _Keyframe(key, gray_thumbnail(image_HW3, self.config.thumbnail_side), c2w_44)
        gray_HW = None if self._cue is None else gray_image(image_HW3, self.config.viewpoint_side)
        if all(self._is_new(candidate, keyframe) for keyframe in self._keyframes):
            reason = "new keyframe"
        elif self._adds_viewpoint(candidate, gray_HW):
            reason = "new viewpoint"
        elif self._overdue(candidate):
            reason = "overdue"
        else:
            return KeyframeDecision(False, "no new viewpoint or content")
        if gray_HW is not None:
            candidate.viewpoint = self._cue.features(gray_HW)
        self._keyframes.append(candidate)
        self._frames_since_keyframe = 0
        evicted = self._evict_most_redundant() if len(self._keyframes) > self.config.capacity else None
        return KeyframeDecision(True, reason, evicted)

    def _adds_viewpoint(self, frame: _Keyframe, gray_HW: np.ndarray | None) -> bool:
        """The viewpoint cue against the keyframe the frame looks most like (the one it tracks
        best into); not where both have poses (the poses' rule decides there)."""
        if gray_HW is None or not self._keyframes:
            return False
        nearest = min(self._keyframes, key=lambda keyframe: self._novelty(frame, keyframe))
        if nearest.viewpoint is None or (frame.c2w_44 is not None and nearest.c2w_44 is not None):
            return False
        untracked = self._cue.untracked(nearest.viewpoint, gray_HW)
        return bool(untracked >= self.config.min_untracked)  # NaN (a plain keyframe): no

    def _novelty(self, a: _Keyframe, b: _Keyframe) -> float:
        if a.thumbnail.shape != b.thumbnail.shape:
            return 1.0
        return 1.0 - float(np.sum(a.thumbnail * b.thumbnail))

    def _is_new(self, frame: _Keyframe, keyframe: _Keyframe) -> bool:
        if frame.c2w_44 is not None and keyframe.c2w_44 is not None:
            moved = np.linalg.norm(frame.c2w_44[:3, 3] - keyframe.c2w_44[:3, 3]) >= self.config.min_translation
            turned = _rotation_deg(frame.c2w_44[:3, :3].T @ keyframe.c2w_44[:3, :3]) >= self.config.min_rotation_deg
            return bool(moved or turned)
        return self._novelty(frame, keyframe) >= self.config.min_novelty

    def _overdue(self, frame: _Keyframe) -> bool:
        return (self._frames_since_keyframe >= self.config.max_frames_between
                and self._novelty(frame, self._keyframes[-1]) >= self.config.still_novelty)

    def _evict_most_redundant(self) -> Hashable:
        # The newest keyframe just proved new: it is never the one evicted.
        older = self._keyframes[:-1]
        redundancy = [min(self._novelty(kf, other) for other in self._keyframes if other is not kf)
                      for kf in older]
        evicted = older[int(np.argmin(redundancy))]
        self._keyframes.remove(evicted)
        return evicted.key


@dataclass(frozen=True)
class Keyframe:
    key: Hashable
    stamp_ns: int
    image_HW3: np.ndarray
    """RGB uint8 at the working resolution."""
    K_33: np.ndarray
    """Intrinsics at the working resolution."""
    c2w_44: np.ndarray | None = None
    """Pose from an external source (odometry), when there is one."""


class KeyframeBuffer:
    """The selected keyframes at the working resolution, bounded by the selector's eviction.

    `offer` runs in the camera callback; `snapshot` may be called from a worker thread.
    Only accepted frames are downscaled, so rejecting a frame costs just the selector's check.
    """

    def __init__(self, config: KeyframeConfig = KeyframeConfig(), max_side: int = 128,
                 viewpoint_cue: ViewpointCue | None = None):
        self.selector = KeyframeSelector(config, viewpoint_cue)
        self.max_side = max_side
        self._frames: dict[Hashable, Keyframe] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._frames)

    def offer(self, key: Hashable, stamp_ns: int, image_HW3: np.ndarray, K_33: np.ndarray,
              c2w_44: np.ndarray | None = None) -> KeyframeDecision:
        decision = self.selector.consider(key, image_HW3, c2w_44)
        if not decision.accepted:
            return decision
        height, width = image_HW3.shape[:2]
        small_h, small_w = fit_size(height, width, self.max_side)
        if (small_h, small_w) == (height, width):  # the node hands over frames at working size
            small_HW3, small_K_33 = image_HW3, np.asarray(K_33, dtype=np.float64)
        else:
            small_HW3 = resize_images(image_HW3[None], small_h, small_w)[0]
            small_K_33 = scale_intrinsics(K_33, small_w / width, small_h / height)
        with self._lock:
            self._frames[key] = Keyframe(key, stamp_ns, small_HW3, small_K_33, c2w_44)
            if decision.evicted is not None:
                del self._frames[decision.evicted]
        return decision

    def snapshot(self) -> list[Keyframe]:
        """The keyframes now, oldest first (a copy: safe to use while frames keep arriving)."""
        with self._lock:
            return sorted(self._frames.values(), key=lambda keyframe: keyframe.stamp_ns)
