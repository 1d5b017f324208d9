"""nvs_ros.io.camera_models: lenses from CameraInfo and camera.yaml, undistorted where images enter
(bags, image folders) to the pinhole view the bundled room renders; skipping it fails."""

import logging
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from lens_scene import LENSES, blurred_error, fisheye_camera, lens_views, pinhole_views, plumb_bob_camera

from nvs_ros.core.cameras import scale_intrinsics
from nvs_ros.io.bag_writer import write_bag
from nvs_ros.io.bags import read_bag
from nvs_ros.io.camera_models import (CameraModel, camera_from_calibration, camera_from_info,
                                      is_rectified_topic, normalized_coordinates, undistorter)
from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.errors import CameraModelError, UncalibratedCameraError

RESTORED = 3.0
"""Blurred pixel error (0-255) of an undistorted view against the pinhole render: measured
1.8-2.4 for both lenses at 96 px, below a half-pixel shift (~2.5)."""
IGNORED = 7.0
"""The same error with the lens ignored (the raw image taken as pinhole K): measured 9.6-13."""


@pytest.fixture(scope="module", params=sorted(LENSES))
def lens(request):
    camera = LENSES[request.param]()
    return camera, lens_views(camera)


def camera_info(camera: CameraModel, **fields) -> SimpleNamespace:
    """A CameraInfo as rclpy and rosbags messages have it (same field names)."""
    roi = SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0, do_rectify=False)
    info = dict(width=camera.width, height=camera.height, k=list(camera.k), d=list(camera.d),
                distortion_model=camera.lens, r=list(np.eye(3).ravel()),
                p=list(np.hstack([camera.K_33, np.zeros((3, 1))]).ravel()), binning_x=0, binning_y=0, roi=roi)
    info.update(fields)
    return SimpleNamespace(**info)


def test_undistortion_gives_the_pinhole_view_back_and_skipping_it_does_not(lens):
    camera, views = lens
    to_pinhole = undistorter(camera)
    assert to_pinhole.valid_fraction > 0.999  # alpha / balance 0: only valid pixels remain
    restored_N3HW = pinhole_views(to_pinhole.K_33, camera.width, camera.height)
    as_pinhole_N3HW = pinhole_views(camera.K_33, camera.width, camera.height)
    for i, raw_HW3 in enumerate(views.images_NHW3):
        assert blurred_error(to_pinhole(raw_HW3), restored_N3HW[i]) < RESTORED
        assert blurred_error(raw_HW3, as_pinhole_N3HW[i]) > IGNORED


def test_maps_are_built_once_per_camera():
    assert undistorter(plumb_bob_camera()) is undistorter(plumb_bob_camera())
    assert undistorter(plumb_bob_camera()) is not undistorter(plumb_bob_camera(size=64))


@pytest.mark.parametrize("lens, D", [("plumb_bob", [-0.3, 0.05, 0.001, -0.002, 0.01]),
                                     ("rational_polynomial", [0.2, -0.1, 0.001, 0.002, 0.01, 0.4, -0.05, 0.02]),
                                     ("equidistant", [-0.02, 0.004, -0.001, 0.0002])])
def test_each_lens_is_inverted_exactly(lens, D):
    camera = CameraModel.create(plumb_bob_camera().K_33, 96, 96, lens, D)
    xy_P2 = np.stack(np.meshgrid(np.linspace(-0.45, 0.45, 7), np.linspace(-0.4, 0.4, 5)), -1).reshape(-1, 2)
    xyz_P13 = np.concatenate([xy_P2, np.ones((len(xy_P2), 1))], axis=1)[:, None, :]
    project = cv2.fisheye.projectPoints if lens == "equidistant" else cv2.projectPoints
    uv_P12, _ = project(xyz_P13, np.zeros(3), np.zeros(3), camera.K_33, camera.D)
    np.testing.assert_allclose(normalized_coordinates(camera, uv_P12.reshape(-1, 2)), xy_P2, atol=1e-9)


def test_rational_polynomial_with_zero_k4_to_k6_is_plumb_bob():
    plumb_bob = plumb_bob_camera()
    rational = CameraModel.create(plumb_bob.K_33, 96, 96, "rational_polynomial", [*plumb_bob.d, 0, 0, 0])
    np.testing.assert_allclose(undistorter(rational).K_33, undistorter(plumb_bob).K_33)


