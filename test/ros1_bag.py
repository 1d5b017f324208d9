"""A ROS 1 .bag of an ImageSet, written with rosbags as a ROS 1 camera driver would have recorded it:
sensor_msgs/Image rgb8 + CameraInfo (upper-case D K R P, a header with seq) and the ground truth
as tf2_msgs/TFMessage, at the stamps `write_bag` gives the same set."""

from pathlib import Path

import numpy as np
from rosbags.rosbag1 import Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from nvs_ros.core.image_set import ImageSet
from nvs_ros.core.rotations import quaternion_xyzw
from nvs_ros.io.bag_writer import DEFAULT_START_NS

ROS1 = get_typestore(Stores.ROS1_NOETIC)
ROS1.register(get_types_from_msg("geometry_msgs/TransformStamped[] transforms", "tf2_msgs/msg/TFMessage"))
T = ROS1.types


def _header(seq: int, stamp_ns: int, frame_id: str):
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return T["std_msgs/msg/Header"](seq=seq, stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                    frame_id=frame_id)


def write_ros1_bag(image_set: ImageSet, path: Path, rate_hz: float = 10.0,
                   frame_id: str = "camera_optical_frame", compression: str = "none",
                   chunk_bytes: int | None = None) -> Path:
    """`compression`: none, bz2 or lz4 chunks; `chunk_bytes`: the size after which a chunk is
    written (rosbags' default, 1 MiB, keeps a small set in one chunk)."""
    writer = Writer(path)
    if compression != "none":
        writer.set_compression(Writer.CompressionFormat[compression.upper()])
    if chunk_bytes is not None:
        writer.chunk_threshold = chunk_bytes
    with writer:
        image_conn = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ROS1)
        info_conn = writer.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ROS1)
        gt_conn = writer.add_connection("/ground_truth/tf", "tf2_msgs/msg/TFMessage", typestore=ROS1)
        for i, rgb_HW3 in enumerate(image_set.images_NHW3):
            stamp_ns = DEFAULT_START_NS + round(i * 1e9 / rate_hz)
            c2w_44 = image_set.c2w_N44[i]
            x, y, z, w = quaternion_xyzw(c2w_44[:3, :3])
            transform = T["geometry_msgs/msg/TransformStamped"](
                header=_header(i, stamp_ns, "world"), child_frame_id=frame_id,
                transform=T["geometry_msgs/msg/Transform"](
                    translation=T["geometry_msgs/msg/Vector3"](x=c2w_44[0, 3], y=c2w_44[1, 3], z=c2w_44[2, 3]),
                    rotation=T["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)))
            writer.write(gt_conn, stamp_ns, ROS1.serialize_ros1(
                T["tf2_msgs/msg/TFMessage"](transforms=[transform]), "tf2_msgs/msg/TFMessage"))
            K_33 = image_set.K_N33[i]
            P_34 = np.hstack([K_33, np.zeros((3, 1))])
            roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
            info = T["sensor_msgs/msg/CameraInfo"](
                header=_header(i, stamp_ns, frame_id), height=image_set.height, width=image_set.width,
                distortion_model="plumb_bob", D=np.zeros(5), K=K_33.ravel(), R=np.eye(3).ravel(),
                P=P_34.ravel(), binning_x=0, binning_y=0, roi=roi)
            writer.write(info_conn, stamp_ns, ROS1.serialize_ros1(info, "sensor_msgs/msg/CameraInfo"))
            image = T["sensor_msgs/msg/Image"](
                header=_header(i, stamp_ns, frame_id), height=image_set.height, width=image_set.width,
                encoding="rgb8", is_bigendian=0, step=3 * image_set.width,
                data=np.ascontiguousarray(rgb_HW3).ravel())
            writer.write(image_conn, stamp_ns, ROS1.serialize_ros1(image, "sensor_msgs/msg/Image"))
    return path
