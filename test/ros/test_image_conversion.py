"""nvs_ros.ros.image_conversion: every encoding, padded rows, byte order, compressed, errors."""

import sys

import numpy as np
import pytest

pytest.importorskip("rclpy")
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from nvs_ros.ros.image_conversion import (  # noqa: E402
    ImageConversionError,
    compressed_msg_to_rgb8,
    image_msg_to_numpy,
    image_msg_to_rgb8,
    numpy_to_image_msg,
    rgb8_to_compressed_msg,
)

# encoding -> (dtype, channels)
ENCODINGS = {
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "8UC3": (np.uint8, 3),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1),
    "8UC1": (np.uint8, 1),
    "mono16": (np.uint16, 1),
    "16UC1": (np.uint16, 1),
    "32FC1": (np.float32, 1),
}
HOST_IS_BIGENDIAN = sys.byteorder == "big"


def random_image(encoding: str, height: int = 5, width: int = 7, seed: int = 0) -> np.ndarray:
    dtype, channels = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype == np.float32:
        return rng.uniform(0.1, 20.0, shape).astype(np.float32)  # depth in metres
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def raw_msg(encoding: str, pixels: np.ndarray, *, bigendian: bool, padding: int = 0) -> Image:
    """An Image built byte by byte, independently of numpy_to_image_msg."""
    height, width = pixels.shape[:2]
    order = ">" if bigendian else "<"
    rows = [pixels[y].astype(pixels.dtype.newbyteorder(order)).tobytes() for y in range(height)]
    step = len(rows[0]) + padding
    data = b"".join(row + b"\xee" * padding for row in rows)
    return Image(height=height, width=width, encoding=encoding, is_bigendian=int(bigendian), step=step, data=data)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_round_trip_every_encoding(encoding):
    pixels = random_image(encoding)
    header = Header(frame_id="camera_optical_frame")
    header.stamp.sec = 12
    msg = numpy_to_image_msg(pixels, encoding, header)
    dtype, channels = ENCODINGS[encoding]
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step == 7 * channels * np.dtype(dtype).itemsize
    assert len(msg.data) == msg.step * msg.height
    assert msg.is_bigendian == HOST_IS_BIGENDIAN
    assert msg.header.frame_id == "camera_optical_frame" and msg.header.stamp.sec == 12

    out = image_msg_to_numpy(msg)
    assert out.dtype == dtype and out.shape == pixels.shape
    np.testing.assert_array_equal(out, pixels)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("padding", [0, 3, 5])
def test_decode_handmade_bytes_with_padding_and_byte_order(encoding, bigendian, padding):
    pixels = random_image(encoding, seed=padding)
    msg = raw_msg(encoding, pixels, bigendian=bigendian, padding=padding)
    out = image_msg_to_numpy(msg)
    assert out.dtype == np.dtype(ENCODINGS[encoding][0])  # host order, whatever the message's
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, pixels)


def test_known_bytes_decode_to_known_values():
    # 16UC1 1000 = 0x03E8: big-endian bytes 03 E8, little-endian E8 03.
    big = Image(height=1, width=2, encoding="16UC1", is_bigendian=1, step=4, data=b"\x03\xe8\x00\x01")
    little = Image(height=1, width=2, encoding="16UC1", is_bigendian=0, step=4, data=b"\xe8\x03\x01\x00")
    assert image_msg_to_numpy(big).tolist() == [[1000, 1]]
    assert image_msg_to_numpy(little).tolist() == [[1000, 1]]
    # 32FC1 1.5 = 0x3FC00000.
    depth = Image(height=1, width=1, encoding="32FC1", is_bigendian=1, step=4, data=b"\x3f\xc0\x00\x00")
    assert image_msg_to_numpy(depth).tolist() == [[1.5]]
    # bgr8: bytes are B, G, R.
    bgr = Image(height=1, width=1, encoding="bgr8", step=3, data=b"\x01\x02\x03")
    assert image_msg_to_rgb8(bgr).tolist() == [[[3, 2, 1]]]


@pytest.mark.parametrize(
    ("encoding", "to_rgb"),
    [
        ("rgb8", lambda p: p),
        ("bgr8", lambda p: p[:, :, ::-1]),
        ("8UC3", lambda p: p[:, :, ::-1]),
        ("rgba8", lambda p: p[:, :, :3]),
        ("bgra8", lambda p: p[:, :, 2::-1]),
        ("mono8", lambda p: np.repeat(p[:, :, None], 3, axis=2)),
        ("8UC1", lambda p: np.repeat(p[:, :, None], 3, axis=2)),
    ],
)
def test_rgb8_for_the_engine(encoding, to_rgb):
    pixels = random_image(encoding)
    rgb = image_msg_to_rgb8(raw_msg(encoding, pixels, bigendian=False, padding=2))
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, to_rgb(pixels))


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1"])
def test_depth_and_16bit_are_not_colour(encoding):
    msg = numpy_to_image_msg(random_image(encoding), encoding)
    with pytest.raises(ImageConversionError, match=f"{encoding}.*not a colour image"):
        image_msg_to_rgb8(msg)


def test_result_does_not_alias_the_message():
    msg = numpy_to_image_msg(random_image("rgb8"), "rgb8")
    for out in (image_msg_to_numpy(msg), image_msg_to_rgb8(msg)):
        assert out.flags.writeable
        out[:] = 0
    assert max(msg.data) > 0, "writing to the returned array changed the message"


