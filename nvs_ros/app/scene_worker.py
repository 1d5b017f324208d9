"""The thread that owns the LiveScene: adds keyframes, trains in slices, renders, saves, resets.

The node's callbacks never touch the scene (it is not thread-safe, and training blocks for
seconds). They hand work over instead:
- keyframes go into a bounded queue; when the worker falls behind the oldest one is dropped
  and counted (`dropped_keyframes` on /diagnostics),
- a render request replaces any render request not yet served (only the newest view matters),
  and so does a tracking request (a frame to pose in the trained scene: only the newest frame
  matters); both wait for a ready scene (a render before it is refused, a frame is kept),
- save and reset requests return a Future the service callback waits on.
Between requests the worker trains `slice_s` at a time, so a request waits at most one slice.
A due full round (`round_budget_s` long) is one LiveScene call, but render, tracking and save
requests are answered between its steps from the previous round's scene; a reset waits for its
end. What it produces (keyframe poses after every slice once the scene is ready; point cloud and
the view from the newest keyframe after every full round and after every `round_budget_s` of
continued training; rendered views; tracked frames) is left in an outbox, and `on_products` is
called so the node publishes it from its executor.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nvs_ros.core.diffusion import GenerativeLifting
from nvs_ros.core.live_scene import KeyframePoses, LiveScene, LiveStatus
from nvs_ros.core.live_scene_config import LiveSceneConfig
from nvs_ros.core.round_planning import ChainedPoses
from nvs_ros.app.scene_saving import save_scene_products
from nvs_ros.runtime.backend import RuntimeConfig
from nvs_ros.runtime.encoder_pass import BackendEncoderPass, encoder_pass

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.1
"""How long the worker sleeps when there is nothing to train (new work wakes it at once)."""
ERROR_WAIT_S = 1.0
"""Pause after a failed step, so a persistent failure does not spin."""


@dataclass(frozen=True)
class QueuedKeyframe:
    image_HW3: np.ndarray
    """RGB uint8 at the working resolution."""
    K_33: np.ndarray
    """Intrinsics at that resolution."""
    stamp_ns: int
    name: str
    generation: int
    """The worker's reset count when the frame was offered: frames from before a reset are dropped."""
    prior_c2w_44: np.ndarray | None = None
    """Camera-to-odom at the frame's stamp (OpenCV optical axes, metres) when TF had it: the
    scene's products then come out in the odometry frame and metres."""
    features_HW3: np.ndarray | None = None
    """The frame at the feature chain's resolution, where rounds may start from chained features."""


@dataclass(frozen=True)
class RenderRequest:
    K_33: np.ndarray
    c2w_44: np.ndarray
    """Camera-to-map, OpenCV optical axes (the frame of the keyframe poses)."""
    width: int
    height: int
    stamp_ns: int
    """Stamp of the request, given back with the rendered view."""


@dataclass(frozen=True)
class TrackRequest:
    """A frame to pose in the trained scene (registration: it is not added to the scene)."""

    image_HW3: np.ndarray
    """RGB uint8 at the working resolution."""
    K_33: np.ndarray
    stamp_ns: int
    odometry_c2w_44: np.ndarray | None = None
    """Camera-to-odom at the frame's stamp when the camera is in an odometry tree and TF had it:
    the registration's prior (once odometry fixes the map), and given back with the pose, so
    map -> odom is composed at the frame's stamp."""


@dataclass(frozen=True)
class TrackedFrame:
    c2w_44: np.ndarray
    """Camera-to-map (the frame of the keyframe poses), OpenCV optical axes."""
    confidence: float
    accepted: bool
    """False: the frame does not fit the scene (confidence below the registration's minimum)."""
    stamp_ns: int
    """The request's (the frame's) stamp."""
    latency_s: float
    """From the request (or the first ready scene, when it came before) to its result: the wait
    for the worker plus the registration."""
    register_s: float
    """The registration alone."""
    scale_source: str | None
    """What fixes the map's frame and scale when the frame was posed ("odometry"; None: arbitrary)."""
    odometry_c2w_44: np.ndarray | None = None
    """The request's camera-to-odom at the frame's stamp."""


@dataclass(frozen=True)
class RenderedView:
    rgb_HW3: np.ndarray
    depth_HW: np.ndarray
    """z depth in the poses' units (metres with odometry priors), NaN where nothing was hit."""
    K_33: np.ndarray
    c2w_44: np.ndarray
    stamp_ns: int


