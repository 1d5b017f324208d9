"""nvs_ros.io.bags / bag_writer: dataset -> ROS 2 bag -> ImageSet, topic choice, bad bags."""

import logging
import subprocess
import sys

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from nvs_ros.core.cameras import intrinsics_matrix, scale_intrinsics
from nvs_ros.io.bag_writer import (DEFAULT_START_NS, camera_info_message, compressed_image_message,
                                   image_message, serialize, write_bag)
from nvs_ros.io.bag_files import TYPESTORE, is_bag
from nvs_ros.io.bags import CAMERA_INFO_TYPE, COMPRESSED_IMAGE_TYPE, IMAGE_TYPE, BagSource, read_bag
from nvs_ros.io.bundled_scene import render_bundled_scene
from nvs_ros.io.camera_models import CameraModel
from nvs_ros.io.errors import BagError
from nvs_ros.io.image_files import downscale

FRAME = "camera_optical_frame"


@pytest.fixture(scope="module")
def scene():
    return render_bundled_scene("room", "ring", num_views=6, size=32)


def bag_file(bag_dir, storage):
    return next(bag_dir.glob("*.mcap" if storage == "mcap" else "*.db3"))


def write_custom_bag(path, topics, storage=StoragePlugin.MCAP):
    """A bag with `topics`: {topic: (msgtype, [(stamp_ns, message or raw bytes), ...])}."""
    with Writer(path, version=9, storage_plugin=storage) as writer:
        for topic, (msgtype, messages) in topics.items():
            connection = writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            for stamp_ns, msg in messages:
                writer.write(connection, stamp_ns, msg if isinstance(msg, bytes) else serialize(msg))
    return path


def camera_topics(scene, prefix="/cam", views=range(3), compressed=False):
    info = [(i, camera_info_message(CameraModel.create(scene.K_N33[i], scene.width, scene.height), i, FRAME))
            for i in views]
    if compressed:
        images = [(i, compressed_image_message(scene.images_NHW3[i], i, FRAME)) for i in views]
        return {f"{prefix}/image_raw/compressed": (COMPRESSED_IMAGE_TYPE, images),
                f"{prefix}/camera_info": (CAMERA_INFO_TYPE, info)}
    images = [(i, image_message(scene.images_NHW3[i], i, FRAME)) for i in views]
    return {f"{prefix}/image_raw": (IMAGE_TYPE, images), f"{prefix}/camera_info": (CAMERA_INFO_TYPE, info)}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_raw_is_exact(scene, tmp_path, storage):
    bag = write_bag(scene, tmp_path / "bag", storage=storage, rate_hz=20.0)
    assert is_bag(bag) and is_bag(bag_file(bag, storage))
    frames = read_bag(bag)
    out = frames.image_set
    assert (frames.image_topic, frames.camera_info_topic) == ("/camera/image_raw", "/camera/camera_info")
    assert out.names == [f"frame_{i:06d}.png" for i in range(6)]
    np.testing.assert_array_equal(out.images_NHW3, scene.images_NHW3)
    np.testing.assert_array_equal(out.K_N33, scene.K_N33)
    np.testing.assert_allclose(out.c2w_N44, scene.c2w_N44, atol=1e-12)
    np.testing.assert_array_equal(frames.stamps_ns, DEFAULT_START_NS + np.arange(6) * 50_000_000)
    assert out.capture == scene.capture == "360" and frames.skipped == 0
    # The single storage file reads the same (rosbags opens .mcap / .db3 files directly).
    single = read_bag(bag_file(bag, storage))
    np.testing.assert_array_equal(single.image_set.images_NHW3, scene.images_NHW3)
    np.testing.assert_allclose(single.image_set.c2w_N44, scene.c2w_N44, atol=1e-12)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_compressed_is_close(scene, tmp_path, storage):
    bag = write_bag(scene, tmp_path / "bag", storage=storage, compressed=True)
    frames = read_bag(bag)
    assert frames.image_topic == "/camera/image_raw/compressed"
    assert frames.camera_info_topic == "/camera/camera_info"
    error = np.abs(frames.image_set.images_NHW3.astype(int) - scene.images_NHW3)
    assert error.mean() < 5.0, error.mean()  # JPEG q95 4:4:4 on 32 px noise textures: ~3.2
    np.testing.assert_array_equal(frames.image_set.K_N33, scene.K_N33)
    np.testing.assert_allclose(frames.image_set.c2w_N44, scene.c2w_N44, atol=1e-12)