def test_decodes_rosbags_messages_too():
    """Bags read with rosbags (data as numpy) decode the same as rclpy messages."""
    from rclpy.serialization import serialize_message
    from rosbags.typesys import Stores, get_typestore

    pixels = random_image("16UC1")
    typestore = get_typestore(Stores.ROS2_KILTED)
    rosbags_msg = typestore.deserialize_cdr(
        serialize_message(numpy_to_image_msg(pixels, "16UC1")), "sensor_msgs/msg/Image"
    )
    np.testing.assert_array_equal(image_msg_to_numpy(rosbags_msg), pixels)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"width": 0, "step": 0, "data": b""}, "empty"),
        ({"height": 0, "data": b""}, "empty"),
        ({"data": b"\x00" * (21 * 5 - 1)}, "needs 105"),
        ({"step": 20}, "step 20 is smaller than one row"),
        ({"encoding": "yuv422"}, "unsupported image encoding 'yuv422'"),
        ({"encoding": ""}, "unsupported image encoding ''"),
    ],
)
def test_invalid_messages_are_named(fields, match):
    msg = numpy_to_image_msg(random_image("rgb8"), "rgb8")  # 7 x 5, step 21
    for name, value in fields.items():
        setattr(msg, name, value)
    with pytest.raises(ImageConversionError, match=match):
        image_msg_to_numpy(msg)
    with pytest.raises(ImageConversionError, match=match):
        image_msg_to_rgb8(msg)


@pytest.mark.parametrize(
    ("array", "encoding", "match"),
    [
        (np.zeros((4, 4), np.float64), "32FC1", "needs dtype float32, got float64"),
        (np.zeros((4, 4), np.int16), "16UC1", "needs dtype uint16"),
        (np.zeros((4, 4, 3), np.uint8), "rgba8", r"shape \(H, W, 4\)"),
        (np.zeros((4, 4, 3), np.uint8), "mono8", r"shape \(H, W\)"),
        (np.zeros((0, 4, 3), np.uint8), "rgb8", "empty"),
        (np.zeros((4, 4, 3), np.uint8), "rgb16", "unsupported image encoding"),
    ],
)
def test_numpy_to_image_msg_rejects_mismatches(array, encoding, match):
    with pytest.raises(ImageConversionError, match=match):
        numpy_to_image_msg(array, encoding)


def test_numpy_to_image_msg_accepts_other_byte_order_and_single_channel_axis():
    depth_HW = random_image("16UC1")
    swapped = numpy_to_image_msg(depth_HW.astype(depth_HW.dtype.newbyteorder("S")), "16UC1")
    assert swapped.is_bigendian == HOST_IS_BIGENDIAN
    np.testing.assert_array_equal(image_msg_to_numpy(swapped), depth_HW)
    gray_HW = random_image("mono8")
    np.testing.assert_array_equal(image_msg_to_numpy(numpy_to_image_msg(gray_HW[:, :, None], "mono8")), gray_HW)


def smooth_rgb(height: int = 48, width: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([4 * x, 5 * y, 2 * (x + y)], axis=-1).clip(0, 255).astype(np.uint8)


def test_compressed_png_is_exact():
    rgb = random_image("rgb8", 16, 24)  # noise: lossless must still be exact
    header = Header(frame_id="cam")
    msg = rgb8_to_compressed_msg(rgb, "png", header)
    assert msg.format == "rgb8; png compressed bgr8" and msg.header.frame_id == "cam"
    assert bytes(msg.data[:8]) == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(compressed_msg_to_rgb8(msg), rgb)


def test_compressed_jpeg_within_tolerance():
    rgb = smooth_rgb()
    msg = rgb8_to_compressed_msg(rgb, "jpeg")
    assert msg.format == "rgb8; jpeg compressed bgr8"
    assert bytes(msg.data[:2]) == b"\xff\xd8"
    out = compressed_msg_to_rgb8(msg)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    error = np.abs(out.astype(int) - rgb.astype(int))
    assert error.mean() < 2.0 and error.max() < 24, (error.mean(), error.max())
    # Channel order survives: a red image stays red, not blue.
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    assert tuple(compressed_msg_to_rgb8(rgb8_to_compressed_msg(red, "jpeg"))[8, 8].argsort()[-1:]) == (0,)


@pytest.mark.parametrize(
    ("data", "fmt", "match"),
    [
        (b"this is not an image at all", "jpeg", "cannot decode"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "jpeg", "cannot decode"),  # truncated JPEG
        (b"", "png", "no data"),
        (b"\x00" * 16, "16UC1; compressedDepth png", "compressed depth"),
    ],
)
def test_bad_compressed_images_raise(data, fmt, match):
    with pytest.raises(ImageConversionError, match=match):
        compressed_msg_to_rgb8(CompressedImage(format=fmt, data=data))


def test_rgb8_to_compressed_rejects_bad_input():
    with pytest.raises(ImageConversionError, match="compressed format"):
        rgb8_to_compressed_msg(smooth_rgb(), "webp")
    with pytest.raises(ImageConversionError, match="needs dtype uint8"):
        rgb8_to_compressed_msg(smooth_rgb().astype(np.float32), "png")
