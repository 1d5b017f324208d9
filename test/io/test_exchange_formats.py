"""nerfstudio / instant-ngp transforms.json and COLMAP models as inputs: written from the bundled
scene, read back as it is (images, intrinsics, and poses where they are ground truth); a
transforms.json lens undistorted, a COLMAP lens with distortion refused in one line."""

import json
from pathlib import Path

import cv2
import numpy as np
import pycolmap
import pytest
from lens_scene import LENSES, blurred_error, lens_views, pinhole_views

from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.errors import InputError
from nvs_ros.core.image_set import ImageSet
from nvs_ros.io.camera_models import undistorter
from nvs_ros.io.colmap_model import read_colmap_model, write_colmap_model
from nvs_ros.io.datasets import detect_format, load_image_set
from nvs_ros.io.errors import DatasetError
from nvs_ros.io.output_folder import write_png
from nvs_ros.io.transforms_json import read_transforms_poses, write_transforms


@pytest.fixture(scope="module")
def scene() -> ImageSet:
    return load_image_set("bundled:object", max_side=32, views=6)


def as_estimates(image_set: ImageSet) -> CameraEstimates:
    n = len(image_set)
    return CameraEstimates(names=list(image_set.names), c2w_N44=image_set.c2w_N44, registered_N=np.ones(n, dtype=bool),
                           K_N33=image_set.K_N33, sizes_N2=np.tile([image_set.width, image_set.height], (n, 1)))


def write_transforms_folder(folder: Path, image_set: ImageSet) -> Path:
    file_paths = [f"images/{name}" for name in image_set.names]
    for file_path, image_HW3 in zip(file_paths, image_set.images_NHW3):
        write_png(folder / file_path, image_HW3)
    return write_transforms(folder, as_estimates(image_set), file_paths)


def write_colmap_folder(folder: Path, image_set: ImageSet, binary: bool = False) -> Path:
    for name, image_HW3 in zip(image_set.names, image_set.images_NHW3):
        write_png(folder / "images" / name, image_HW3)
    model = write_colmap_model(folder / "sparse" / "0", as_estimates(image_set), np.zeros((0, 3)), np.zeros((0, 3)))
    if binary:
        reconstruction = pycolmap.Reconstruction(model)
        for text in model.glob("*.txt"):
            text.unlink()
        reconstruction.write_binary(model)
    return model


def test_a_nerfstudio_folder_reads_back_as_the_scene_it_was_written_from(scene, tmp_path) -> None:
    write_transforms_folder(tmp_path, scene)
    assert detect_format(tmp_path) == "transforms_json"
    read = load_image_set(tmp_path)
    assert read.names == [f"images/{name}" for name in scene.names]
    np.testing.assert_array_equal(read.images_NHW3, scene.images_NHW3)
    np.testing.assert_allclose(read.K_N33, scene.K_N33, atol=1e-12)
    np.testing.assert_allclose(read.c2w_N44, scene.c2w_N44, atol=1e-12)  # ground truth, for eval
    assert read.capture == "unknown"  # nerfstudio captures are of any kind: the mode is chosen later
    half = load_image_set(tmp_path, max_side=16, views=3)  # downscaled at load time, intrinsics with it
    np.testing.assert_allclose(half.K_N33[0, 0, 0], scene.K_N33[0, 0, 0] / 2)
    poses = read_transforms_poses(tmp_path)  # the --init source: no image read
    np.testing.assert_allclose(poses.c2w_N44, scene.c2w_N44, atol=1e-12)
    np.testing.assert_allclose(poses.K_N33, scene.K_N33, atol=1e-12)
    with pytest.raises(DatasetError, match="no .test. split"):
        load_image_set(tmp_path, split="test")


def test_instant_ngp_field_of_view_gives_the_same_intrinsics(scene, tmp_path) -> None:
    meta_path = write_transforms_folder(tmp_path, scene)
    meta = json.loads(meta_path.read_text())
    fx = meta.pop("fl_x")
    for key in ("fl_y", "cx", "cy", "w", "h", "camera_model"):
        meta.pop(key)
    meta["camera_angle_x"] = 2 * np.arctan(0.5 * scene.width / fx)
    meta_path.write_text(json.dumps(meta))
    np.testing.assert_allclose(load_image_set(tmp_path).K_N33, scene.K_N33, atol=1e-9)


def test_a_transforms_camera_model_not_read_is_refused_in_one_line(scene, tmp_path) -> None:
    meta_path = write_transforms_folder(tmp_path, scene)
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "camera_model": "EQUIRECTANGULAR"}))
    with pytest.raises(InputError, match="camera model EQUIRECTANGULAR .* only PINHOLE, OPENCV and OPENCV_FISHEYE"):
        load_image_set(tmp_path)
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "camera_model": "OPENCV", "k1": 0.0}))
    assert len(load_image_set(tmp_path)) == len(scene)  # OPENCV without distortion is a pinhole camera


