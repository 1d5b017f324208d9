"""Coloured point clouds <-> sensor_msgs/PointCloud2 with fields x, y, z, rgb (as RViz reads them).

The layout is PCL's PointXYZRGB without padding: x, y, z float32 at offsets 0, 4, 8 and `rgb`
at offset 12, a float32 whose bits are the uint32 0x00RRGGBB (RViz's "RGB8" colour transformer
and pcl_conversions read it that way). One unorganised row (height 1), host byte order,
non-finite points dropped so `is_dense` holds.
"""

import array
import sys

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import PointCloud2, PointField

POINT_FIELDS = (("x", 0), ("y", 4), ("z", 8), ("rgb", 12))
POINT_STEP = 16
_HOST_IS_BIGENDIAN = sys.byteorder == "big"


def pack_rgb(rgb_P3: np.ndarray) -> np.ndarray:
    """(P, 3) uint8 RGB -> (P,) float32 whose bits are 0x00RRGGBB."""
    rgb_P3 = np.asarray(rgb_P3)
    if rgb_P3.dtype != np.uint8 or rgb_P3.ndim != 2 or rgb_P3.shape[1] != 3:
        raise ValueError(f"colours must be (P, 3) uint8, got {rgb_P3.shape} {rgb_P3.dtype}")
    packed_P = (rgb_P3[:, 0].astype(np.uint32) << 16) | (rgb_P3[:, 1].astype(np.uint32) << 8) \
        | rgb_P3[:, 2].astype(np.uint32)
    return packed_P.view(np.float32)


def unpack_rgb(packed_P: np.ndarray) -> np.ndarray:
    """(P,) float32 packed as by `pack_rgb` -> (P, 3) uint8 RGB."""
    bits_P = np.ascontiguousarray(packed_P, dtype=np.float32).view(np.uint32)
    return np.stack([(bits_P >> 16) & 0xFF, (bits_P >> 8) & 0xFF, bits_P & 0xFF], axis=-1).astype(np.uint8)


def _dtype() -> np.dtype:
    order = ">" if _HOST_IS_BIGENDIAN else "<"
    return np.dtype({"names": [name for name, _ in POINT_FIELDS], "formats": [order + "f4"] * 4,
                     "offsets": [offset for _, offset in POINT_FIELDS], "itemsize": POINT_STEP})


def point_cloud_msg(xyz_P3: np.ndarray, rgb_P3: np.ndarray, frame_id: str, stamp: Time) -> PointCloud2:
    """(P, 3) float points + (P, 3) uint8 colours -> PointCloud2 (non-finite points dropped)."""
    xyz_P3 = np.asarray(xyz_P3, dtype=np.float32).reshape(-1, 3)
    rgb_P3 = np.asarray(rgb_P3).reshape(-1, 3)
    if len(xyz_P3) != len(rgb_P3):
        raise ValueError(f"{len(xyz_P3)} points but {len(rgb_P3)} colours")
    finite_P = np.isfinite(xyz_P3).all(axis=1)
    points = np.zeros(int(finite_P.sum()), dtype=_dtype())
    points["x"], points["y"], points["z"] = xyz_P3[finite_P].T
    points["rgb"] = pack_rgb(rgb_P3[finite_P].astype(np.uint8))
    msg = PointCloud2(height=1, width=len(points), is_bigendian=_HOST_IS_BIGENDIAN,
                      point_step=POINT_STEP, row_step=POINT_STEP * len(points), is_dense=True,
                      fields=[PointField(name=name, offset=offset, datatype=PointField.FLOAT32, count=1)
                              for name, offset in POINT_FIELDS])
    msg.header.frame_id = frame_id
    msg.header.stamp = stamp
    # array('B') is what rclpy stores uint8[] as: handing it one skips a per-byte conversion.
    data = array.array("B")
    data.frombytes(points.tobytes())
    msg.data = data
    return msg


def point_cloud_from_msg(msg: PointCloud2) -> tuple[np.ndarray, np.ndarray]:
    """PointCloud2 with float32 x, y, z, rgb fields (any offsets) -> ((P, 3) float32, (P, 3) uint8)."""
    offsets = {f.name: f.offset for f in msg.fields if f.datatype == PointField.FLOAT32}
    missing = [name for name, _ in POINT_FIELDS if name not in offsets]
    if missing:
        raise ValueError(f"PointCloud2 lacks float32 field(s) {missing}; it has {[f.name for f in msg.fields]}")
    order = ">" if msg.is_bigendian else "<"
    dtype = np.dtype({"names": list(offsets), "formats": [order + "f4"] * len(offsets),
                      "offsets": list(offsets.values()), "itemsize": msg.point_step})
    points = np.frombuffer(bytes(msg.data), dtype=dtype, count=msg.width * msg.height)
    xyz_P3 = np.stack([points["x"], points["y"], points["z"]], axis=-1).astype(np.float32)
    return xyz_P3, unpack_rgb(points["rgb"].astype(np.float32))
