"""Dataset loaders: shapes, intrinsics, and ground-truth conventions proved against the images."""

import importlib.util
import logging
import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from geometry_checks import median_sampson_error, sampson_errors_px, sift_matches, fundamental_from_poses

from nvs_ros.core.conventions import c2w_cv_to_gl
from nvs_ros.io.camera_models import CameraModel, undistorter
from nvs_ros.io.datasets import describe_formats, detect_format, load_for_features, load_image_set
from nvs_ros.io.dtu import decompose_projections
from nvs_ros.io.errors import DatasetError

DATA = Path(os.environ.get("NVS_ROS_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared datasets not found at {DATA}")

# name -> (folder, max_side, views, (H, W) loaded, fx loaded, capture, format)
DATASETS = {
    "chair": ("nerf_synthetic_chair", 400, 100, (400, 400),
              0.5 * 400 / np.tan(0.5 * 0.6911112070083618), "360", "nerf_synthetic"),
    "fern": ("llff_fern", None, 20, (378, 504), 3260.52633 * 504 / 4032, "forward", "llff"),
    "dtu": ("dtu_scan65", 400, 49, (300, 400), 2892.331 / 4, "unknown", "dtu"),
    "temple": ("middlebury_temple_ring", None, 16, (480, 640), 1520.4, "360", "middlebury"),
}

_cache: dict[str, object] = {}


def load(name: str):
    """Each shared set is loaded once per test session (loading is the slow part)."""
    if name not in _cache:
        folder, max_side, *_ = DATASETS[name]
        _cache[name] = load_image_set(DATA / folder, max_side=max_side)
    return _cache[name]


def neighbour_pairs(image_set, count: int = 3, min_angle_deg: float = 2.0) -> list[tuple[int, int]]:
    """For `count` spread views, the view whose direction is closest (but >= min_angle_deg away:
    the temple ring holds near-duplicate viewpoints, where epipolar geometry degenerates)."""
    z_N3 = image_set.c2w_N44[:, :3, 2]
    pairs = []
    for i in np.linspace(0, len(image_set) - 1, count).round().astype(int):
        angle_N = np.degrees(np.arccos(np.clip(z_N3 @ z_N3[i], -1.0, 1.0)))
        angle_N[angle_N < min_angle_deg] = np.inf
        pairs.append((int(i), int(np.argmin(angle_N))))
    return pairs


def triangulated_depths(image_set, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Depths in cameras i and j of SIFT matches that fit the GT epipolar geometry (< 2 px)."""
    pts_a, pts_b = sift_matches(image_set.images_NHW3[i], image_set.images_NHW3[j])
    K_a, K_b, c2w_a, c2w_b = (image_set.K_N33[i], image_set.K_N33[j],
                              image_set.c2w_N44[i], image_set.c2w_N44[j])
    inliers = sampson_errors_px(fundamental_from_poses(K_a, K_b, c2w_a, c2w_b), pts_a, pts_b) < 2.0
    w2c_a, w2c_b = np.linalg.inv(c2w_a), np.linalg.inv(c2w_b)
    X_4M = cv2.triangulatePoints(K_a @ w2c_a[:3], K_b @ w2c_b[:3], pts_a[inliers].T, pts_b[inliers].T)
    X_4M = X_4M / X_4M[3]
    return (w2c_a @ X_4M)[2], (w2c_b @ X_4M)[2]


def project(image_set, point_3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (N, 2) and depth (N,) of one world point in every view."""
    w2c_N44 = np.linalg.inv(image_set.c2w_N44)
    cam_N3 = w2c_N44[:, :3, :3] @ point_3 + w2c_N44[:, :3, 3]
    uvw_N3 = np.einsum("nij,nj->ni", image_set.K_N33, cam_N3)
    return uvw_N3[:, :2] / uvw_N3[:, 2:], cam_N3[:, 2]


@needs_data
@pytest.mark.parametrize("name", DATASETS)
def test_shared_set_loads_with_right_shape_and_intrinsics(name):
    _, _, count, size, fx, capture, _ = DATASETS[name]
    image_set = load(name)
    assert len(image_set) == count and image_set.images_NHW3.shape == (count, *size, 3)
    assert image_set.images_NHW3.dtype == np.uint8 and image_set.capture == capture
    K_N33 = image_set.K_N33
    np.testing.assert_allclose(K_N33[:, 0, 0], fx, rtol=2e-3)
    np.testing.assert_allclose(K_N33[:, 1, 1] / K_N33[:, 0, 0], 1.0, atol=5e-3)
    np.testing.assert_allclose(K_N33[:, 2], np.tile([0.0, 0.0, 1.0], (count, 1)))
    # principal point near the centre (DTU's is 15 px off at 400 px)
    np.testing.assert_allclose(K_N33[:, 0, 2], (size[1] - 1) / 2, atol=0.05 * size[1])
    np.testing.assert_allclose(K_N33[:, 1, 2], (size[0] - 1) / 2, atol=0.05 * size[0])


@needs_data
@pytest.mark.parametrize("name", DATASETS)
def test_ground_truth_poses_are_rigid(name):
    c2w_N44 = load(name).c2w_N44
    R_N33 = c2w_N44[:, :3, :3]
    np.testing.assert_allclose(R_N33 @ R_N33.transpose(0, 2, 1), np.tile(np.eye(3), (len(R_N33), 1, 1)),
                               atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(R_N33), 1.0, atol=1e-5)
    np.testing.assert_array_equal(c2w_N44[:, 3], np.tile([0.0, 0.0, 0.0, 1.0], (len(R_N33), 1)))


@needs_data
@pytest.mark.parametrize("name", DATASETS)
def test_ground_truth_matches_the_images(name):
    """SIFT matches of neighbouring views obey the GT epipolar geometry to < 1 px, while the
    same poses with flipped camera axes (OpenGL read as OpenCV) do not."""
    image_set = load(name)
    flipped = replace(image_set, c2w_N44=c2w_cv_to_gl(image_set.c2w_N44))
    good, bad = [], []
    for i, j in neighbour_pairs(image_set):
        error_px, matches = median_sampson_error(image_set, i, j)
        assert matches >= 30, f"views {i}, {j}: only {matches} matches"
        good.append(error_px)
        bad.append(median_sampson_error(flipped, i, j)[0])
    assert max(good) < 1.0, f"median Sampson errors {good}"
    assert np.mean(bad) > 2.0, f"flipped axes fit too: {bad}"


@needs_data
@pytest.mark.parametrize("name", DATASETS)
def test_matched_points_lie_in_front_of_both_cameras(name):
    """Epipolar geometry cannot tell a camera from one looking backwards: triangulation can."""
    image_set = load(name)
    for i, j in neighbour_pairs(image_set, count=2):
        depth_a_M, depth_b_M = triangulated_depths(image_set, i, j)
        assert len(depth_a_M) >= 20
        assert np.mean((depth_a_M > 0) & (depth_b_M > 0)) > 0.9


def _scene_centre(name: str) -> np.ndarray:
    if name == "chair":
        return np.zeros(3)  # Blender scenes are centred on the origin
    if name == "temple":  # centre of the bounding box in the dataset's README.txt
        return (np.array([-0.073568, 0.021728, -0.012445]) + np.array([0.028855, 0.181892, 0.062736])) / 2
    if name == "dtu":  # scale_mat maps the unit sphere around the object into the world
        return np.load(DATA / "dtu_scan65" / "cameras_sphere.npz")["scale_mat_0"][:3, 3]
    raise KeyError(name)


@needs_data
@pytest.mark.parametrize("name", ["chair", "temple", "dtu"])
def test_object_centre_is_in_view_of_every_camera(name):
    image_set = load(name)
    uv_N2, depth_N = project(image_set, _scene_centre(name))
    assert np.all(depth_N > 0)
    size_2 = np.array([image_set.width, image_set.height])
    assert np.all((uv_N2 > 0.2 * size_2) & (uv_N2 < 0.8 * size_2)), uv_N2


@needs_data
def test_fern_cameras_face_forward_and_depths_fit_the_bounds():
    image_set = load("fern")
    z_N3 = image_set.c2w_N44[:, :3, 2]
    mean_3 = z_N3.mean(axis=0) / np.linalg.norm(z_N3.mean(axis=0))
    assert np.degrees(np.arccos(z_N3 @ mean_3)).max() < 15.0
    near_far_N2 = np.load(DATA / "llff_fern" / "poses_bounds.npy")[:, 15:]
    depth_a_M, _ = triangulated_depths(image_set, 0, 8)
    assert near_far_N2[0, 0] * 0.9 < np.median(depth_a_M) < near_far_N2[0, 1]


@needs_data
def test_masks_cover_the_object_and_chair_background_is_white():
    chair = load("chair")
    assert chair.masks_NHW is not None and 0.05 < chair.masks_NHW.mean() < 0.6
    assert chair.images_NHW3[~chair.masks_NHW].mean() > 240
    dtu = load("dtu")
    assert dtu.masks_NHW.shape == dtu.images_NHW3.shape[:3] and 0.05 < dtu.masks_NHW.mean() < 0.9
    assert load("temple").masks_NHW is None


@needs_data
def test_resizing_keeps_intrinsics_right():
    temple = load("temple")
    small = temple.resized(320)
    assert small.images_NHW3.shape[1:3] == (240, 320)
    errors = [median_sampson_error(small, i, j)[0] for i, j in neighbour_pairs(small, count=2)]
    assert max(errors) < 1.0, errors
    # downscaling at load time gives the same size and intrinsics as resizing afterwards
    loaded_small = load_image_set(DATA / DATASETS["temple"][0], max_side=320)
    np.testing.assert_allclose(loaded_small.K_N33, small.K_N33)
    assert np.abs(loaded_small.images_NHW3.astype(int) - small.images_NHW3).mean() < 3.0


@needs_data
def test_views_pick_the_same_frames_as_evenly_spaced():
    subset = load_image_set(DATA / "middlebury_temple_ring", views=5)
    expected = load("temple").evenly_spaced(5)
    assert subset.names == expected.names == [f"templeSR{k:04d}.png" for k in (1, 5, 9, 12, 16)]
    np.testing.assert_array_equal(subset.c2w_N44, expected.c2w_N44)
    np.testing.assert_array_equal(subset.images_NHW3, expected.images_NHW3)


@needs_data
def test_nerf_synthetic_splits():
    test_split = load_image_set(DATA / "nerf_synthetic_chair", max_side=64, split="test")
    assert len(test_split) == 25 and test_split.names[:2] == ["test/r_0.png", "test/r_8.png"]
    with pytest.raises(DatasetError, match="none of their image files"):
        load_image_set(DATA / "nerf_synthetic_chair", max_side=64, split="val")
    with pytest.raises(DatasetError, match="unknown split"):
        load_image_set(DATA / "nerf_synthetic_chair", split="holdout")
    with pytest.raises(DatasetError, match="no 'test' split"):
        load_image_set(DATA / "llff_fern", split="test")


@needs_data
@pytest.mark.parametrize("name", DATASETS)
def test_format_is_detected(name):
    assert detect_format(DATA / DATASETS[name][0]) == DATASETS[name][6]


@pytest.mark.parametrize("scale", [1.0, -3.5, 1e-3])
def test_projection_decomposition_recovers_camera_for_any_scale_and_sign(scale):
    rng = np.random.default_rng(7)
    K_33 = np.array([[900.0, 0.5, 410.0], [0.0, 880.0, 290.0], [0.0, 0.0, 1.0]])
    for _ in range(5):
        R_33, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        R_33 *= np.sign(np.linalg.det(R_33))
        t_3 = rng.normal(size=3)
        K_N33, c2w_N44 = decompose_projections((scale * K_33 @ np.c_[R_33, t_3])[None])
        np.testing.assert_allclose(K_N33[0], K_33, atol=1e-6)
        np.testing.assert_allclose(c2w_N44[0, :3, :3], R_33.T, atol=1e-9)
        np.testing.assert_allclose(c2w_N44[0, :3, 3], -R_33.T @ t_3, atol=1e-9)


# ----------------------------------------------------------------- image folders (no shared data)

def _texture(rng: np.random.Generator, height: int = 24, width: int = 32) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _write_folder(folder: Path, names: list[str], rng: np.random.Generator) -> dict[str, np.ndarray]:
    images = {}
    for name in names:
        images[name] = _texture(rng)
        cv2.imwrite(str(folder / name), cv2.cvtColor(images[name], cv2.COLOR_RGB2BGR))
    return images


def test_image_folder_natural_order_and_guessed_intrinsics(tmp_path, caplog):
    rng = np.random.default_rng(0)
    images = _write_folder(tmp_path, ["img10.png", "img2.png", "img1.png"], rng)
    (tmp_path / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="nvs_ros.io.image_folder"):
        image_set = load_image_set(tmp_path)
    assert detect_format(tmp_path) == "image_folder"
    assert image_set.names == ["img1.png", "img2.png", "img10.png"]
    np.testing.assert_array_equal(image_set.images_NHW3[2], images["img10.png"])  # lossless, RGB order
    np.testing.assert_allclose(image_set.K_N33[0], [[38.4, 0, 15.5], [0, 38.4, 11.5], [0, 0, 1]])
    assert "guessing" in caplog.text
    assert image_set.c2w_N44 is None and image_set.capture == "unknown"


@pytest.mark.parametrize("text", ["100 110 16 12\n", "100 0 16\n0 110 12\n0 0 1\n"])
def test_image_folder_reads_intrinsics_txt(tmp_path, caplog, text):
    _write_folder(tmp_path, ["a.png", "b.png"], np.random.default_rng(1))
    (tmp_path / "intrinsics.txt").write_text(text)
    with caplog.at_level(logging.WARNING):
        image_set = load_image_set(tmp_path)
        halved = load_image_set(tmp_path, max_side=16)
    assert "guessing" not in caplog.text
    np.testing.assert_allclose(image_set.K_N33[1], [[100, 0, 16], [0, 110, 12], [0, 0, 1]])
    assert halved.images_NHW3.shape == (2, 12, 16, 3)
    np.testing.assert_allclose(halved.K_N33[0], [[50, 0, 7.75], [0, 55, 5.75], [0, 0, 1]])


def test_image_folder_rejects_a_bad_intrinsics_txt(tmp_path):
    _write_folder(tmp_path, ["a.png"], np.random.default_rng(1))
    (tmp_path / "intrinsics.txt").write_text("100 110 16\n")
    with pytest.raises(DatasetError, match="intrinsics.txt"):
        load_image_set(tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("yaml") is None, reason="PyYAML not installed")
def test_image_folder_reads_ros_camera_yaml_at_another_resolution(tmp_path, caplog):
    _write_folder(tmp_path, ["a.png", "b.png"], np.random.default_rng(2))
    (tmp_path / "camera.yaml").write_text(  # camera_calibration output for 64x48 images
        "image_width: 64\nimage_height: 48\ncamera_name: cam\ncamera_matrix:\n  rows: 3\n"
        "  cols: 3\n  data: [80.0, 0.0, 31.5, 0.0, 82.0, 23.5, 0.0, 0.0, 1.0]\n"
        "distortion_model: plumb_bob\ndistortion_coefficients:\n  rows: 1\n  cols: 5\n"
        "  data: [0.1, 0.0, 0.0, 0.0, 0.0]\n")
    with caplog.at_level(logging.INFO):
        image_set = load_image_set(tmp_path)
    camera = CameraModel.create([[40, 0, 15.5], [0, 41, 11.5], [0, 0, 1]], 32, 24, "plumb_bob", [0.1, 0, 0, 0, 0])
    np.testing.assert_allclose(image_set.K_N33[0], undistorter(camera).K_33)  # test_camera_models: the pixels
    assert "images are undistorted" in caplog.text


def test_image_folder_grayscale_and_rgba(tmp_path):
    rng = np.random.default_rng(3)
    gray_HW = rng.integers(0, 256, (24, 32), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "0.png"), gray_HW)
    gray_set = load_image_set(tmp_path)
    np.testing.assert_array_equal(gray_set.images_NHW3[0], np.repeat(gray_HW[..., None], 3, axis=2))
    assert gray_set.masks_NHW is None

    bgra_HW4 = np.zeros((24, 32, 4), dtype=np.uint8)
    bgra_HW4[:12] = [0, 0, 255, 255]  # opaque red top half, transparent bottom half
    cv2.imwrite(str(tmp_path / "0.png"), bgra_HW4)
    rgba_set = load_image_set(tmp_path)
    np.testing.assert_array_equal(rgba_set.images_NHW3[0, 0, 0], [255, 0, 0])
    np.testing.assert_array_equal(rgba_set.images_NHW3[0, -1, 0], [255, 255, 255])  # on white
    assert rgba_set.masks_NHW[0, :12].all() and not rgba_set.masks_NHW[0, 12:].any()


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n garbage"])
def test_image_folder_names_an_unreadable_file(tmp_path, content):
    _write_folder(tmp_path, ["a.png", "b.jpg"], np.random.default_rng(4))
    (tmp_path / "c.png").write_bytes(content)
    with pytest.raises(DatasetError, match="c.png"):
        load_image_set(tmp_path)


def test_image_folder_names_an_image_of_another_size(tmp_path):
    rng = np.random.default_rng(5)
    _write_folder(tmp_path, ["a.png", "b.png"], rng)
    cv2.imwrite(str(tmp_path / "c.png"), _texture(rng, 24, 30))
    with pytest.raises(DatasetError, match=r"c\.png is 30x24"):
        load_image_set(tmp_path)


def test_image_folder_views_are_evenly_spaced(tmp_path):
    _write_folder(tmp_path, [f"frame_{k}.jpg" for k in range(9)], np.random.default_rng(6))
    assert load_image_set(tmp_path, views=3).names == ["frame_0.jpg", "frame_4.jpg", "frame_8.jpg"]
    assert len(load_image_set(tmp_path, views=20)) == 9


# ----------------------------------------------------------------- dispatcher

def test_unknown_or_missing_source_lists_the_formats(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    for source in (tmp_path, tmp_path / "missing"):
        with pytest.raises(DatasetError, match="poses_bounds.npy") as info:
            load_image_set(source)
        assert describe_formats() in str(info.value) and "\n" not in str(info.value)  # one line


@pytest.mark.skipif(importlib.util.find_spec("nvs_ros.io.bundled_scene") is None,
                    reason="nvs_ros.io.bundled_scene not written yet")
def test_bundled_scene_source():
    image_set = load_image_set("bundled:object:arc", max_side=48, views=3)
    assert image_set.images_NHW3.shape == (3, 48, 48, 3) and image_set.has_ground_truth
    assert "object" in image_set.source and "arc" in image_set.source
    assert load_image_set("bundled", max_side=32, views=2).source.startswith("bundled:room/ring")
    with pytest.raises(DatasetError, match="variant"):
        load_image_set("bundled:castle")


@needs_data
def test_features_see_the_same_views_at_a_size_they_can_use():
    """--init features chains the views trained at 128 px from the stored 640x480 images (at 128
    px SIFT finds too little on the temple), with the intrinsics of that size."""
    small = load_image_set(DATA / "middlebury_temple_ring", max_side=128, views=5)
    larger = load_for_features(DATA / "middlebury_temple_ring", small, views=5)
    assert larger.names == small.names
    assert larger.images_NHW3.shape[1:3] == (480, 640)
    np.testing.assert_allclose(larger.K_N33[:, :2], small.K_N33[:, :2] * 5.0, rtol=1e-3, atol=3.0)
    np.testing.assert_array_equal(larger.c2w_N44, small.c2w_N44)


def test_the_bundled_scene_is_chained_as_it_was_rendered():
    rendered = load_image_set("bundled:object", max_side=32, views=3)
    assert load_for_features("bundled:object", rendered, views=3) is rendered
