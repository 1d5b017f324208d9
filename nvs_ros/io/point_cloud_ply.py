"""Coloured point clouds as binary PLY (open3d), written atomically."""

import os
import tempfile
from pathlib import Path

import numpy as np

from nvs_ros.io.errors import NvsIOError


def write_point_cloud_ply(path: Path, points_P3: np.ndarray, colors_P3: np.ndarray) -> None:
    """Write points (float, world units) with RGB colours in [0, 1] to a binary PLY file."""
    import open3d as o3d

    points_P3 = np.asarray(points_P3, dtype=np.float64).reshape(-1, 3)
    colors_P3 = np.clip(np.asarray(colors_P3, dtype=np.float64).reshape(-1, 3), 0.0, 1.0)
    if len(points_P3) != len(colors_P3):
        raise ValueError(f"{len(points_P3)} points but {len(colors_P3)} colours")
    if not np.isfinite(points_P3).all():
        raise ValueError("point cloud holds non-finite coordinates")
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points_P3))
    cloud.colors = o3d.utility.Vector3dVector(colors_P3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".ply")
    os.close(fd)
    try:
        if not o3d.io.write_point_cloud(tmp, cloud, write_ascii=False):
            raise NvsIOError(f"open3d could not write {path}")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_point_cloud_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(points (P, 3), colours (P, 3) in [0, 1]) of a PLY file."""
    import open3d as o3d

    if not Path(path).is_file():
        raise NvsIOError(f"no point cloud at {path}")
    cloud = o3d.io.read_point_cloud(str(path))
    return np.asarray(cloud.points), np.asarray(cloud.colors)
