"""Writing an ImageSet as a ROS 2 bag (rosbags, no ROS install): what a camera would have recorded.

Per view i, all stamped `start_ns + i / rate_hz` (header stamp = bag time), in this order:
- ground truth, when the set has it: tf2_msgs/msg/TFMessage on `gt_topic` (a topic of its own,
  so replaying the bag never puts a second parent on the camera frame in /tf), one transform
  `gt_frame -> frame_id` = the view's camera-to-world (frame_id is an optical frame: OpenCV axes),
- sensor_msgs/msg/CameraInfo: K, P = [K | 0], R = I, plumb_bob with zero distortion; with
  `camera`, its lens (distortion_model and D) and P = [K' | 0], K' the undistorted camera's
  intrinsics (what camera_calibration writes),
- sensor_msgs/msg/Image rgb8 on `image_topic`, or with `compressed` a JPEG CompressedImage on
  `image_topic + "/compressed"` (image_transport's layout).
ImageSet.capture goes into metadata.yaml's custom_data, so `read_bag` gives it back.
The bag appears at `out_path` only when complete (written beside it, then renamed).
"""

import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

from nvs_ros.core.image_set import ImageSet
from nvs_ros.core.rotations import quaternion_xyzw
from nvs_ros.io.bag_files import TYPESTORE
from nvs_ros.io.bags import (CAMERA_INFO_TYPE, COMPRESSED_IMAGE_TYPE, CUSTOM_DATA_CAPTURE,
                             DEFAULT_GT_TOPIC, IMAGE_TYPE, TF_TYPE)
from nvs_ros.io.camera_models import CameraModel, undistorter
from nvs_ros.io.errors import BagError
from nvs_ros.io.image_decoding import HOST_IS_BIGENDIAN, encode_compressed, native_pixels

Storage = Literal["mcap", "sqlite3"]
STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_CAMERA_INFO_TOPIC = "/camera/camera_info"
DEFAULT_FRAME_ID = "camera_optical_frame"
DEFAULT_GT_FRAME = "world"
DEFAULT_START_NS = 1_700_000_000_000_000_000
"""2023-11-14T22:13:20Z: a fixed start, so the same set gives the same bag."""

_T = TYPESTORE.types


def write_bag(image_set: ImageSet, out_path: str | Path, *, storage: Storage = "mcap",
              image_topic: str = DEFAULT_IMAGE_TOPIC,
              camera_info_topic: str = DEFAULT_CAMERA_INFO_TOPIC, compressed: bool = False,
              jpeg_quality: int = 95, rate_hz: float = 10.0, frame_id: str = DEFAULT_FRAME_ID,
              gt_topic: str = DEFAULT_GT_TOPIC, gt_frame: str = DEFAULT_GT_FRAME,
              start_ns: int = DEFAULT_START_NS, camera: CameraModel | None = None) -> Path:
    """Write `image_set` as a rosbag2 folder at `out_path` (which must not exist); returns it.

    storage: "mcap" (rosbag2's default since Iron) or "sqlite3" (.db3).
    rate_hz: frame rate of the stamps, views 1 / rate_hz seconds apart from start_ns.
    camera: the camera, lens included, that took the images as they are (distorted); its
        CameraInfo goes out instead of each view's pinhole K.
    """
    out_path = Path(out_path)
    if storage not in STORAGES:
        raise BagError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
    if not rate_hz > 0:
        raise BagError(f"rate_hz must be > 0, got {rate_hz}")
    if out_path.exists():
        raise BagError(f"{out_path} exists already; rosbag2 bags are written to a new folder")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_path.name}.", dir=out_path.parent) as work:
        partial = Path(work) / out_path.name  # rosbags names the storage file after the folder
        try:
            with Writer(partial, version=9, storage_plugin=STORAGES[storage]) as writer:
                writer.set_custom_data(CUSTOM_DATA_CAPTURE, image_set.capture)
                _write_views(writer, image_set, image_topic, camera_info_topic, compressed,
                             jpeg_quality, rate_hz, frame_id, gt_topic, gt_frame, start_ns, camera)
        except WriterError as err:
            raise BagError(f"cannot write bag {out_path}: {err}") from err
        shutil.move(partial, out_path)
    return out_path


