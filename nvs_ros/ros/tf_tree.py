"""A small TF buffer (tf2_ros is not on PyPI): enough to find the camera in an odometry tree.

It keeps, per child frame, its parent and the last few transforms on /tf (with their stamps)
or the latest one on /tf_static, and composes a chain child -> ... -> ancestor at a stamp
(nearest sample per link, no interpolation: keyframes are sparse, a few ms do not matter).
Transforms whose parent is an ignored frame (nvs_node's own `map`) are not taken, so the
node never finds its own output when it looks for odometry.
"""

from collections import deque
from collections.abc import Collection

import numpy as np
from tf2_msgs.msg import TFMessage

from nvs_ros.ros.transforms import stamp_to_ns, transform_to_matrix

HISTORY = 50
"""Samples kept per dynamic link (odometry at 50 Hz: one second)."""
MAX_DEPTH = 32
"""Longest chain followed (guards against a loop in a malformed tree)."""


class TfTree:
    """Latest transforms per child frame, fed with TFMessages (not thread-safe)."""

    def __init__(self, ignored_parents: Collection[str] = ()) -> None:
        self._ignored = set(ignored_parents)
        self._parent: dict[str, str] = {}
        self._samples: dict[str, deque[tuple[int, np.ndarray]]] = {}
        self._static: set[str] = set()

    def add(self, msg: TFMessage, static: bool = False) -> None:
        """Take the transforms of one /tf (or /tf_static) message; malformed ones are skipped."""
        for transform in msg.transforms:
            parent, child = transform.header.frame_id.lstrip("/"), transform.child_frame_id.lstrip("/")
            if not parent or not child or parent in self._ignored:
                continue
            try:
                T_parent_child_44 = transform_to_matrix(transform)
            except ValueError:
                continue
            if self._parent.get(child) != parent:  # re-parented: old samples describe another link
                self._samples[child] = deque(maxlen=1 if static else HISTORY)
            self._parent[child] = parent
            if static:
                self._static.add(child)
                self._samples[child] = deque([(0, T_parent_child_44)], maxlen=1)
            else:
                self._static.discard(child)
                self._samples[child].append((stamp_to_ns(transform.header.stamp), T_parent_child_44))

    def ancestors(self, frame: str) -> list[str]:
        """Parents of `frame`, nearest first."""
        chain: list[str] = []
        while frame in self._parent and len(chain) < MAX_DEPTH:
            frame = self._parent[frame]
            chain.append(frame)
        return chain

    def connected(self, ancestor: str, frame: str) -> bool:
        """True when `ancestor` is above `frame` in the tree."""
        return ancestor in self.ancestors(frame)

    def lookup(self, ancestor: str, frame: str, stamp_ns: int | None = None,
               max_offset_ns: int | None = None) -> np.ndarray:
        """T_ancestor_frame (4x4) at `stamp_ns` (None: latest); LookupError when not connected,
        or when a dynamic link has no sample within `max_offset_ns` of the stamp (not yet there)."""
        if not self.connected(ancestor, frame):
            raise LookupError(f"no TF chain {ancestor} -> ... -> {frame} "
                              f"(ancestors of {frame}: {self.ancestors(frame)})")
        T_44 = np.eye(4)
        while frame != ancestor:
            T_44 = self._sample(frame, stamp_ns, max_offset_ns) @ T_44
            frame = self._parent[frame]
        return T_44

    def _sample(self, child: str, stamp_ns: int | None, max_offset_ns: int | None) -> np.ndarray:
        samples = self._samples[child]
        if stamp_ns is None or child in self._static:
            return samples[-1][1]
        sample_ns, T_44 = min(samples, key=lambda sample: abs(sample[0] - stamp_ns))
        if max_offset_ns is not None and abs(sample_ns - stamp_ns) > max_offset_ns:
            raise LookupError(f"no TF {self._parent[child]} -> {child} within {max_offset_ns / 1e9:.3f} s "
                              f"of {stamp_ns / 1e9:.3f} s (nearest at {sample_ns / 1e9:.3f} s)")
        return T_44


def map_to_odom(T_map_camera_44: np.ndarray, T_odom_camera_44: np.ndarray) -> np.ndarray:
    """T_map_odom such that map -> odom -> ... -> camera puts the camera at T_map_camera."""
    return np.asarray(T_map_camera_44, dtype=np.float64) @ np.linalg.inv(T_odom_camera_44)
