"""The application layer turns user mistakes into the package's errors before any work starts:
too few images, initial poses that place too few training images, a poses file that names none
of the images or is not there."""

import numpy as np
import pytest

from nvs_ros.app.pose_start import initial_poses
from nvs_ros.app.reconstruction import check_inputs, run_reconstruction
from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.errors import InputError, NvsError
from nvs_ros.core.trainer_config import TrainerConfig
from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.errors import NvsIOError, OutputFolderError
from nvs_ros.io.output_folder import write_output_folder


@pytest.fixture(scope="module")
def views():
    return load_image_set("bundled:object", max_side=16, views=8)


def test_the_errors_share_one_base_and_stay_what_callers_caught() -> None:
    assert issubclass(NvsIOError, NvsError) and issubclass(InputError, NvsError)
    assert issubclass(InputError, ValueError)


def test_one_image_is_refused_before_anything_is_written(views, tmp_path) -> None:
    with pytest.raises(InputError, match=r"holds 1 image\(s\); a reconstruction needs at least 2"):
        run_reconstruction(views.subset([0]), tmp_path / "out", TrainerConfig(iterations=1))
    assert not (tmp_path / "out").exists()


def test_initial_poses_must_place_two_training_images(views) -> None:
    c2w_N44 = np.full((8, 4, 4), np.nan)
    c2w_N44[[0, 1]] = views.c2w_N44[[0, 1]]  # view 0 is held out: one training image placed
    with pytest.raises(InputError, match="place 1 of the 7 training images"):
        check_inputs(views, c2w_N44)
    c2w_N44[2] = views.c2w_N44[2]
    check_inputs(views, c2w_N44)


def test_a_poses_file_that_names_none_of_the_images_says_how_it_matches(views, tmp_path) -> None:
    write_output_folder(tmp_path / "other", CameraEstimates(
        names=["a.png", "b.png"], c2w_N44=views.c2w_N44[:2], registered_N=np.ones(2, dtype=bool),
        K_N33=views.K_N33[:2], sizes_N2=np.tile([views.width, views.height], (2, 1))), {"source": "test"})
    with pytest.raises(InputError, match="places none of the 8 images .*matched by image name"):
        initial_poses(str(tmp_path / "other" / "poses.json"), views)
    with pytest.raises(OutputFolderError, match="no such poses file"):
        initial_poses(str(tmp_path / "missing.json"), views)
