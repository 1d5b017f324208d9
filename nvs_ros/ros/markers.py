"""Camera frusta of the keyframes as visualization_msgs/MarkerArray (one LINE_LIST per keyframe).

The array starts with a DELETEALL marker, so keyframes that were evicted or reset disappear
in RViz when the next array arrives. The newest keyframe is drawn in another colour. Frustum
depth is a fraction of the camera trajectory's extent: monocular poses have no metric scale,
so a fixed depth in metres would be invisible or swallow the scene.
"""

import numpy as np
import torch
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from nvs_ros.core.products import frustum_lines

NAMESPACE = "keyframes"
KEYFRAME_COLOR = ColorRGBA(r=0.2, g=0.6, b=1.0, a=1.0)
LATEST_COLOR = ColorRGBA(r=1.0, g=0.4, b=0.1, a=1.0)
MIN_DEPTH = 1e-3


def frustum_depth(c2w_N44: np.ndarray, fraction: float) -> float:
    """`fraction` of the largest distance of a camera centre from their centroid (0.1 when
    there is only one camera, or all sit in one place)."""
    centres_N3 = np.asarray(c2w_N44)[:, :3, 3]
    extent = float(np.linalg.norm(centres_N3 - centres_N3.mean(axis=0), axis=1).max()) if len(centres_N3) else 0.0
    return max(MIN_DEPTH, fraction * extent) if extent > 0 else 0.1


def frustum_markers(K_N33: np.ndarray, c2w_N44: np.ndarray, sizes_N2: np.ndarray, frame_id: str,
                    stamp: Time, depth: float, line_width: float | None = None) -> MarkerArray:
    """DELETEALL, then one LINE_LIST marker (8 segments, 16 points) per camera with a finite pose.

    sizes_N2: (width, height) in pixels of the images K_N33 belongs to.
    """
    clear = Marker(action=Marker.DELETEALL, ns=NAMESPACE)
    clear.header.frame_id = frame_id
    markers = [clear]
    last = len(c2w_N44) - 1
    for i, (K_33, c2w_44, (width, height)) in enumerate(zip(K_N33, c2w_N44, sizes_N2)):
        if not np.isfinite(c2w_44).all():
            continue
        lines_823 = frustum_lines(torch.as_tensor(K_33, dtype=torch.float64),
                                  torch.as_tensor(c2w_44, dtype=torch.float64),
                                  int(width), int(height), depth).numpy()
        marker = Marker(ns=NAMESPACE, id=i, type=Marker.LINE_LIST, action=Marker.ADD,
                        color=LATEST_COLOR if i == last else KEYFRAME_COLOR,
                        points=[Point(x=float(x), y=float(y), z=float(z)) for x, y, z in lines_823.reshape(-1, 3)])
        marker.header.frame_id = frame_id
        marker.header.stamp = stamp
        marker.pose.orientation.w = 1.0
        marker.scale.x = line_width if line_width is not None else depth / 20.0
        markers.append(marker)
    return MarkerArray(markers=markers)
