"""The belonging test before pose learning: views of another scene are set apart, a capture's own
views (however far apart its viewpoints) are not."""

import numpy as np
import pytest

from nvs_ros.core.appearance import most_alike, thumbnails, views_set_apart
from nvs_ros.io.datasets import load_image_set


@pytest.fixture(scope="module")
def ring():
    return load_image_set("bundled:object", max_side=32, views=8).images_NHW3


@pytest.fixture(scope="module")
def room():
    return load_image_set("bundled", max_side=32, views=8).images_NHW3


def test_thumbnails_average_each_block_of_pixels() -> None:
    images = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    images[0, :8, :8] = 255  # the top-left quarter white
    tiny = thumbnails(images, side=2).reshape(2, 2, 3)
    np.testing.assert_allclose(tiny[..., 0], [[1.0, 0.0], [0.0, 0.0]], atol=1e-6)


def test_a_ring_of_one_scene_keeps_every_view(ring, room) -> None:
    """Eight views 45 degrees apart all round the object, and the room's eight: nothing set apart."""
    assert not views_set_apart(ring).any()
    assert not views_set_apart(room).any()


def test_views_of_another_scene_are_set_apart(ring, room) -> None:
    images = np.concatenate([ring[:4], room[:1], ring[4:], room[4:5]])
    expected = np.zeros(len(images), dtype=bool)
    expected[[4, 9]] = True
    np.testing.assert_array_equal(views_set_apart(images), expected)


def test_a_camera_standing_still_does_not_cut_the_capture(ring) -> None:
    """Identical frames (zero distances) must neither vanish from the graph nor make the usual
    edge so short that the ring's real steps look like cuts."""
    images = np.concatenate([ring, np.repeat(ring[:1], 6, axis=0)])
    assert not views_set_apart(images).any()


def test_too_few_views_are_never_set_apart(ring, room) -> None:
    assert not views_set_apart(np.concatenate([ring[:2], room[:1]])).any()


def test_a_frame_is_most_alike_its_neighbours_on_the_ring(ring) -> None:
    """View 1 of the ring as a new frame, the seven others as the scene's: its two most alike
    are the views beside it (45 degrees either way; distances 0.058 to view 2, 0.068 to view 0,
    0.083 and more to the rest), nearest first."""
    known = [0, 2, 3, 4, 5, 6, 7]
    nearest = most_alike(thumbnails(ring[known]), thumbnails(ring[[1]]), count=2)
    assert [known[i] for i in nearest[0]] == [2, 0]
    assert most_alike(thumbnails(ring), thumbnails(ring), count=1)[:, 0].tolist() == list(range(8))
