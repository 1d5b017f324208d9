"""A saved scene reloads with the same weights, cameras and config, registers a frame with the
same result, and a damaged or missing checkpoint gives a clear error."""

import numpy as np
import pytest
import torch
from tiny_engine import TINY

from nvs_ros.core.scene import Scene
from nvs_ros.core.training_run import build_engine
from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.errors import SceneCheckpointError
from nvs_ros.io.scene_checkpoint import SUMMARY, load_scene, save_scene


@pytest.fixture(scope="module")
def scene() -> Scene:
    """An engine after its coarse-to-fine upsampling (weights random but fixed: what is tested
    is that everything comes back, not training)."""
    torch.manual_seed(0)
    views = load_image_set("bundled:object", max_side=32, views=6)
    engine = build_engine(TINY, len(views), radius=3.5)
    engine.field.upsample(TINY.fine_grid)
    with torch.no_grad():
        engine.field.grid.normal_(0.0, 1.0)
    return Scene.from_training(engine, TINY, views.names, views.images_NHW3, views.K_N33,
                               views.c2w_N44)


def test_saved_scene_reloads_and_registers_the_same(scene: Scene, tmp_path) -> None:
    save_scene(tmp_path / "scene", scene)
    loaded = load_scene(tmp_path / "scene")
    assert loaded.config == scene.config
    assert loaded.names == scene.names and loaded.image_size == scene.image_size
    np.testing.assert_array_equal(loaded.c2w_N44, scene.c2w_N44)
    np.testing.assert_array_equal(loaded.K_N33, scene.K_N33)
    assert scene.thumbnails_ND.shape == (6, 8 * 8 * 3)
    np.testing.assert_array_equal(loaded.thumbnails_ND, scene.thumbnails_ND)
    assert loaded.engine.field.resolution == TINY.fine_grid
    for key, value in scene.engine.state_dict().items():
        torch.testing.assert_close(loaded.engine.state_dict()[key], value, msg=key)
    views = load_image_set("bundled:object", max_side=32, views=6)
    before = scene.register(views.images_NHW3[:1], views.K_N33[:1])
    after = loaded.register(views.images_NHW3[:1], views.K_N33[:1])
    torch.testing.assert_close(after.c2w_B44, before.c2w_B44)
    torch.testing.assert_close(after.confidence_B, before.confidence_B)
    assert (tmp_path / "scene" / SUMMARY).is_file()


def test_missing_or_damaged_checkpoints_are_clear_errors(scene: Scene, tmp_path) -> None:
    with pytest.raises(SceneCheckpointError, match="not a saved scene"):
        load_scene(tmp_path)
    path = save_scene(tmp_path / "scene", scene)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(SceneCheckpointError, match="unreadable"):
        load_scene(tmp_path / "scene")


def test_the_output_frame_of_a_declared_source_comes_back(scene: Scene, tmp_path) -> None:
    """A scene given metric poses keeps the similarity into their frame (products, registered
    frames); saving and loading keep it, and scene.json shows it."""
    import dataclasses
    import json

    from scipy.spatial.transform import Rotation

    from nvs_ros.core.sim3 import Sim3

    frame = Sim3(2.5, Rotation.from_euler("xyz", [10, -40, 75], degrees=True).as_matrix(), np.array([4.0, -1.0, 0.3]))
    metric = dataclasses.replace(scene, output_frame=frame, scale_source="odometry")
    save_scene(tmp_path / "scene", metric)
    loaded = load_scene(tmp_path / "scene")
    assert loaded.scale_source == "odometry" and loaded.output_frame.scale == pytest.approx(2.5)
    out = loaded.to_output(scene.c2w_N44)
    np.testing.assert_allclose(out[:, :3, 3], frame.apply_points(scene.c2w_N44[:, :3, 3]), atol=1e-9)
    np.testing.assert_allclose(loaded.from_output(out), scene.c2w_N44, atol=1e-9)
    assert json.loads((tmp_path / "scene" / SUMMARY).read_text())["output_frame"]["scale"] == pytest.approx(2.5)
    save_scene(tmp_path / "plain", scene)
    assert load_scene(tmp_path / "plain").output_frame is None