@dataclass
class Outbox:
    """Products not yet published; each kind keeps only its newest value."""

    poses: KeyframePoses | None = None
    cloud: tuple[np.ndarray, np.ndarray] | None = None
    latest_view: RenderedView | None = None
    rendered: RenderedView | None = None
    tracked: TrackedFrame | None = None
    cleared: bool = False
    """A reset happened: publishers empty their latched topics first."""


@dataclass
class WorkerStats:
    dropped_keyframes: int = 0
    keyframes_added: int = 0
    renders: int = 0
    renders_refused: int = 0
    tracked_frames: int = 0
    """Tracking requests served whose frame was accepted."""
    tracking_rejected: int = 0
    tracking_against_odometry: int = 0
    """Of the rejected: a pose that contradicted the frame's odometry (core.live_scene's gate)."""
    tracking_register_s_total: float = 0.0
    """Registration time of every served tracking request (accepted or not)."""
    tracking_latency_s_total: float = 0.0
    last_tracking_confidence: float | None = None
    train_s_total: float = 0.0
    first_frame_at: float | None = None
    """time.monotonic() of the first keyframe offered (since start or the last reset)."""
    first_poses_after_s: float | None = None
    first_cloud_after_s: float | None = None
    errors: int = 0
    last_error: str = ""
    failing: bool = False
    """The last step failed (last_error says why); cleared by the next step that succeeds."""
    status: LiveStatus | None = None
    inference_backend: str = "torch"
    """What runs the registration's encoder pass (tracking and new keyframes): "onnxruntime
    (CPUExecutionProvider)"; chosen anew each round (runtime.selection)."""


