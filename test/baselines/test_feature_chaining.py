"""Pose chaining on an ordered textured stream: accurate on the bundled forward arc, a frame that
shows nothing usable stays unregistered without breaking the chain, frames the stream reaches
before their neighbours are placed from them afterwards, by PnP before any essential matrix, and
a frame whose partners do not confirm its pose is left out."""

import os
from pathlib import Path

import numpy as np
import pytest

from scipy.spatial.transform import Rotation

from nvs_ros.baselines.feature_chaining import ChainingConfig, _build_chain, chain_poses
from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.evaluation import score_estimates

DATA = Path(os.environ.get("NVS_ROS_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))


def test_an_ordered_textured_stream_is_chained() -> None:
    """Measured: 12/12, RRA@5 100%, median relative rotation error 0.11 degrees (0.75 without the
    bundle adjustment), in ~2.5 s."""
    stream = load_image_set("bundled:room:arc", max_side=128, views=12)
    estimates = chain_poses(stream.without_ground_truth())
    metrics = score_estimates(estimates, stream)
    assert metrics["registered"] == 12 and metrics["RRA@5"] == 1.0, metrics
    assert metrics["median_relative_rotation_error_deg"] < 0.3
    np.testing.assert_allclose(estimates.c2w_N44[0], np.eye(4), atol=1e-12)  # the first camera is the world


def test_a_blank_frame_stays_unregistered_and_the_chain_goes_on() -> None:
    stream = load_image_set("bundled:room:arc", max_side=128, views=12).without_ground_truth()
    stream.images_NHW3[5] = 128  # a grey frame: no features
    estimates = chain_poses(stream, ChainingConfig(bundle_every=0))
    assert estimates.registered_N.tolist() == [True] * 5 + [False] + [True] * 6
    assert np.isnan(estimates.c2w_N44[5]).all() and np.isfinite(estimates.c2w_N44[6:]).all()


def test_a_frame_reached_before_its_neighbours_is_placed_from_them() -> None:
    """The view opposite the first ones on the ring comes fourth, as a scan's row change brings a
    view no earlier frame shares anything with (measured without the second pass: it and five
    frames after the gap stay unregistered); ~2 s."""
    ring = load_image_set("bundled", max_side=128, views=16)
    jumpy = ring.subset([0, 1, 2, 8, *[i for i in range(3, 16) if i != 8]])
    metrics = score_estimates(chain_poses(jumpy.without_ground_truth()), jumpy)
    assert metrics["registered"] == 16 and metrics["RRA@15"] == 1.0, metrics


def test_frames_left_over_are_placed_sweep_after_sweep() -> None:
    """Three views from the far side of the ring come right after the first three: each can only
    be placed once a neighbour is, so the frames left over are tried again while any is placed
    (one sweep in index order left 3 of 16 out: RRA@5 56%, CCA 62%); ~2 s."""
    ring = load_image_set("bundled", max_side=128, views=16)
    jumpy = ring.subset([0, 1, 2, 10, 9, 8, 3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
    metrics = score_estimates(chain_poses(jumpy.without_ground_truth()), jumpy)
    assert metrics["registered"] == 16 and metrics["RRA@5"] == 1.0 and metrics["CCA@0.1"] == 1.0, metrics


def test_a_frame_its_partners_do_not_confirm_is_left_out() -> None:
    """A pose turned 10 degrees about its own centre no longer explains the matches it shares
    with its partners, and only that frame loses their confirmation."""
    stream = load_image_set("bundled:room:arc", max_side=128, views=12).without_ground_truth()
    chain = _build_chain(stream, ChainingConfig())
    assert chain.confirmed_frames().all()
    c2w_44 = np.linalg.inv(chain.w2c_N44[5])
    c2w_44[:3, :3] = Rotation.from_euler("y", 10, degrees=True).as_matrix() @ c2w_44[:3, :3]
    chain.w2c_N44[5] = np.linalg.inv(c2w_44)
    assert chain.confirmed_frames().tolist() == [True] * 5 + [False] + [True] * 6


@pytest.mark.skipif(not DATA.is_dir(), reason=f"shared datasets not found at {DATA}")
def test_views_in_no_order_wait_for_pnp_instead_of_an_essential_matrix() -> None:
    """NeRF chair's views are scattered over the sphere in no order: a frame PnP cannot place
    yet waits for the leftover sweeps. Chaining such frames through essential matrices as they
    came (translation without scale, each from one partner) gave 50 placed, RRA@15 32%, CCA@0.1
    0%; now 50, 100%, 100%; ~25 s at 400 px."""
    chair = load_image_set(DATA / "nerf_synthetic_chair", max_side=400, views=50)
    metrics = score_estimates(chain_poses(chair.without_ground_truth()), chair)
    assert metrics["registered"] == 50 and metrics["RRA@15"] == 1.0 and metrics["CCA@0.1"] == 1.0, metrics


@pytest.mark.skipif(not DATA.is_dir(), reason=f"shared datasets not found at {DATA}")
def test_the_temple_ring_is_chained_without_drifting_along_it() -> None:
    """The temple's 16 views are not in ring order: left over after the first pass, those PnP
    can place go first. Placed in index order, two went through an essential matrix (no scale of
    its own) and the centres built on them drifted: CCA@0.1 6%, ATE 0.21 (scene 0.6). Now 100%,
    ATE 0.004; ~20 s at 640 px."""
    temple = load_image_set(DATA / "middlebury_temple_ring", max_side=640, views=16)
    metrics = score_estimates(chain_poses(temple.without_ground_truth()), temple)
    assert metrics["registered"] == 16 and metrics["RRA@5"] == 1.0, metrics
    assert metrics["CCA@0.1"] == 1.0 and metrics["ATE"] < 0.02, metrics
