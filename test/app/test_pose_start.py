"""Where poses start (`reconstruct --init`): a poses file starts the views it names (as
bench/robust.py reads one back), `features` chains the images loaded for the features, not the
training ones, and `auto` (the default) starts from the chain only where it places half of the
views; each start carries its source and the trainer settings that go with it."""

import dataclasses

import numpy as np
import pytest

from nvs_ros.app.pose_start import LEARNT, PoseStart, initial_poses, resolve_pose_start
from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.errors import InputError
from nvs_ros.core.trainer_config import config_for_mode
from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.output_folder import write_output_folder


@pytest.fixture(scope="module")
def arc():
    return load_image_set("bundled:room:arc", max_side=128, views=8)


def test_a_poses_file_starts_the_views_it_names(arc, tmp_path) -> None:
    named = [0, 2, 3, 5, 6, 7]  # views 1 and 4 are missing from the file
    given = arc.subset(named)
    write_output_folder(tmp_path / "given", CameraEstimates(
        names=list(given.names), c2w_N44=given.c2w_N44, registered_N=np.ones(len(given), dtype=bool),
        K_N33=given.K_N33, sizes_N2=np.tile([given.width, given.height], (len(given), 1))), {"source": "test"})
    start = initial_poses(str(tmp_path / "given"), arc)
    assert start.start is PoseStart.POSES_FILE and start.prior_source == "poses file"
    assert start.trainer_config("360") == config_for_mode("360") and start.learnt_alternative("360") is None
    c2w_N44 = start.c2w_N44
    np.testing.assert_allclose(c2w_N44[named], arc.c2w_N44[named], atol=1e-9)
    assert np.isnan(c2w_N44[[1, 4]]).all()


def test_features_are_chained_on_the_set_loaded_for_them(arc) -> None:
    start = initial_poses("features", arc)
    assert start.start is PoseStart.FEATURES and np.isfinite(start.c2w_N44).all() and start.prior_source is None
    blank = dataclasses.replace(arc, images_NHW3=np.full_like(arc.images_NHW3, 128))
    with pytest.raises(InputError, match="placed only 0 of 8"):
        initial_poses("features", arc, blank)


def test_auto_starts_from_the_chain_where_it_places_half_of_the_views(arc) -> None:
    start = resolve_pose_start("auto", "bundled:room:arc", arc)
    assert start.start is PoseStart.FEATURES and start.request == "auto"
    assert np.isfinite(start.c2w_N44).all()
    kept = start.trainer_config("360", seed=3)  # chained poses are kept: no refinement, no correction
    assert (kept.lr_refine, kept.outlier_correction, kept.seed) == (0.0, False, 3)
    assert start.learnt_alternative("360", seed=3).seed == 3  # chained poses are not kept blindly
    np.testing.assert_allclose(start.c2w_N44, initial_poses("features", arc).c2w_N44, atol=1e-9)


def test_auto_learns_the_poses_where_the_chain_places_too_few(arc) -> None:
    blank = dataclasses.replace(arc, images_NHW3=np.full_like(arc.images_NHW3, 128))
    assert initial_poses("auto", arc, blank).c2w_N44 is None
    plain = load_image_set("bundled:object", max_side=64, views=8)  # white background, no texture
    start = resolve_pose_start("auto", "bundled:object", plain)
    assert start.start is PoseStart.LEARNT and start.c2w_N44 is None and start.trainer_config("360") == config_for_mode("360")
    assert initial_poses("none", plain) == LEARNT


def test_the_start_names_are_the_live_scenes() -> None:
    """One vocabulary: the live scene reports its pose start in the same words."""
    assert {s.value for s in PoseStart} >= {"odometry", "features", "learnt"}
    assert PoseStart.ODOMETRY.value == "odometry" and PoseStart("poses file") is PoseStart.POSES_FILE


@pytest.mark.parametrize("layout", ["colmap", "transforms"])
def test_a_colmap_model_or_a_transforms_json_starts_the_poses_it_holds(arc, tmp_path, layout) -> None:
    """`--init DIR` with a COLMAP model (DIR/sparse/0, or the model folder itself) or a transforms.json:
    its poses, matched by image name, start the views; as a poses file, they fix frame and scale."""
    from nvs_ros.io.colmap_model import write_colmap_model
    from nvs_ros.io.transforms_json import write_transforms

    given = CameraEstimates(names=list(arc.names), c2w_N44=arc.c2w_N44, registered_N=np.ones(len(arc), dtype=bool),
                            K_N33=arc.K_N33, sizes_N2=np.tile([arc.width, arc.height], (len(arc), 1)))
    if layout == "colmap":
        model = write_colmap_model(tmp_path / "sparse" / "0", given, np.zeros((0, 3)), np.zeros((0, 3)))
        sources = [tmp_path, model]
    else:
        sources = [tmp_path, write_transforms(tmp_path, given, list(arc.names))]
    for source in sources:
        start = initial_poses(str(source), arc)
        assert start.start is PoseStart.POSES_FILE and start.prior_source == "poses file"
        np.testing.assert_allclose(start.c2w_N44, arc.c2w_N44, atol=1e-6)