def test_frame_selection_and_downscale(scene, tmp_path):
    bag = write_bag(scene, tmp_path / "bag")
    frames = read_bag(bag, max_frames=3, max_side=16)
    assert frames.image_set.names == ["frame_000000.png", "frame_000002.png", "frame_000005.png"]
    np.testing.assert_array_equal(frames.indices, [0, 2, 5])
    np.testing.assert_array_equal(frames.image_set.images_NHW3[1], downscale(scene.images_NHW3[2], 16))
    np.testing.assert_allclose(frames.image_set.K_N33, scale_intrinsics(scene.K_N33[[0, 2, 5]], 0.5, 0.5))
    np.testing.assert_allclose(frames.image_set.c2w_N44, scene.c2w_N44[[0, 2, 5]], atol=1e-12)
    nth = read_bag(bag, every_nth=2)
    assert nth.image_set.names == ["frame_000000.png", "frame_000002.png", "frame_000004.png"]
    names = read_bag(bag, every_nth=2, max_frames=2).image_set.names
    assert names == ["frame_000000.png", "frame_000004.png"]


def test_lazy_source_stops_after_the_last_index(scene, tmp_path):
    # Message 4 is garbage: a source asked for 0..2 never decodes it, so nothing is skipped.
    topics = camera_topics(scene, views=range(4))
    topics["/cam/image_raw"][1].append((4, b"\x00\x01\x00\x00garbage"))
    bag = write_custom_bag(tmp_path / "bag", topics)
    with BagSource(bag) as source:
        assert source.image_count() == 5
        frames = list(source.frames(indices=[0, 2]))
        assert [f.index for f in frames] == [0, 2] and source.skipped == 0
        np.testing.assert_array_equal(frames[1].image_HW3, scene.images_NHW3[2])
        assert frames[1].frame_id == FRAME and frames[1].stamp_ns == 2
        list(source.frames())
        assert source.skipped == 1


def test_image_transport_pair_reads_the_raw_topic(scene, tmp_path):
    topics = {**camera_topics(scene), **camera_topics(scene, compressed=True)}
    frames = read_bag(write_custom_bag(tmp_path / "bag", topics))
    assert frames.image_topic == "/cam/image_raw"
    np.testing.assert_array_equal(frames.image_set.images_NHW3, scene.images_NHW3[:3])


def test_two_cameras_need_a_choice(scene, tmp_path):
    topics = {**camera_topics(scene, "/left"), **camera_topics(scene, "/right", views=[3, 4])}
    bag = write_custom_bag(tmp_path / "bag", topics, StoragePlugin.SQLITE3)
    with pytest.raises(BagError, match=r"2 image topics.*/left/image_raw.*/right/image_raw"):
        read_bag(bag)
    frames = read_bag(bag, image_topic="/right/image_raw")
    assert frames.camera_info_topic == "/right/camera_info"
    np.testing.assert_array_equal(frames.image_set.images_NHW3, scene.images_NHW3[[3, 4]])
    with pytest.raises(BagError, match=r"/nope is not in the bag.*/left/image_raw"):
        read_bag(bag, image_topic="/nope")
    with pytest.raises(BagError, match=r"/left/camera_info has type sensor_msgs/msg/CameraInfo"):
        read_bag(bag, image_topic="/left/camera_info")


def test_missing_camera_info_needs_intrinsics(scene, tmp_path):
    topics = camera_topics(scene)
    del topics["/cam/camera_info"]
    topics["/other/camera_info"] = (CAMERA_INFO_TYPE, [])
    bag = write_custom_bag(tmp_path / "bag", topics)
    with pytest.raises(BagError, match=r"no camera_info topic in /cam.*/other/camera_info"):
        read_bag(bag)
    K_33 = intrinsics_matrix(40.0, 41.0, 15.5, 16.0)
    frames = read_bag(bag, K_33=K_33, max_side=16)
    assert frames.camera_info_topic is None
    for K_used in frames.image_set.K_N33:
        np.testing.assert_allclose(K_used, scale_intrinsics(K_33, 0.5, 0.5))
    # Naming a camera_info topic from another namespace works too.
    with pytest.raises(BagError, match="no usable camera_info on /other/camera_info"):
        read_bag(bag, camera_info_topic="/other/camera_info")


def test_camera_info_latest_before_each_image(scene, tmp_path):
    K_later = scene.K_N33[0] * np.array([[2, 1, 1], [1, 2, 1], [1, 1, 1]])
    uncalibrated = camera_info_message(CameraModel.create(scene.K_N33[0], 32, 32), 5, FRAME)
    uncalibrated.k[:] = 0  # K = 0: what a driver without a calibration file publishes
    infos = [(5, uncalibrated),
             (15, camera_info_message(CameraModel.create(scene.K_N33[0], 32, 32), 15, FRAME)),
             (25, camera_info_message(CameraModel.create(K_later, 64, 64), 25, FRAME))]  # for 64 px images: rescaled
    images = [(10 * i, image_message(scene.images_NHW3[i], 10 * i, FRAME)) for i in range(5)]
    bag = write_custom_bag(tmp_path / "bag", {"/cam/image": (IMAGE_TYPE, images),
                                              "/cam/camera_info": (CAMERA_INFO_TYPE, infos)})
    K_N33 = read_bag(bag).image_set.K_N33
    for i in range(3):  # images at 0 and 10 wait for the first calibrated info (15); 20 has it
        np.testing.assert_array_equal(K_N33[i], scene.K_N33[0])
    for i in (3, 4):
        np.testing.assert_allclose(K_N33[i], scale_intrinsics(K_later, 0.5, 0.5))