class SceneWorker:
    """Owns a LiveScene in a thread of its own; every public method is safe from any thread."""

    def __init__(self, config: LiveSceneConfig, *, slice_s: float = 1.0, queue_size: int = 16,
                 cloud_points: int = 20000, on_products: Callable[[], None] = lambda: None,
                 run_info: dict | None = None, chained_poses: ChainedPoses | None = None,
                 runtime: RuntimeConfig | None = None) -> None:
        """`runtime`: the backend of the registration's encoder pass (None: the engine's torch module)."""
        self.config = config
        self.slice_s = slice_s
        self.cloud_points = cloud_points
        self.stats = WorkerStats()
        self._on_products = on_products
        self._run_info = run_info or {}
        self._runtime = runtime
        self._scene = LiveScene(config, chained_poses, None if runtime is None else self._encoder_pass)
        self._queue: deque[QueuedKeyframe] = deque()
        self._queue_size = queue_size
        self._render: RenderRequest | None = None
        self._track: tuple[TrackRequest, float] | None = None
        """The newest unserved tracking request and time.monotonic() when it came."""
        self._tracking = False
        """A tracking request is being served."""
        self._ready_at: float | None = None
        """time.monotonic() when the scene first became ready (a request's latency starts there
        at the earliest: waiting for the first round is not tracking's)."""
        self._requests: deque[tuple[str, Any, Future]] = deque()
        self._outbox = Outbox()
        self._generation = 0
        self._rounds_published = -1
        self._cloud_train_s = 0.0
        """Training time (stats.train_s_total) when the last cloud was made."""
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nvs_scene_worker", daemon=True)

    # --- called from the node's callbacks ------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop after the current slice; pending save/reset requests fail.

        Waits at most `timeout_s`: a full training round does not stop early, and the thread is
        a daemon, so the process can exit meanwhile (files are only ever written atomically).
        """
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    @property
    def generation(self) -> int:
        """Resets so far; pass it with each keyframe offered."""
        return self._generation

    @property
    def queue_length(self) -> int:
        return len(self._queue)

    def offer_keyframe(self, keyframe: QueuedKeyframe) -> None:
        """Queue a keyframe; drops (and counts) the oldest queued one when the queue is full."""
        with self._wake:
            if self.stats.first_frame_at is None:
                self.stats.first_frame_at = time.monotonic()
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self.stats.dropped_keyframes += 1
            self._queue.append(keyframe)
            self._wake.notify()

    def request_render(self, request: RenderRequest) -> None:
        """Render this view when the worker is next free (replaces an unserved request)."""
        with self._wake:
            self._render = request
            self._wake.notify()

    def request_tracking(self, request: TrackRequest) -> None:
        """Pose this frame once the scene is ready and the worker is next free (replaces an
        unserved request); the result comes in the outbox's `tracked`."""
        with self._wake:
            self._track = (request, time.monotonic())
            self._wake.notify()

    @property
    def tracking_pending(self) -> bool:
        """A tracking request waits or is being served: a pose for a newer frame is on its way."""
        with self._wake:
            return self._track is not None or self._tracking

    def request_save(self, folder: Path) -> "Future[str]":
        """Write the products to `folder`; the Future gives a summary or raises why not."""
        return self._request("save", Path(folder))

    def request_reset(self) -> "Future[str]":
        """Forget every keyframe and the trained scene."""
        return self._request("reset", None)

    def take_products(self) -> Outbox:
        """What was produced since the last call (empty fields: nothing new)."""
        with self._wake:
            outbox, self._outbox = self._outbox, Outbox()
        return outbox

    def _request(self, kind: str, argument: Any) -> Future:
        future: Future = Future()
        if self._stop.is_set():
            future.set_exception(RuntimeError("the scene worker is stopped"))
            return future
        with self._wake:
            self._requests.append((kind, argument, future))
            self._wake.notify()
        return future

    # --- the worker thread ---------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
                self.stats.failing = False
            except Exception as err:  # noqa: BLE001 -- keep the node alive, report it
                error = f"{type(err).__name__}: {err}"
                if error != self.stats.last_error:  # the traceback once, not every second
                    log.exception("scene worker step failed")
                self.stats.errors += 1
                self.stats.last_error, self.stats.failing = error, True
                self._stop.wait(ERROR_WAIT_S)
        self._fail_pending(RuntimeError("the scene worker stopped"))

    def _step(self) -> None:
        self._serve_requests()
        self._add_queued()
        if not self._scene.training_due():
            self.stats.status = self._scene.status()
            with self._wake:  # a tracking request waits for the scene: it wakes nothing
                if not (self._queue or self._requests or self._render or self._stop.is_set()):
                    self._wake.wait(IDLE_WAIT_S)
            return
        started = time.perf_counter()
        status = self._scene.train(self.slice_s, between_steps=self._serve_during_round)
        self.stats.train_s_total += time.perf_counter() - started
        self.stats.status = status
        if status.ready:
            if self._ready_at is None:
                self._ready_at = time.monotonic()
            self._produce(status)

    def _serve_requests(self) -> None:
        with self._wake:
            requests, self._requests = list(self._requests), deque()
            render, self._render = self._render, None
            track = self._take_track()
        self._answer(requests, render, track)

    def _serve_during_round(self) -> None:
        """Between the steps of a full round: renders, tracking and saves are answered at once
        from the previous round's scene (intact until the round ends) instead of a round later;
        resets wait for the round's end (they would take the keyframes from under it)."""
        with self._wake:
            track = self._take_track()
            if self._render is None and track is None and not any(kind == "save" for kind, _, _ in self._requests):
                return
            saves = [request for request in self._requests if request[0] == "save"]
            self._requests = deque(request for request in self._requests if request[0] != "save")
            render, self._render = self._render, None
        self._answer(saves, render, track)

    def _take_track(self) -> tuple[TrackRequest, float] | None:
        """The tracking request to serve now (call holding _wake): none before the scene is
        ready, where it stays for the first pose."""
        if self._track is None or not self._scene.ready:
            return None
        track, self._track = self._track, None
        self._tracking = True
        return track

    def _answer(self, requests: list[tuple[str, Any, Future]], render: RenderRequest | None,
                track: tuple[TrackRequest, float] | None = None) -> None:
        for kind, argument, future in requests:
            try:
                future.set_result(self._save(argument) if kind == "save" else self._reset())
            except Exception as err:  # noqa: BLE001 -- the caller reports it
                future.set_exception(err)
        if render is not None:
            self._serve_render(render)
        if track is not None:
            try:
                self._serve_track(*track)
            finally:
                self._tracking = False

    def _add_queued(self) -> None:
        with self._wake:
            queued, self._queue = list(self._queue), deque()
        for keyframe in queued:
            if keyframe.generation != self._generation:
                continue
            self._scene.add_keyframe(keyframe.image_HW3, keyframe.K_33, keyframe.stamp_ns, keyframe.name,
                                     keyframe.prior_c2w_44, keyframe.features_HW3)
            self.stats.keyframes_added += 1

    def _produce(self, status: LiveStatus) -> None:
        poses = self._scene.keyframe_poses()
        outbox = Outbox(poses=poses)
        if self.stats.first_poses_after_s is None:
            self.stats.first_poses_after_s = self._since_first_frame()
        trained_since = self.stats.train_s_total - self._cloud_train_s
        if status.rounds != self._rounds_published or trained_since >= self.config.round_budget_s:
            # A full round is over, or a round's worth of continued training: the slow products.
            outbox.cloud = self._scene.point_cloud(self.cloud_points)
            outbox.latest_view = self._latest_view(poses)
            self._rounds_published, self._cloud_train_s = status.rounds, self.stats.train_s_total
            if self.stats.first_cloud_after_s is None:
                self.stats.first_cloud_after_s = self._since_first_frame()
        self._deliver(outbox)

    def _latest_view(self, poses: KeyframePoses) -> RenderedView | None:
        finite = [i for i in range(len(poses.names)) if np.isfinite(poses.c2w_N44[i]).all()]
        if not finite:
            return None
        i = max(finite, key=lambda j: poses.stamps_ns[j])
        width, height = (int(v) for v in poses.sizes_N2[i])
        rgb_HW3, depth_HW = self._scene.render(poses.K_N33[i], poses.c2w_N44[i], width, height)
        return RenderedView(rgb_HW3, depth_HW, poses.K_N33[i], poses.c2w_N44[i], int(poses.stamps_ns[i]))

    def _serve_render(self, request: RenderRequest) -> None:
        if not self._scene.ready:
            self.stats.renders_refused += 1
            log.warning("render request ignored: the scene is not trained yet")
            return
        rgb_HW3, depth_HW = self._scene.render(request.K_33, request.c2w_44, request.width, request.height)
        self.stats.renders += 1
        self._deliver(Outbox(rendered=RenderedView(rgb_HW3, depth_HW, request.K_33, request.c2w_44,
                                                   request.stamp_ns)))

    def _serve_track(self, request: TrackRequest, requested_at: float) -> None:
        started = time.perf_counter()
        pose = self._scene.register(request.image_HW3, request.K_33, request.odometry_c2w_44)
        register_s = time.perf_counter() - started
        latency_s = time.monotonic() - max(requested_at, self._ready_at or requested_at)
        tracked = TrackedFrame(pose.c2w_44, pose.confidence, pose.accepted, request.stamp_ns, latency_s, register_s,
                               self._scene.status().scale_source, request.odometry_c2w_44)
        stats = self.stats
        if tracked.accepted:
            stats.tracked_frames += 1
        else:
            stats.tracking_rejected += 1
            stats.tracking_against_odometry += pose.contradicts_prior
        stats.tracking_register_s_total += tracked.register_s
        stats.tracking_latency_s_total += tracked.latency_s
        stats.last_tracking_confidence = tracked.confidence
        self._deliver(Outbox(tracked=tracked))

    def _encoder_pass(self, engine: GenerativeLifting) -> BackendEncoderPass:
        """A round's encoder on the configured backend (its export and start take ~1 s, once per round)."""
        chosen = encoder_pass(engine, self._runtime)
        self.stats.inference_backend = chosen.description
        return chosen

    def _save(self, folder: Path) -> str:
        if not self._scene.ready:
            status = self._scene.status()
            raise RuntimeError(f"nothing to save yet: {status.keyframes} keyframe(s) and the scene is not "
                               f"ready (waiting for {status.waiting_for or 'the first round'})")
        written = save_scene_products(folder, self._scene, self.cloud_points,
                                      {**self._run_info, "status": asdict(self._scene.status())})
        return f"wrote {', '.join(written)} to {folder}"

    def _reset(self) -> str:
        with self._wake:
            dropped = len(self._queue)
            self._queue.clear()
            self._render, self._track = None, None
            self._generation += 1
            self._outbox = Outbox(cleared=True)
        self._scene.reset()
        self._rounds_published, self._cloud_train_s, self._ready_at = -1, 0.0, None
        self.stats = WorkerStats(dropped_keyframes=self.stats.dropped_keyframes)
        self._on_products()
        return f"scene reset ({dropped} queued keyframe(s) dropped)"

    def _deliver(self, outbox: Outbox) -> None:
        with self._wake:
            current = self._outbox
            for name in ("poses", "cloud", "latest_view", "rendered", "tracked"):
                if getattr(outbox, name) is not None:
                    setattr(current, name, getattr(outbox, name))
        self._on_products()

    def _since_first_frame(self) -> float | None:
        first = self.stats.first_frame_at
        return None if first is None else time.monotonic() - first

    def _fail_pending(self, err: Exception) -> None:
        with self._wake:
            requests, self._requests = list(self._requests), deque()
        for _, _, future in requests:
            future.set_exception(err)
