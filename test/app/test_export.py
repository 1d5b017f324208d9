"""`nvs-ros export --format nerfstudio|colmap` on a small reconstructed scene: pycolmap reads the
COLMAP model back (poses, intrinsics, points and colours), our loader reads the nerfstudio folder
back (poses, intrinsics, images); only registered views go out, with the images the run read."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from nvs_ros import cli
from nvs_ros.app.export import export_scene
from nvs_ros.app.reconstruction import run_reconstruction
from nvs_ros.core.trainer_config import config_for_mode
from nvs_ros.io.colmap_model import colmap_camera_params
from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.errors import OutputFolderError
from nvs_ros.io.image_folder import write_image_folder
from nvs_ros.io.output_folder import poses_to_json, read_poses, write_json
from nvs_ros.io.point_cloud_ply import read_point_cloud_ply

SOURCE = "bundled:object"


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory) -> Path:
    """An oracle run (ground-truth poses, 20 steps: seconds), every product written."""
    out = tmp_path_factory.mktemp("run")
    image_set = load_image_set(SOURCE, max_side=32, views=8)
    run_reconstruction(image_set, out, config_for_mode("360", poses="gt", iterations=20, time_budget_s=None))
    return out


@pytest.fixture(scope="module")
def images():
    return load_image_set(SOURCE, max_side=32, views=8)


def test_colmap_export_reads_back_with_pycolmap(scene_dir, images, tmp_path) -> None:
    assert cli.main(["export", str(scene_dir), "--format", "colmap", "--out", str(tmp_path)]) == cli.EXIT_OK
    estimates = read_poses(scene_dir)
    model = pycolmap.Reconstruction(tmp_path / "sparse" / "0")
    assert model.num_images() == len(estimates) == 8 and model.num_cameras() == 1
    for i, name in enumerate(estimates.names):
        image = model.find_image_with_name(name)
        np.testing.assert_allclose(image.cam_from_world().matrix(), np.linalg.inv(estimates.c2w_N44[i])[:3],
                                   atol=1e-6)
        np.testing.assert_allclose(image.camera.params, colmap_camera_params(estimates.K_N33[i], "PINHOLE"),
                                   atol=1e-6)
        assert (image.camera.width, image.camera.height) == (32, 32)
    points_P3, colors_P3 = read_point_cloud_ply(scene_dir / "cloud.ply")
    assert model.num_points3D() == len(points_P3) > 0
    by_id = sorted(model.points3D.items())
    np.testing.assert_allclose([p.xyz for _, p in by_id], points_P3, atol=1e-6)
    np.testing.assert_array_equal([p.color for _, p in by_id], np.round(colors_P3 * 255))
    np.testing.assert_array_equal(load_image_set(tmp_path).images_NHW3, images.images_NHW3)  # images/ + model
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["export_format"] == "colmap" and manifest["source"]["file"].endswith("poses.json")


def test_nerfstudio_export_reads_back_as_the_scene(scene_dir, images, tmp_path) -> None:
    export_scene(scene_dir, tmp_path, "nerfstudio")
    estimates = read_poses(scene_dir)
    read = load_image_set(tmp_path)
    assert read.names == [f"images/{name}" for name in estimates.names]
    np.testing.assert_allclose(read.c2w_N44, estimates.c2w_N44, atol=1e-12)
    np.testing.assert_allclose(read.K_N33, estimates.K_N33, atol=1e-12)
    np.testing.assert_array_equal(read.images_NHW3, images.images_NHW3)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    assert meta["camera_model"] == "PINHOLE" and (meta["w"], meta["h"]) == (32, 32)
    assert (tmp_path / meta["ply_file_path"]).is_file()
    np.testing.assert_array_equal(read_point_cloud_ply(tmp_path / meta["ply_file_path"])[0],
                                  read_point_cloud_ply(scene_dir / "cloud.ply")[0])


def test_only_registered_views_are_exported(scene_dir, tmp_path) -> None:
    folder = tmp_path / "run"
    shutil.copytree(scene_dir, folder, ignore=shutil.ignore_patterns("export", "views"))
    estimates = read_poses(folder)
    registered_N = np.ones(len(estimates), dtype=bool)
    registered_N[3] = False
    c2w_N44 = np.where(registered_N[:, None, None], estimates.c2w_N44, np.nan)
    write_json(folder / "poses.json", poses_to_json(dataclasses.replace(estimates, registered_N=registered_N,
                                                                        c2w_N44=c2w_N44)))
    export_scene(folder, tmp_path / "ns", "nerfstudio")
    export_scene(folder, tmp_path / "colmap", "colmap")
    kept = [name for name, registered in zip(estimates.names, registered_N) if registered]
    assert load_image_set(tmp_path / "ns").names == [f"images/{name}" for name in kept]
    assert sorted(i.name for i in pycolmap.Reconstruction(tmp_path / "colmap" / "sparse" / "0").images.values()) == kept


def test_without_the_images_nerfstudio_is_an_error_and_colmap_writes_the_model_alone(scene_dir, images,
                                                                                  tmp_path) -> None:
    folder = tmp_path / "saved"  # as the node's ~/save writes it: no dataset recorded
    shutil.copytree(scene_dir, folder, ignore=shutil.ignore_patterns("export", "views"))
    (folder / "run.json").write_text(json.dumps({"estimator": "nvs_node"}))
    with pytest.raises(OutputFolderError, match="records no dataset"):
        export_scene(folder, tmp_path / "ns", "nerfstudio")
    export_scene(folder, tmp_path / "colmap", "colmap")
    assert pycolmap.Reconstruction(tmp_path / "colmap" / "sparse" / "0").num_images() == 8
    assert not (tmp_path / "colmap" / "images").exists()
    write_image_folder(tmp_path / "pictures", images.resized(16))  # named: read from there, as stored
    export_scene(folder, tmp_path / "given", "nerfstudio", images=str(tmp_path / "pictures"))
    given = load_image_set(tmp_path / "given")
    np.testing.assert_array_equal(given.images_NHW3, images.resized(16).images_NHW3)
    np.testing.assert_allclose(given.K_N33, images.resized(16).K_N33, atol=1e-12)  # intrinsics follow the size
