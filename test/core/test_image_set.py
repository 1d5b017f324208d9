"""core.image_set: the plain background read off the images' borders."""

import numpy as np

from nvs_ros.core.image_set import plain_border_level


def _object_on(level: int, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Four 32 px views of a textured square on a background of grey `level` (+- noise)."""
    rng = np.random.default_rng(seed)
    images = np.full((4, 32, 32, 3), float(level)) + rng.normal(0.0, noise, (4, 32, 32, 3))
    images[:, 8:24, 8:24] = rng.integers(0, 256, (4, 16, 16, 3))
    return images.clip(0, 255).astype(np.uint8)


def test_a_plain_border_gives_its_grey_level() -> None:
    assert plain_border_level(_object_on(0)) == 0.0
    assert plain_border_level(_object_on(255)) == 1.0
    assert abs(plain_border_level(_object_on(128, noise=5.0)) - 128 / 255) < 0.02


def test_a_textured_border_gives_none() -> None:
    images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    assert plain_border_level(images) is None


def test_an_object_reaching_part_of_the_border_still_leaves_it_plain() -> None:
    images = _object_on(0)
    images[:, :12, :2] = 200  # the object reaches the top left edge: 11% of the border pixels
    assert plain_border_level(images) == 0.0
    images[:, :, -2:] = 200  # and the whole right edge: 39% of them
    assert plain_border_level(images) is None