def _write_views(writer: Writer, image_set: ImageSet, image_topic: str, camera_info_topic: str,
                 compressed: bool, jpeg_quality: int, rate_hz: float, frame_id: str,
                 gt_topic: str, gt_frame: str, start_ns: int, camera: CameraModel | None) -> None:
    image_type = COMPRESSED_IMAGE_TYPE if compressed else IMAGE_TYPE
    image_conn = writer.add_connection(image_topic + "/compressed" if compressed else image_topic,
                                       image_type, typestore=TYPESTORE)
    info_conn = writer.add_connection(camera_info_topic, CAMERA_INFO_TYPE, typestore=TYPESTORE)
    gt_conn = (writer.add_connection(gt_topic, TF_TYPE, typestore=TYPESTORE)
               if image_set.has_ground_truth else None)
    for i, rgb_HW3 in enumerate(image_set.images_NHW3):
        stamp_ns = start_ns + round(i * 1e9 / rate_hz)
        if gt_conn is not None:
            gt = tf_message(image_set.c2w_N44[i], stamp_ns, gt_frame, frame_id)
            writer.write(gt_conn, stamp_ns, serialize(gt))
        info = camera_info_message(camera or CameraModel.create(image_set.K_N33[i], image_set.width,
                                                                image_set.height), stamp_ns, frame_id)
        writer.write(info_conn, stamp_ns, serialize(info))
        image = (compressed_image_message(rgb_HW3, stamp_ns, frame_id, jpeg_quality) if compressed
                 else image_message(rgb_HW3, stamp_ns, frame_id))
        writer.write(image_conn, stamp_ns, serialize(image))


# --- rosbags messages -------------------------------------------------------------------

def serialize(msg: Any) -> bytes:
    """CDR bytes of a rosbags message, as rosbag2 stores them (rclpy can publish them as they are)."""
    return TYPESTORE.serialize_cdr(msg, msg.__msgtype__)


def header(stamp_ns: int, frame_id: str) -> Any:
    """std_msgs/Header for int nanoseconds."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return _T["std_msgs/msg/Header"](stamp=_T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                     frame_id=frame_id)


def image_message(rgb_HW3: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "rgb8") -> Any:
    """sensor_msgs/Image without row padding, host byte order; `rgb_HW3` in `encoding`'s layout."""
    native = native_pixels(rgb_HW3, encoding)
    return _T[IMAGE_TYPE](header=header(stamp_ns, frame_id), height=native.shape[0],
                          width=native.shape[1], encoding=encoding,
                          is_bigendian=int(HOST_IS_BIGENDIAN),
                          step=native.nbytes // native.shape[0],
                          data=native.reshape(-1).view(np.uint8))


def compressed_image_message(rgb_HW3: np.ndarray, stamp_ns: int, frame_id: str,
                             jpeg_quality: int = 95, fmt: str = "jpeg") -> Any:
    """sensor_msgs/CompressedImage (JPEG or PNG) of an RGB image; JPEG colour not subsampled (4:4:4)."""
    format_str, encoded = encode_compressed(rgb_HW3, fmt, jpeg_quality, chroma_subsampling=False)
    return _T[COMPRESSED_IMAGE_TYPE](header=header(stamp_ns, frame_id), format=format_str, data=encoded)


def camera_info_message(camera: CameraModel, stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/CameraInfo of `camera`, no binning or ROI: K, its lens (a pinhole camera as
    plumb_bob with D = 0, as drivers publish one), R = I, P = [K' | 0] with K' the intrinsics of
    the undistorted images (K for a pinhole camera)."""
    lens, D = (camera.lens, camera.D) if camera.distorted else ("plumb_bob", np.zeros(5))
    P_34 = np.hstack([undistorter(camera).K_33, np.zeros((3, 1))])
    roi = _T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                 do_rectify=False)
    return _T[CAMERA_INFO_TYPE](header=header(stamp_ns, frame_id), height=camera.height,
                                width=camera.width, distortion_model=lens, d=D,
                                k=camera.K_33.reshape(-1), r=np.eye(3).reshape(-1), p=P_34.reshape(-1),
                                binning_x=0, binning_y=0, roi=roi)


def tf_message(T_parent_child_44: np.ndarray, stamp_ns: int, parent: str, child: str) -> Any:
    """tf2_msgs/TFMessage with one transform parent -> child (maps child points into parent)."""
    T_44 = np.asarray(T_parent_child_44, dtype=np.float64)
    x, y, z, w = quaternion_xyzw(T_44[:3, :3])
    transform = _T["geometry_msgs/msg/Transform"](
        translation=_T["geometry_msgs/msg/Vector3"](x=T_44[0, 3], y=T_44[1, 3], z=T_44[2, 3]),
        rotation=_T["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w))
    stamped = _T["geometry_msgs/msg/TransformStamped"](header=header(stamp_ns, parent),
                                                       child_frame_id=child, transform=transform)
    return _T[TF_TYPE](transforms=[stamped])
