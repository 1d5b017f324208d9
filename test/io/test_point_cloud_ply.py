import numpy as np
import pytest

from nvs_ros.io.point_cloud_ply import read_point_cloud_ply, write_point_cloud_ply


def test_points_and_colours_round_trip_through_ply(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(500, 3))
    colors = rng.uniform(size=(500, 3))
    write_point_cloud_ply(tmp_path / "cloud.ply", points, colors)
    assert (tmp_path / "cloud.ply").read_bytes().startswith(b"ply\nformat binary_little_endian")
    points_back, colors_back = read_point_cloud_ply(tmp_path / "cloud.ply")
    np.testing.assert_allclose(points_back, points, atol=1e-12)
    np.testing.assert_allclose(colors_back, colors, atol=1 / 255)  # stored as 8-bit RGB
    assert list(tmp_path.iterdir()) == [tmp_path / "cloud.ply"]  # no temporary file left


def test_non_finite_points_are_refused_and_leave_the_old_file(tmp_path):
    write_point_cloud_ply(tmp_path / "cloud.ply", np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        write_point_cloud_ply(tmp_path / "cloud.ply", np.array([[0.0, np.nan, 0.0]]), np.ones((1, 3)))
    points_back, _ = read_point_cloud_ply(tmp_path / "cloud.ply")
    assert len(points_back) == 2
