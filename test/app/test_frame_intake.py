"""FrameIntake: what a live frame hands the scene worker (keyframes, tracking) and at what size."""

import numpy as np

from nvs_ros.app.frame_intake import FrameIntake
from nvs_ros.core.keyframes import KeyframeConfig

ODOMETRY_44 = np.diag([1.0, 1.0, 1.0, 1.0])


class FakeWorker:
    """Records what the intake hands over (the SceneWorker calls it makes)."""

    def __init__(self) -> None:
        self.generation = 0
        self.keyframes = []
        self.tracking = []

    def offer_keyframe(self, keyframe) -> None:
        self.keyframes.append(keyframe)

    def request_tracking(self, request) -> None:
        self.tracking.append(request)


def frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (96, 128, 3), dtype=np.uint8)


def take(intake: FrameIntake, index: int, stamp_s: float, seed: int | None = None) -> None:
    K_33 = np.array([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]])
    intake.take(index, frame(index if seed is None else seed), K_33, int(stamp_s * 1e9),
                odometry_prior=lambda stamp_ns: ODOMETRY_44, odometry_pose=lambda stamp_ns: None)


def test_a_keyframe_goes_to_the_worker_at_the_working_size_with_its_prior() -> None:
    worker = FakeWorker()
    intake = FrameIntake(worker, KeyframeConfig(), working_max_side=64, track_rate_hz=0.0)
    take(intake, 0, 1.0)
    (keyframe,) = worker.keyframes
    assert keyframe.image_HW3.shape == (48, 64, 3) and keyframe.name == "frame_000000"
    # halved about pixel centres: c' = (c + 0.5) / 2 - 0.5
    np.testing.assert_allclose(keyframe.K_33, [[50.0, 0, 31.75], [0, 50.0, 23.75], [0, 0, 1]])
    assert keyframe.prior_c2w_44 is ODOMETRY_44 and keyframe.stamp_ns == 1_000_000_000
    K_33, width, height = intake.render_camera
    assert (width, height) == (64, 48) and worker.tracking == []


def test_tracking_at_most_the_rate_by_image_stamps_and_a_jump_back_counts() -> None:
    worker = FakeWorker()
    intake = FrameIntake(worker, KeyframeConfig(), working_max_side=64, track_rate_hz=2.0)
    for index, stamp_s in enumerate([10.0, 10.2, 10.4, 10.5, 10.9, 3.0]):
        take(intake, index, stamp_s, seed=0)
    assert [r.stamp_ns / 1e9 for r in worker.tracking] == [10.0, 10.5, 3.0]


def test_after_a_reset_keyframes_are_selected_anew() -> None:
    worker = FakeWorker()
    intake = FrameIntake(worker, KeyframeConfig(), working_max_side=64, track_rate_hz=0.0)
    take(intake, 0, 1.0, seed=0)
    take(intake, 1, 2.0, seed=0)  # the same image: not a new keyframe
    assert len(worker.keyframes) == 1
    worker.generation = 1
    take(intake, 2, 3.0, seed=0)
    assert len(worker.keyframes) == 2 and worker.keyframes[-1].generation == 1 and len(intake.keyframes) == 1


def test_keyframes_go_along_at_the_chains_size_only_when_asked() -> None:
    worker = FakeWorker()
    FrameIntake(worker, KeyframeConfig(), working_max_side=64, track_rate_hz=0.0, features_max_side=100).take(
        0, frame(0), np.eye(3), 0, odometry_prior=lambda stamp_ns: None, odometry_pose=lambda stamp_ns: None)
    FrameIntake(worker, KeyframeConfig(), working_max_side=64, track_rate_hz=0.0).take(
        0, frame(0), np.eye(3), 0, odometry_prior=lambda stamp_ns: None, odometry_pose=lambda stamp_ns: None)
    assert worker.keyframes[0].features_HW3.shape == (75, 100, 3) and worker.keyframes[0].image_HW3.shape == (48, 64, 3)
    assert worker.keyframes[1].features_HW3 is None
