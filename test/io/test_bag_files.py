"""nvs_ros.io.bag_files / bag_salvage: ROS 1 bags, and damaged bags read as far as they are intact."""

import logging

import numpy as np
import pytest
from ros1_bag import write_ros1_bag

from nvs_ros.io.bag_files import is_bag, open_reader
from nvs_ros.io.bag_writer import write_bag
from nvs_ros.io.bags import read_bag
from nvs_ros.io.bundled_scene import render_bundled_scene
from nvs_ros.io.errors import BagError

VIEWS = 12
MESSAGES = 3 * VIEWS  # ground truth, camera_info and image per view


@pytest.fixture(scope="module")
def scene():
    return render_bundled_scene("room", "ring", num_views=VIEWS, size=32)


def storage_file(bag):
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def test_a_ros1_bag_reads_as_the_ros2_bag_of_the_same_scene(scene, tmp_path):
    ros1_path = write_ros1_bag(scene, tmp_path / "room.bag")
    assert is_bag(ros1_path)
    ros1, ros2 = read_bag(ros1_path), read_bag(write_bag(scene, tmp_path / "room"))
    assert ros1.loss is None and ros1.skipped == 0
    assert (ros1.image_topic, ros1.camera_info_topic) == (ros2.image_topic, ros2.camera_info_topic)
    assert ros1.image_set.names == ros2.image_set.names
    np.testing.assert_array_equal(ros1.stamps_ns, ros2.stamps_ns)
    np.testing.assert_array_equal(ros1.image_set.images_NHW3, ros2.image_set.images_NHW3)
    np.testing.assert_array_equal(ros1.image_set.K_N33, ros2.image_set.K_N33)
    np.testing.assert_allclose(ros1.image_set.c2w_N44, ros2.image_set.c2w_N44, atol=1e-12)


@pytest.mark.parametrize("compression", ["none", "lz4", "bz2"])
def test_a_ros1_bag_cut_at_90_percent_reads_every_message_of_its_whole_chunks(scene, tmp_path, caplog, compression):
    # Chunks of about three views each, so that the cut leaves whole chunks before the one it cuts.
    path = write_ros1_bag(scene, tmp_path / "room.bag", compression=compression, chunk_bytes=8192)
    data = path.read_bytes()
    cut = len(data) * 9 // 10  # the index, at the end, is lost, and the last chunk cut
    path.write_bytes(data[:cut])
    with caplog.at_level(logging.WARNING, logger="nvs_ros.io.bags"):
        frames = read_bag(path)
    read = frames.indices.tolist()
    assert read == list(range(len(read))) and len(read) >= VIEWS // 2
    if compression == "none":  # the cut chunk's whole messages too: every image wholly before the cut
        assert read == [i for i, rgb in enumerate(scene.images_NHW3) if data.find(rgb.tobytes()) + rgb.nbytes <= cut]
    np.testing.assert_array_equal(frames.image_set.images_NHW3, scene.images_NHW3[read])
    np.testing.assert_array_equal(frames.image_set.K_N33, scene.K_N33[read])
    np.testing.assert_allclose(frames.image_set.c2w_N44, scene.c2w_N44[read], atol=1e-12)
    loss = frames.loss
    assert loss is not None and "room.bag is cut at byte" in loss.problem and "no index" in loss.problem
    assert 3 * len(read) <= loss.messages_read < MESSAGES and loss.messages_lost is None
    warnings = [r.getMessage() for r in caplog.records if "damaged bag" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0] and str(loss) in warnings[0]
    assert path.read_bytes() == data[:cut]  # the user's file is left as it was


def test_a_ros1_bag_with_no_whole_message_is_one_clear_error(scene, tmp_path):
    path = write_ros1_bag(scene, tmp_path / "room.bag")
    path.write_bytes(path.read_bytes()[:4096 + 200])  # the bag header record (4 KiB), a piece of the chunk
    with pytest.raises(BagError, match="cannot open the ROS 1 bag, and no message in it is whole"):
        read_bag(path)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("metadata_yaml", [True, False], ids=["with_metadata", "without_metadata"])