@pytest.mark.parametrize("binary", [False, True])
def test_a_colmap_model_gives_intrinsics_and_poses_but_no_ground_truth(scene, tmp_path, binary) -> None:
    write_colmap_folder(tmp_path, scene, binary)
    assert detect_format(tmp_path) == "colmap"
    read = load_image_set(tmp_path)
    assert read.names == scene.names and not read.has_ground_truth
    np.testing.assert_array_equal(read.images_NHW3, scene.images_NHW3)
    np.testing.assert_allclose(read.K_N33, scene.K_N33, atol=1e-6)
    model = read_colmap_model(tmp_path)
    assert model.names == scene.names
    np.testing.assert_allclose(model.c2w_N44, scene.c2w_N44, atol=1e-6)


def test_a_colmap_lens_with_distortion_is_refused_in_one_line(scene, tmp_path) -> None:
    model = write_colmap_folder(tmp_path, scene)
    reconstruction = pycolmap.Reconstruction(model)
    camera = reconstruction.cameras[1]
    fx, fy, cx, cy = camera.params
    reconstruction.cameras[1] = pycolmap.Camera(model="OPENCV", width=camera.width, height=camera.height,
                                                params=[fx, fy, cx, cy, 0.0, 0.0, 0.0, 0.0], camera_id=1)
    reconstruction.write_text(model)
    np.testing.assert_allclose(load_image_set(tmp_path).K_N33, scene.K_N33, atol=1e-6)  # no distortion: read
    reconstruction.cameras[1] = pycolmap.Camera(model="OPENCV", width=camera.width, height=camera.height,
                                                params=[fx, fy, cx, cy, -0.3, 0.0, 0.0, 0.0], camera_id=1)
    reconstruction.write_text(model)
    with pytest.raises(InputError, match="camera model OPENCV with distortion: not supported yet"):
        load_image_set(tmp_path)


def test_nerfstudio_cameras_have_opengl_axes_and_pixel_centres_at_half_integers(tmp_path) -> None:
    """A camera 2 units up +z looking at the origin (OpenCV: z forward = -z of the world) looks
    down its own -z in transforms.json, with y up; its principal point is 0.5 px further."""
    c2w_cv_44 = np.array([[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2], [0, 0, 0, 1]])  # x right, y down, z to origin
    K_33 = np.array([[40.0, 0, 15.5], [0, 41.0, 11.5], [0, 0, 1]])  # centre of a 32x24 image, OpenCV pixels
    write_transforms(tmp_path, CameraEstimates(["a.png"], c2w_cv_44[None], np.ones(1, dtype=bool), K_33[None],
                                               np.array([[32, 24]])), ["a.png"])
    meta = json.loads((tmp_path / "transforms.json").read_text())
    c2w_gl_44 = np.array(meta["frames"][0]["transform_matrix"])
    np.testing.assert_allclose(-c2w_gl_44[:3, 2], [0, 0, -1])  # looks down its -z: at the origin
    np.testing.assert_allclose(c2w_gl_44[:3, 1], [0, 1, 0])  # its y is up where OpenCV's is down
    np.testing.assert_allclose(c2w_gl_44[:3, 0], c2w_cv_44[:3, 0])  # x stays
    np.testing.assert_allclose(c2w_gl_44[:3, 3], [0, 0, 2])
    assert (meta["cx"], meta["cy"], meta["w"], meta["h"]) == (16.0, 12.0, 32, 24)  # nerfstudio: the image centre


@pytest.mark.parametrize("lens", ["plumb_bob", "equidistant"])
def test_a_transforms_json_with_a_lens_is_undistorted(lens, tmp_path):
    """nerfstudio's OPENCV (k1 k2 p1 p2) and OPENCV_FISHEYE (k1-k4) cameras: the images load as
    the pinhole view of the undistorted camera, as every other input with a lens does."""
    camera = LENSES[lens]()
    views = lens_views(camera)
    RESTORED = 3.0  # blurred pixel error of an undistorted view, as test/io/test_camera_models.py
    (tmp_path / "images").mkdir()
    for name, image_HW3 in zip(views.names, views.images_NHW3):
        cv2.imwrite(str(tmp_path / "images" / name), cv2.cvtColor(image_HW3, cv2.COLOR_RGB2BGR))
    K_33 = camera.K_33
    keys = ["k1", "k2", "p1", "p2"] if lens == "plumb_bob" else ["k1", "k2", "k3", "k4"]
    meta = {"camera_model": "OPENCV" if lens == "plumb_bob" else "OPENCV_FISHEYE",
            "fl_x": K_33[0, 0], "fl_y": K_33[1, 1], "cx": K_33[0, 2] + 0.5, "cy": K_33[1, 2] + 0.5,
            "w": camera.width, "h": camera.height, **dict(zip(keys, camera.d)),
            "frames": [{"file_path": f"images/{name}", "transform_matrix": np.eye(4).tolist()} for name in views.names]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    loaded = load_image_set(tmp_path)
    to_pinhole = undistorter(camera)
    np.testing.assert_allclose(loaded.K_N33[0], to_pinhole.K_33, atol=1e-9)
    restored_N3HW = pinhole_views(to_pinhole.K_33, camera.width, camera.height)
    for i, image_HW3 in enumerate(loaded.images_NHW3):
        assert blurred_error(image_HW3, restored_N3HW[i]) < RESTORED
