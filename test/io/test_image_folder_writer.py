import numpy as np
import pytest

from nvs_ros.core.cameras import intrinsics_matrix
from nvs_ros.core.image_set import ImageSet
from nvs_ros.io.errors import DatasetError
from nvs_ros.io.image_folder import load_image_folder, write_image_folder


def random_set(count: int, K_33: np.ndarray) -> ImageSet:
    rng = np.random.default_rng(0)
    return ImageSet(names=[f"img_{i}.png" for i in range(count)],
                    images_NHW3=rng.integers(0, 256, (count, 12, 16, 3), dtype=np.uint8),
                    K_N33=np.tile(K_33, (count, 1, 1)))


def test_written_folder_reads_back_bit_exact_with_its_intrinsics(tmp_path):
    image_set = random_set(3, intrinsics_matrix(20.5, 21.25, 7.5, 5.5))
    loaded = load_image_folder(write_image_folder(tmp_path / "scene", image_set))
    assert loaded.names == image_set.names
    np.testing.assert_array_equal(loaded.images_NHW3, image_set.images_NHW3)
    np.testing.assert_array_equal(loaded.K_N33, image_set.K_N33)


def test_views_with_different_cameras_cannot_share_one_intrinsics_file(tmp_path):
    image_set = random_set(2, intrinsics_matrix(20, 20, 7.5, 5.5))
    image_set.K_N33[1, 0, 0] = 30
    with pytest.raises(DatasetError, match="different intrinsics"):
        write_image_folder(tmp_path, image_set)