def test_empty_and_imageless_bags(scene, tmp_path):
    with pytest.raises(BagError, match="empty"):
        read_bag(write_custom_bag(tmp_path / "empty", {}))
    infos_only = {"/cam/camera_info": camera_topics(scene)["/cam/camera_info"]}
    with pytest.raises(BagError, match=r"no image topics.*/cam/camera_info \(sensor_msgs/msg/CameraInfo, 3"):
        read_bag(write_custom_bag(tmp_path / "infos", infos_only))
    no_images = {"/cam/image_raw": (IMAGE_TYPE, []), "/cam/camera_info": infos_only["/cam/camera_info"]}
    with pytest.raises(BagError, match="/cam/image_raw has no messages"):
        read_bag(write_custom_bag(tmp_path / "no_images", no_images, StoragePlugin.SQLITE3))


def test_not_a_bag(tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        read_bag(tmp_path / "missing.mcap")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BagError, match="not a ROS bag"):
        read_bag(tmp_path / "notes.txt")
    assert not is_bag(tmp_path) and not is_bag(tmp_path / "notes.txt")
    (tmp_path / "x.mcap").write_bytes(b"not an mcap at all")
    with pytest.raises(BagError, match="truncated or corrupt"):
        read_bag(tmp_path / "x.mcap")


def test_bad_image_messages_are_skipped_and_counted(scene, tmp_path, caplog):
    topics = camera_topics(scene, views=range(6))
    images = topics["/cam/image_raw"][1]
    short = image_message(scene.images_NHW3[1], 1, FRAME)
    short.data = short.data[:100]  # fewer bytes than step x height
    depth = image_message(np.ones((32, 32), np.float32), 3, FRAME, encoding="32FC1")
    images[1], images[3] = (1, short), (3, depth)
    images[4] = (4, b"\x00\x01\x00\x00garbage")  # not CDR at all
    images.append((6, image_message(np.zeros((16, 16, 3), np.uint8), 6, FRAME)))  # another size
    bag = write_custom_bag(tmp_path / "bag", topics)
    with caplog.at_level(logging.WARNING, logger="nvs_ros.io.bags"):
        frames = read_bag(bag)
    assert frames.skipped == 4
    assert frames.image_set.names == ["frame_000000.png", "frame_000002.png", "frame_000005.png"]
    np.testing.assert_array_equal(frames.image_set.images_NHW3, scene.images_NHW3[[0, 2, 5]])
    log = caplog.text
    assert "data has 100 bytes" in log and "32FC1" in log and "not a valid" in log and "16x16" in log


def test_all_images_bad_is_a_bag_error(tmp_path):
    garbage = [(i, compressed_image_message(np.zeros((8, 8, 3), np.uint8), i, FRAME)) for i in range(3)]
    for _, msg in garbage:
        msg.data = msg.data[:20]  # truncated JPEG
    info = [(0, camera_info_message(CameraModel.create(intrinsics_matrix(8, 8, 3.5, 3.5), 8, 8), 0, FRAME))]
    bag = write_custom_bag(tmp_path / "bag", {"/c/image_raw/compressed": (COMPRESSED_IMAGE_TYPE, garbage),
                                              "/c/camera_info": (CAMERA_INFO_TYPE, info)})
    with pytest.raises(BagError, match="none of the 3 selected image messages"):
        read_bag(bag)


def test_no_ground_truth_without_the_topic(scene, tmp_path):
    frames = read_bag(write_custom_bag(tmp_path / "bag", camera_topics(scene)))
    assert frames.image_set.c2w_N44 is None and frames.image_set.capture == "unknown"


def test_write_bag_refuses_an_existing_folder(scene, tmp_path):
    (tmp_path / "bag").mkdir()
    with pytest.raises(BagError, match="exists already"):
        write_bag(scene, tmp_path / "bag")
    with pytest.raises(BagError, match="storage must be one of"):
        write_bag(scene, tmp_path / "other", storage="rosbag1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]  # nothing half-written left


def test_io_bags_need_no_ros():
    code = ("import sys, nvs_ros.io.bags, nvs_ros.io.bag_writer; "
            "print(sorted(m for m in ('rclpy', 'sensor_msgs', 'std_msgs') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
