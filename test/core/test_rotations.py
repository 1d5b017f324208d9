"""nvs_ros.core.rotations: one quaternion convention (x, y, z, w; w >= 0) for messages and files."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from nvs_ros.core.errors import InputError
from nvs_ros.core.rotations import quaternion_xyzw, rotation_matrix


def test_round_trip_and_the_sign_is_canonical():
    R_N33 = Rotation.random(50, random_state=0).as_matrix()
    for R_33 in R_N33:
        q_4 = quaternion_xyzw(R_33)
        assert q_4[3] >= 0 and np.isclose(np.linalg.norm(q_4), 1.0)
        np.testing.assert_allclose(rotation_matrix(q_4), R_33, atol=1e-12)
        np.testing.assert_allclose(rotation_matrix(-q_4), R_33, atol=1e-12)  # -q is the same rotation
    np.testing.assert_allclose(quaternion_xyzw(np.eye(3)), [0, 0, 0, 1])
    # a quarter turn about z: (0, 0, sin 45, cos 45)
    np.testing.assert_allclose(quaternion_xyzw(Rotation.from_euler("z", 90, degrees=True).as_matrix()),
                               [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)


def test_unnormalised_quaternions_are_normalised_and_degenerate_ones_refused():
    np.testing.assert_allclose(rotation_matrix([0, 0, 0, 2.0]), np.eye(3))
    for bad in ([0, 0, 0, 0], [np.nan, 0, 0, 1]):
        with pytest.raises(InputError, match="no rotation"):
            rotation_matrix(bad)
