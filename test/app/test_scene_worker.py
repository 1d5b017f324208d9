"""The scene worker with a real (tiny) LiveScene, in process (no DDS): queueing, requests, products."""

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tiny_engine import TINY

from nvs_ros.core.live_scene_config import LiveSceneConfig
from nvs_ros.io.bundled_scene import render_bundled_scene
from nvs_ros.app.scene_worker import QueuedKeyframe, RenderRequest, SceneWorker, TrackRequest
from nvs_ros.runtime.backend import RuntimeConfig

TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def scene():
    return render_bundled_scene("room", "ring", num_views=6, size=32)


def keyframe(scene, i: int, generation: int = 0) -> QueuedKeyframe:
    return QueuedKeyframe(scene.images_NHW3[i], scene.K_N33[i], 1000 + i, f"frame_{i}", generation)


def wait_until(predicate, timeout_s: float = TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def test_full_queue_drops_the_oldest_and_counts_it(scene):
    worker = SceneWorker(LiveSceneConfig(min_keyframes=4), queue_size=3)
    for i in range(5):  # not started: nothing is taken from the queue
        worker.offer_keyframe(keyframe(scene, i))
    assert worker.queue_length == 3 and worker.stats.dropped_keyframes == 2
    worker.start()
    try:
        assert wait_until(lambda: worker.stats.keyframes_added == 3)
        assert worker.stats.status.keyframes == 3 and not worker.stats.status.ready
    finally:
        worker.stop()


def test_requests_before_training_fail_or_are_refused_and_reset_drops_stale_frames(scene):
    worker = SceneWorker(LiveSceneConfig(min_keyframes=4))
    worker.start()
    try:
        with pytest.raises(RuntimeError, match="nothing to save yet"):
            worker.request_save(Path("/nonexistent")).result(TIMEOUT_S)
        worker.request_render(RenderRequest(scene.K_N33[0], scene.c2w_N44[0], 32, 32, 0))
        assert wait_until(lambda: worker.stats.renders_refused == 1)
        worker.offer_keyframe(keyframe(scene, 0))
        assert wait_until(lambda: worker.stats.keyframes_added == 1)
        assert "scene reset" in worker.request_reset().result(TIMEOUT_S)
        assert worker.generation == 1 and worker.take_products().cleared
        worker.offer_keyframe(keyframe(scene, 1, generation=0))  # offered before the reset: dropped
        worker.offer_keyframe(keyframe(scene, 2, generation=1))
        assert wait_until(lambda: worker.stats.status is not None and worker.stats.status.keyframes == 1
                          and worker.queue_length == 0)
        assert worker.stats.keyframes_added == 1
    finally:
        worker.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        worker.request_reset().result(TIMEOUT_S)


def test_trained_scene_hands_over_poses_cloud_latest_view_and_renders(scene, tmp_path):
    calls = []
    worker = SceneWorker(LiveSceneConfig(min_keyframes=4, round_budget_s=2.0), slice_s=0.3,
                         cloud_points=500, on_products=lambda: calls.append(time.monotonic()))
    for i in range(6):
        worker.offer_keyframe(keyframe(scene, i))
    worker.start()
    try:
        outboxes = []
        assert wait_until(lambda: outboxes.append(worker.take_products()) or any(o.cloud for o in outboxes))
        first = next(o for o in outboxes if o.cloud is not None)
        assert calls and len(first.poses.names) == 6 and np.isfinite(first.poses.c2w_N44).all()
        assert first.cloud[0].dtype == np.float32 and first.cloud[1].dtype == np.uint8
        assert len(first.cloud[0]) <= 500
        newest = int(np.argmax(first.poses.stamps_ns))
        assert first.latest_view.stamp_ns == 1005 and first.latest_view.rgb_HW3.shape == (32, 32, 3)
        np.testing.assert_allclose(first.latest_view.c2w_44, first.poses.c2w_N44[newest])
        assert worker.stats.first_poses_after_s > 0 and worker.stats.first_cloud_after_s > 0

        worker.request_render(RenderRequest(first.poses.K_N33[0], first.poses.c2w_N44[0], 24, 16, 77))
        assert wait_until(lambda: outboxes.append(worker.take_products()) or any(o.rendered for o in outboxes))
        rendered = next(o.rendered for o in outboxes if o.rendered is not None)
        assert rendered.stamp_ns == 77 and rendered.rgb_HW3.shape == (16, 24, 3)
        assert rendered.depth_HW.shape == (16, 24) and rendered.depth_HW.dtype == np.float32

        summary = worker.request_save(tmp_path / "out").result(TIMEOUT_S)
        assert "poses.json" in summary and (tmp_path / "out" / "poses_tum.txt").is_file()
        assert worker.stats.last_error == ""
    finally:
        worker.stop()


def test_renders_tracking_and_saves_are_answered_during_a_full_round(scene, tmp_path):
    """A full round is one long call; render, tracking and save requests are answered between its steps
    from the previous round's scene, not a round later (stats.status changes only when the
    round is over, so it still shows round 1 when they are answered)."""
    worker = SceneWorker(LiveSceneConfig(min_keyframes=4, round_budget_s=4.0, regrow_factor=1.5), slice_s=0.2,
                         cloud_points=200)
    worker.start()
    try:
        for i in range(4):
            worker.offer_keyframe(keyframe(scene, i))
        assert wait_until(lambda: worker.stats.status is not None and worker.stats.status.ready)
        for i in (4, 5):  # 6 >= 1.5 x 4 keyframes: the next slice is a second full round
            worker.offer_keyframe(keyframe(scene, i))
        assert wait_until(lambda: worker.stats.keyframes_added == 6)
        time.sleep(0.5)
        worker.request_render(RenderRequest(scene.K_N33[0], scene.c2w_N44[0], 32, 32, 7))
        worker.request_tracking(TrackRequest(scene.images_NHW3[5], scene.K_N33[5], 8))
        summary = worker.request_save(tmp_path / "saved").result(TIMEOUT_S)
        assert wait_until(lambda: worker.stats.renders == 1 and not worker.tracking_pending)
        # answered while the second round still runs (a wall-clock bound would measure the CPU's load)
        assert worker.stats.status.rounds == 1
        assert "poses.json" in summary and (tmp_path / "saved" / "scene.pt").is_file()
        verdict = json.loads((tmp_path / "saved" / "run.json").read_text())["verdict"]
        assert verdict["status"] in ("converged", "unconfirmed", "unconverged") and isinstance(verdict["trusted"], bool)
        products = worker.take_products()
        assert products.rendered.stamp_ns == 7 and products.tracked.stamp_ns == 8
        assert wait_until(lambda: worker.stats.status.rounds == 2)
    finally:
        worker.stop()


def test_tracking_poses_the_newest_frame_once_the_scene_is_ready_and_rejects_a_foreign_one(scene):
    """Tracking requests wait for the first round (kept, not refused), a newer one replaces one
    not yet served, and the result carries the request's stamp; a frame of no scene is rejected.
    The round is the tests' tiny engine, counted in steps: a scene trained for a few steps (what
    a time budget on a busy machine may give) still renders a blur that lets noise pass as a fit.
    The encoder pass runs on ONNX Runtime, as the node's `auto` chooses on a CPU."""
    config = LiveSceneConfig(min_keyframes=4, round_iterations=300, trainer=TINY)
    worker = SceneWorker(config, slice_s=0.3, cloud_points=200,
                         runtime=RuntimeConfig(backend="onnxruntime", threads=1))
    for i in range(6):
        worker.offer_keyframe(keyframe(scene, i))
    worker.request_tracking(TrackRequest(scene.images_NHW3[1], scene.K_N33[1], 2001))
    worker.request_tracking(TrackRequest(scene.images_NHW3[2], scene.K_N33[2], 2002))
    assert worker.tracking_pending
    worker.start()
    try:
        outboxes = []
        assert wait_until(lambda: outboxes.append(worker.take_products()) or any(o.tracked for o in outboxes),
                          2 * TIMEOUT_S)
        (tracked,) = [o.tracked for o in outboxes if o.tracked is not None]
        assert tracked.stamp_ns == 2002 and worker.stats.status.ready  # the replaced request was never served
        assert worker.stats.inference_backend == "onnxruntime (CPUExecutionProvider)"
        assert worker.stats.tracked_frames + worker.stats.tracking_rejected == 1
        assert tracked.accepted and tracked.c2w_44.shape == (4, 4) and np.isfinite(tracked.c2w_44).all()
        assert 0 < tracked.register_s <= tracked.latency_s and tracked.scale_source is None
        assert wait_until(lambda: not worker.tracking_pending)

        noise_HW3 = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        worker.request_tracking(TrackRequest(noise_HW3, scene.K_N33[0], 2003))
        outboxes = []
        assert wait_until(lambda: outboxes.append(worker.take_products()) or any(o.tracked for o in outboxes))
        foreign = next(o.tracked for o in outboxes if o.tracked is not None)
        assert foreign.stamp_ns == 2003 and not foreign.accepted and foreign.confidence < 0.5
        assert worker.stats.tracking_rejected >= 1 and worker.stats.last_tracking_confidence == foreign.confidence
    finally:
        worker.stop()


def test_a_short_capture_starts_its_first_round_once_no_keyframe_has_come_for_idle_round_s(scene):
    """min_keyframes 8, six keyframes come and no more: after idle_round_s the first round
    starts with them. Two are too few to ever start; the status says what it waits for."""
    config = LiveSceneConfig(min_keyframes=8, idle_round_s=1.0, round_iterations=50, trainer=TINY)
    worker = SceneWorker(config, slice_s=0.2)
    worker.start()
    try:
        for i in range(2):
            worker.offer_keyframe(keyframe(scene, i))
        assert wait_until(lambda: worker.stats.status is not None and worker.stats.status.keyframes == 2)
        time.sleep(1.5)
        status = worker.stats.status
        assert not status.ready and status.waiting_for == \
            "6 more keyframe(s) (8), or 1 more and 1 s without a new one", status.waiting_for
        for i in range(2, 6):
            worker.offer_keyframe(keyframe(scene, i))
        assert wait_until(lambda: worker.stats.status.keyframes == 6)
        waiting = worker.stats.status.waiting_for
        assert waiting.startswith("2 more keyframe(s) (8), or ") and waiting.endswith(" s more without a new one")
        assert wait_until(lambda: worker.stats.status.ready)
        assert worker.stats.status.rounds == 1 and worker.stats.status.waiting_for == ""
        assert worker.stats.status.keyframes == 6
    finally:
        worker.stop()
