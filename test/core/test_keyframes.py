from pathlib import Path

import numpy as np
import pytest

from nvs_ros.baselines.feature_tracking import CornerTracking
from nvs_ros.core.keyframes import KeyframeConfig, KeyframeSelector, gray_thumbnail, sharpness
from nvs_ros.io.datasets import load_image_set

TEMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "middlebury_temple_ring"


@pytest.fixture(scope="module")
def ring():
    return load_image_set("bundled", max_side=96, views=48)


def box_blur(image_HW3: np.ndarray, radius: int) -> np.ndarray:
    padded = np.pad(image_HW3.astype(np.float32), ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    out = np.zeros(image_HW3.shape, np.float32)
    size = 2 * radius + 1
    for dy in range(size):
        for dx in range(size):
            out += padded[dy: dy + image_HW3.shape[0], dx: dx + image_HW3.shape[1]]
    return (out / size**2).astype(np.uint8)


def test_blur_lowers_sharpness_and_blurred_frames_are_rejected(ring):
    image = ring.images_NHW3[0]
    assert sharpness(box_blur(image, 3)) < 0.3 * sharpness(image)
    selector = KeyframeSelector()
    for i in range(5):
        selector.consider(("sharp", i), ring.images_NHW3[i * 8])
    decision = selector.consider("blurred", box_blur(ring.images_NHW3[45], 3))
    assert not decision.accepted and decision.reason == "blurred"


def test_a_repeated_frame_is_not_new_but_a_far_view_is(ring):
    selector = KeyframeSelector()
    assert selector.consider(0, ring.images_NHW3[0]).accepted
    assert not selector.consider(1, ring.images_NHW3[0].copy()).accepted
    assert selector.consider(24, ring.images_NHW3[24]).accepted  # the opposite side of the ring
    assert selector.keys == [0, 24]


def test_a_slow_pass_around_the_ring_keeps_spread_out_keyframes():
    ring = load_image_set("bundled", max_side=96, views=96)  # 3.75 degrees apart
    selector = KeyframeSelector(KeyframeConfig(capacity=96))
    accepted = [i for i in range(len(ring)) if selector.consider(i, ring.images_NHW3[i]).accepted]
    assert 12 <= len(accepted) <= 64  # measured 44: about one per 7.5 degrees
    gaps = np.diff(accepted + [accepted[0] + len(ring)])
    assert gaps.max() <= 6  # no part of the ring (> 22 degrees) left without a keyframe


def test_a_still_camera_adds_nothing_but_slow_change_is_sampled_when_overdue(ring):
    selector = KeyframeSelector(KeyframeConfig(max_frames_between=10))
    for i in range(40):
        selector.consider(("still", i), ring.images_NHW3[0])
    assert selector.keys == [("still", 0)]
    # Frames that change too little to pass the novelty test (measured 1 - NCC ~0.03 here)
    # but more than a still camera's still yield a keyframe when overdue.
    image = ring.images_NHW3[0].astype(np.float32)
    rng = np.random.default_rng(1)
    accepted = []
    for i in range(1, 21):
        changed = np.clip(image + rng.normal(0, 60, image.shape), 0, 255).astype(np.uint8)
        if selector.consider(("changing", i), changed).accepted:
            accepted.append(i)
    # The first changed frame comes 40 frames after the last keyframe: overdue at once.
    assert accepted == [1, 11]


def test_full_buffer_evicts_a_redundant_keyframe_and_keeps_coverage(ring):
    selector = KeyframeSelector(KeyframeConfig(capacity=6, min_novelty=0.0))
    evicted = []
    for i in range(0, 48, 2):
        decision = selector.consider(i, ring.images_NHW3[i])
        if decision.evicted is not None:
            evicted.append(decision.evicted)
    assert len(selector) == 6 and len(evicted) == 24 - 6
    kept = sorted(selector.keys)
    assert 46 in kept  # the newest is never evicted
    gaps = np.diff(kept + [kept[0] + 48])
    assert gaps.max() <= 20  # kept keyframes still spread around the ring


def test_with_poses_motion_decides_novelty(ring):
    selector = KeyframeSelector(KeyframeConfig(min_translation=0.5, min_rotation_deg=30.0))
    c2w = ring.c2w_N44
    assert selector.consider(0, ring.images_NHW3[0], c2w[0]).accepted
    assert not selector.consider(1, ring.images_NHW3[1], c2w[1]).accepted  # 7.5 degrees away
    assert selector.consider(6, ring.images_NHW3[6], c2w[6]).accepted      # 45 degrees away


def test_thumbnail_is_normalised():
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    thumb = gray_thumbnail(image, 32)
    assert thumb.shape == (24, 32)
    assert abs(thumb.mean()) < 1e-5 and np.linalg.norm(thumb) == pytest.approx(1.0, abs=1e-5)


def test_buffer_keeps_accepted_frames_at_working_resolution_with_scaled_intrinsics(ring):
    from nvs_ros.core.keyframes import KeyframeBuffer

    buffer = KeyframeBuffer(KeyframeConfig(capacity=3, min_novelty=0.0), max_side=48)
    for i in range(0, 48, 12):
        decision = buffer.offer(i, 1000 * i, ring.images_NHW3[i], ring.K_N33[i])
        assert decision.accepted
    frames = buffer.snapshot()
    assert len(frames) == 3 and len(buffer) == 3
    assert [f.stamp_ns for f in frames] == sorted(f.stamp_ns for f in frames)
    assert all(f.image_HW3.shape == (48, 48, 3) for f in frames)
    np.testing.assert_allclose(frames[0].K_33[0, 0], ring.K_N33[0, 0, 0] / 2)
    np.testing.assert_allclose(frames[0].K_33[0, 2], (ring.K_N33[0, 0, 2] + 0.5) / 2 - 0.5)


@pytest.mark.skipif(not TEMPLE.is_dir(), reason="../shared/data/middlebury_temple_ring is absent")
def test_a_sparse_ring_around_an_object_keeps_every_new_view():
    """16 views of an object on black, 22.5 degrees apart, at the node's working size: the
    thumbnails alone see 3 new views; corners that stop tracking see every turn. templeSR0011
    (index 10) is the same view as templeSR0001: it adds nothing."""
    temple = load_image_set(TEMPLE, max_side=128)
    thumbnails = KeyframeSelector(KeyframeConfig(min_untracked=0.0), CornerTracking())
    assert sum(thumbnails.consider(i, image).accepted for i, image in enumerate(temple.images_NHW3)) <= 4
    selector = KeyframeSelector(KeyframeConfig(), CornerTracking())
    decisions = [selector.consider(i, image) for i, image in enumerate(temple.images_NHW3)]
    assert [i for i, d in enumerate(decisions) if not d.accepted] == [10]
    assert {d.reason for d in decisions[1:] if d.accepted} == {"new viewpoint"}


def test_with_the_viewpoint_cue_a_video_still_keeps_a_bounded_spread_out_set():
    ring = load_image_set("bundled", max_side=96, views=96)  # 3.75 degrees apart
    counts = {}
    for min_untracked in (0.0, KeyframeConfig.min_untracked):
        selector = KeyframeSelector(KeyframeConfig(capacity=96, min_untracked=min_untracked), CornerTracking())
        accepted = [i for i in range(len(ring)) if selector.consider(i, ring.images_NHW3[i]).accepted]
        counts[min_untracked] = len(accepted)
        assert np.diff(accepted + [accepted[0] + len(ring)]).max() <= 6
    assert counts[KeyframeConfig.min_untracked] <= counts[0.0] + 8, counts  # about the thumbnails' own


def test_the_viewpoint_cue_abstains_on_a_plain_image_and_ignores_noise():
    rng = np.random.default_rng(0)
    ramp_HW3 = np.repeat(np.linspace(40, 220, 128)[None, :, None], 96, axis=0).repeat(3, axis=2)
    selector = KeyframeSelector(KeyframeConfig(), CornerTracking())
    # A plain image (a smooth ramp and camera noise) has no corners to track: the noise's would
    # not track, yet they tell nothing (no keyframe per frame).
    accepted = [selector.consider(i, np.clip(ramp_HW3 + rng.normal(0, 4, ramp_HW3.shape), 0, 255)
                                  .astype(np.uint8)).accepted for i in range(5)]
    assert accepted == [True, False, False, False, False]
    textured = load_image_set("bundled", max_side=128, views=8).images_NHW3[0]
    selector = KeyframeSelector(KeyframeConfig(), CornerTracking())
    assert selector.consider("first", textured).accepted
    noisy = np.clip(textured + rng.normal(0, 3, textured.shape), 0, 255).astype(np.uint8)
    shifted = np.roll(textured, 3, axis=1)  # a small pan: the corners follow it
    assert not selector.consider("noisy", noisy).accepted and not selector.consider("shifted", shifted).accepted