def test_camera_info_lens_binning_and_roi_as_rep_104_says():
    full = fisheye_camera(size=96)
    assert camera_from_info(camera_info(full)) == full
    # The published image is the ROI x 16..79, y 8..71 of the sensor, binned 2 x 2: 32 x 32 pixels.
    roi = SimpleNamespace(x_offset=16, y_offset=8, width=64, height=64, do_rectify=False)
    binned = camera_from_info(camera_info(full, roi=roi, binning_x=2, binning_y=2))
    assert (binned.width, binned.height, binned.lens, binned.d) == (32, 32, full.lens, full.d)
    uv_P2 = np.array([[0.0, 0.0], [31.0, 31.0], [10.25, 20.5]])
    uv_full_P2 = (uv_P2 + 0.5) * 2 - 0.5 + [16, 8]  # pixel centres of the 2 x 2 super-pixels
    np.testing.assert_allclose(normalized_coordinates(binned, uv_P2), normalized_coordinates(full, uv_full_P2),
                               atol=1e-9)


def test_uncalibrated_unknown_and_rectified_camera_info():
    camera = plumb_bob_camera()
    with pytest.raises(UncalibratedCameraError, match=r"uncalibrated \(K\[0\] = 0"):
        camera_from_info(camera_info(camera, k=[0.0] * 9))
    with pytest.raises(CameraModelError, match="'kannala' is not supported; supported: pinhole, plumb_bob"):
        camera_from_info(camera_info(camera, distortion_model="kannala"))
    with pytest.raises(CameraModelError, match="rational_polynomial takes 8 distortion coefficients, got 5"):
        camera_from_info(camera_info(camera, distortion_model="rational_polynomial"))
    # Zero D is a pinhole camera whatever the model's name (simulators publish plumb_bob zeros, some drivers "").
    assert camera_from_info(camera_info(camera, d=[0.0] * 5)).lens == "pinhole"
    assert camera_from_info(camera_info(camera, d=[], distortion_model="")).lens == "pinhole"
    # image_proc's image_rect comes with the raw camera's CameraInfo: its images are P's pinhole camera.
    assert is_rectified_topic("/cam/image_rect") and is_rectified_topic("/cam/image_rect_color/compressed")
    assert not is_rectified_topic("/cam/image_raw")
    P_34 = np.hstack([undistorter(camera).K_33, np.zeros((3, 1))])
    rectified = camera_from_info(camera_info(camera, p=list(P_34.ravel())), rectified=True)
    assert rectified.lens == "pinhole"
    np.testing.assert_allclose(rectified.K_33, P_34[:, :3])


def test_bag_with_a_lens_reads_back_undistorted(lens, tmp_path):
    camera, views = lens
    frames = read_bag(write_bag(views, tmp_path / "bag", camera=camera))
    to_pinhole = undistorter(camera)
    restored_N3HW = pinhole_views(to_pinhole.K_33, camera.width, camera.height)
    for i, image_HW3 in enumerate(frames.image_set.images_NHW3):
        assert blurred_error(image_HW3, restored_N3HW[i]) < RESTORED
        np.testing.assert_allclose(frames.image_set.K_N33[i], to_pinhole.K_33)
    # Downscaled after undistortion, with the intrinsics to match.
    halved = read_bag(tmp_path / "bag", max_side=camera.width // 2).image_set
    np.testing.assert_allclose(halved.K_N33[0], scale_intrinsics(to_pinhole.K_33, 0.5, 0.5))


def test_image_folder_with_a_camera_yaml_is_undistorted(tmp_path, caplog):
    camera = plumb_bob_camera()
    views = lens_views(camera)
    for name, image_HW3 in zip(views.names, views.images_NHW3):
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(image_HW3, cv2.COLOR_RGB2BGR))
    # camera_calibration's output, calibrated at twice the resolution of the stored images.
    K2_33 = scale_intrinsics(camera.K_33, 2.0, 2.0)
    (tmp_path / "camera.yaml").write_text(
        f"image_width: {2 * camera.width}\nimage_height: {2 * camera.height}\ncamera_name: cam\n"
        f"camera_matrix:\n  rows: 3\n  cols: 3\n  data: {K2_33.ravel().tolist()}\n"
        f"distortion_model: plumb_bob\ndistortion_coefficients:\n  rows: 1\n  cols: 5\n"
        f"  data: {list(camera.d)}\n")
    with caplog.at_level(logging.INFO):
        image_set = load_image_set(tmp_path)
    assert "images are undistorted" in caplog.text
    to_pinhole = undistorter(camera_from_calibration({"k": K2_33.ravel().tolist(), "width": 192, "height": 192,
                                                      "distortion_model": "plumb_bob", "d": camera.d}
                                                     ).resized(camera.height, camera.width))
    np.testing.assert_allclose(image_set.K_N33[0], to_pinhole.K_33)
    restored_N3HW = pinhole_views(to_pinhole.K_33, camera.width, camera.height)
    for i, image_HW3 in enumerate(image_set.images_NHW3):
        assert blurred_error(image_HW3, restored_N3HW[i]) < RESTORED