def test_a_bag_cut_at_90_percent_reads_every_message_before_the_cut(scene, tmp_path, caplog, storage,
                                                                     metadata_yaml):
    bag = write_bag(scene, tmp_path / "bag", storage=storage)
    file = storage_file(bag)
    data = file.read_bytes()
    cut = len(data) * 9 // 10
    # The images whose bytes lie wholly before the cut (each is stored in one piece, in order).
    before = [i for i, rgb in enumerate(scene.images_NHW3) if data.find(rgb.tobytes()) + rgb.nbytes <= cut]
    assert before == list(range(len(before))) and len(before) >= VIEWS * 3 // 4
    file.write_bytes(data[:cut])
    if not metadata_yaml:  # a recorder that lost power writes metadata.yaml last
        (bag / "metadata.yaml").unlink()
    for path in (bag, file):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="nvs_ros.io.bags"):
            frames = read_bag(path)
        assert frames.indices.tolist() == before
        np.testing.assert_array_equal(frames.image_set.images_NHW3, scene.images_NHW3[before])
        np.testing.assert_array_equal(frames.image_set.K_N33, scene.K_N33[before])
        np.testing.assert_allclose(frames.image_set.c2w_N44, scene.c2w_N44[before], atol=1e-12)
        loss = frames.loss
        assert loss is not None and 3 * len(before) <= loss.messages_read < MESSAGES
        if metadata_yaml and path == bag:  # metadata.yaml's count tells how many were lost
            assert loss.messages_lost == MESSAGES - loss.messages_read
        else:
            assert loss.messages_lost is None
        warnings = [r.getMessage() for r in caplog.records if "damaged bag" in r.getMessage()]
        assert len(warnings) == 1 and "\n" not in warnings[0] and str(loss) in warnings[0]
    assert file.read_bytes() == data[:cut]  # the user's file is left as it was


def test_an_mcap_without_its_summary_reads_every_message(scene, tmp_path):
    bag = write_bag(scene, tmp_path / "bag")
    file = storage_file(bag)
    data = file.read_bytes()
    summary_start = int.from_bytes(data[-28:-20], "little")  # in the footer, before the end magic
    file.write_bytes(data[:summary_start])
    frames = read_bag(bag)
    np.testing.assert_array_equal(frames.image_set.images_NHW3, scene.images_NHW3)
    np.testing.assert_allclose(frames.image_set.c2w_N44, scene.c2w_N44, atol=1e-12)
    assert "no footer" in frames.loss.problem
    assert (frames.loss.messages_read, frames.loss.messages_lost) == (MESSAGES, 0)
    assert read_bag(file).loss.messages_lost is None  # the file alone keeps no count


def test_a_db3_without_metadata_yaml_reads_as_reindexed(scene, tmp_path):
    bag = write_bag(scene, tmp_path / "bag", storage="sqlite3")
    (bag / "metadata.yaml").unlink()
    assert is_bag(bag)
    frames = read_bag(bag)
    np.testing.assert_array_equal(frames.image_set.images_NHW3, scene.images_NHW3)
    np.testing.assert_allclose(frames.image_set.c2w_N44, scene.c2w_N44, atol=1e-12)
    assert frames.image_set.capture == "360"  # from the copy of metadata.yaml inside the .db3
    assert "no metadata.yaml" in frames.loss.problem
    assert (frames.loss.messages_read, frames.loss.messages_lost) == (MESSAGES, 0)
    assert sorted(p.name for p in bag.iterdir()) == ["bag.db3"]  # nothing written into the bag


@pytest.mark.parametrize("suffix", [".mcap", ".db3"])
def test_a_file_with_nothing_readable_is_one_clear_error(tmp_path, suffix):
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(BagError, match="cannot open the bag"):
        open_reader(path)
