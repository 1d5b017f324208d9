"""nvs_ros.app.scene_saving: what ~/save writes says whether the round's poses may be trusted."""

import numpy as np

from nvs_ros.app.scene_saving import estimates_from_poses
from nvs_ros.core.live_scene import KeyframePoses


def _poses() -> KeyframePoses:
    c2w_N44 = np.repeat(np.eye(4)[None], 3, axis=0)
    c2w_N44[2] = np.nan  # a keyframe without a pose
    return KeyframePoses(names=["a", "b", "c"], stamps_ns=[1, 2, 3], c2w_N44=c2w_N44,
                         confidence_N=np.array([0.9, 0.7, 0.8]), K_N33=np.repeat(np.eye(3)[None], 3, axis=0),
                         sizes_N2=np.full((3, 2), 64), verdict="converged")


def test_trusted_poses_keep_their_confidence_and_untrusted_ones_get_none():
    trusted = estimates_from_poses(_poses())
    assert trusted.registered_N.tolist() == [True, True, False]
    np.testing.assert_allclose(trusted.confidence_N, [0.9, 0.7, 0.0])
    untrusted = estimates_from_poses(_poses(), trusted=False)
    assert untrusted.registered_N.tolist() == [True, True, False]  # placed, as the round left them
    np.testing.assert_allclose(untrusted.confidence_N, 0.0)
    np.testing.assert_array_equal(untrusted.c2w_N44[:2], trusted.c2w_N44[:2])
