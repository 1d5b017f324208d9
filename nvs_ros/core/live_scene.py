"""Incremental reconstruction of a live camera: keyframes come in video order, the scene keeps
learning without restarting, and answers with poses, a point cloud and rendered views.

What the ROS node's worker calls (one thread owns a LiveScene; it is not thread-safe):
1. Until `min_keyframes` keyframes are in, nothing is trained; or, with `idle_round_s`, until
   no keyframe has come for that long and at least `min_round_keyframes` are in (a short
   capture, a recording replayed once: what comes is all there is). `status().waiting_for`
   says which.
2. The first round is the full method on the keyframes so far (core.trainer.reconstruct:
   pose distribution, re-assignment, refinement), `round_budget_s` long. Its poses start from
   the keyframes' priors where most have one, else from chained features where the scene was
   given a chain and it places most of them (the field then learns around those poses), else
   they are learnt from the images; a first round whose chain places too few waits while
   keyframes still come (`waiting_for`).
3. Afterwards each `train(seconds)` registers the keyframes that arrived since (one encoder
   pass + direct alignment, core.registration), adds the accepted ones to the scene, and continues
   training field and poses together for `seconds` (core.joint_refinement.JointRefinement). Frames that
   do not fit (low confidence) wait and are tried again by the next full round.
4. When the keyframes have grown by `regrow_factor` since the last full round (or, after a
   chained start, a quarter as many as it had have come and could not be registered), the next
   call runs a full round on all of them (the encoder is retrained from scratch on the larger set,
   the field too): poses learnt from a few frames are not baked into the map.

Keyframes may come with a prior pose (the robot's odometry from TF: camera-to-odom, metric).
The scene itself still lives in the engine's gauge (arbitrary scale), but once two posed
keyframes with priors fix a similarity (core.pose_prior), every product (poses, cloud, renders,
registered frames, depth) is given in the priors' frame and units, and `scale_source` says so.
The similarity is refitted whenever the poses change (a round, new or forgotten keyframes,
continued training), so products always agree with each other.

This module holds the scene's state (keyframes, the trained scene, continued training) and its
products; when a full round runs and how is core.round_planning's, its settings
core.live_scene_config's.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from nvs_ros.core.appearance import thumbnails
from nvs_ros.core.cameras import scale_intrinsics
from nvs_ros.core.diffusion import GenerativeLifting
from nvs_ros.core.errors import InputError, NotReadyError
from nvs_ros.core.image_set import ImageSet, evenly_spaced_indices, resize_images
from nvs_ros.core.joint_refinement import JointRefinement
from nvs_ros.core.live_scene_config import MIN_PRIOR_BASELINE, PRIOR_SOURCE, LiveSceneConfig
from nvs_ros.core.pose_prior import PriorAlignment, align_to_prior
from nvs_ros.core.products import point_cloud
from nvs_ros.core.registration import EncoderPass
from nvs_ros.core.round_planning import (ChainedPoses, chain_left_too_many, regrown, round_config, round_start_poses,
                                         usable_priors, waiting_for)
from nvs_ros.core.scene import Scene
from nvs_ros.core.self_check import CONVERGED, UNCONFIRMED, Verdict
from nvs_ros.core.trainer import reconstruct


@dataclass
class LiveStatus:
    keyframes: int
    posed_keyframes: int
    step: int
    loss: float | None
    rounds: int
    ready: bool
    scale_source: str | None = None
    """Frame and units of the products: "odometry" (the priors'), None (the engine's gauge,
    arbitrary monocular scale)."""
    prior_residual: float | None = None
    """Median distance between the keyframes' aligned centres and their priors (priors' units)."""
    pose_start: str | None = None
    """Where the last full round's poses started: "odometry" (the keyframes' priors), "features"
    (chained), "learnt" (from the images alone); None before the first round."""
    verdict: str | None = None
    """The last full round's judgement of its own poses (core.self_check: "converged",
    "unconfirmed", "unconverged"); None before the first round."""
    verdict_reasons: str = ""
    waiting_for: str = ""
    """Before the first round: what it waits for (empty once training has started)."""

    @property
    def trusted(self) -> bool:
        """Whether the last round's poses may be published as the robot's pose: its self-check
        found them converged, or they are odometry's that a young field has not yet borne out."""
        return self.verdict == CONVERGED or (self.verdict == UNCONFIRMED and self.pose_start == PRIOR_SOURCE)


@dataclass
class KeyframePoses:
    """The posed keyframes, in the products' frame (OpenCV camera-to-world): the priors' frame
    when `scale_source` is set, else the engine's gauge."""

    names: list[str]
    stamps_ns: list[int]
    c2w_N44: np.ndarray
    confidence_N: np.ndarray
    K_N33: np.ndarray
    sizes_N2: np.ndarray
    """(width, height) of each keyframe image, which K refers to."""
    scale_source: str | None = None
    """What fixes frame and scale ("odometry"), None: arbitrary monocular scale."""
    verdict: str | None = None
    """The round's judgement of these poses (LiveStatus.verdict): "unconverged" ones are not to be
    trusted (the node keeps them off TF)."""


@dataclass
class FramePose:
    c2w_44: np.ndarray
    confidence: float
    accepted: bool
    contradicts_prior: bool = False
    """Rejected because it lies outside the gate around its prior pose (`prior_gate`)."""


@dataclass
class _Keyframe:
    name: str
    stamp_ns: int
    image_HW3: np.ndarray
    K_33: np.ndarray
    prior_c2w_44: np.ndarray | None
    features_HW3: np.ndarray | None = None
    """The frame at the feature chain's resolution (None: not kept)."""


class LiveScene:
    def __init__(self, config: LiveSceneConfig = LiveSceneConfig(), chained_poses: ChainedPoses | None = None,
                 encoder_passes: Callable[[GenerativeLifting], EncoderPass] | None = None) -> None:
        """`chained_poses`: the feature chain a full round starts from where the keyframes have
        too few priors (given by the caller: core does not depend on OpenCV); None: learn them.
        `encoder_passes`: what runs each round's encoder when frames are registered (a runtime
        backend, made once per round: the encoder is trained in rounds only); None: torch."""
        self.config = config
        self._chained_poses = chained_poses
        self._encoder_passes = encoder_passes
        self.reset()

    def reset(self) -> None:
        """Forget every keyframe and the trained scene."""
        self._keyframes: list[_Keyframe] = []
        self._posed: list[int] = []
        """Indices into _keyframes of the views in the scene, in the scene's view order."""
        self._confidence: list[float] = []
        self._scene: Scene | None = None
        self._joint: JointRefinement | None = None
        self._images: torch.Tensor | None = None
        self._K: torch.Tensor | None = None
        self._keyframes_at_last_round = 0
        self._unplaced_at_round = 0
        """Keyframes a full round left out (its chain could not place them)."""
        self._rounds = 0
        self._step = 0
        self._loss: float | None = None
        self._pose_start: str | None = None
        self._chain_tried: tuple[tuple[str, ...], np.ndarray | None] | None = None
        """The keyframes' names the feature chain last ran on, and what it gave."""
        self._verdict: Verdict | None = None
        self._alignment: PriorAlignment | None = None
        """Scene gauge -> the priors' frame, fitted to the current poses (None: no priors fix it)."""
        self._generator = torch.Generator().manual_seed(self.config.seed)
        self._last_keyframe_at: float | None = None
        """time.monotonic() when the newest keyframe came."""

    # ------------------------------------------------------------------ input

    def add_keyframe(self, image_HW3: np.ndarray, K_33: np.ndarray, stamp_ns: int, name: str,
                     prior_c2w_44: np.ndarray | None = None, features_HW3: np.ndarray | None = None) -> None:
        """A keyframe (uint8 RGB, intrinsics at its size), optionally with its camera pose from
        the prior source (camera-to-odom, OpenCV optical axes, metric) and the same frame at a
        higher resolution for the feature chain (the working size starves it: the temple ring's
        16 views chain at 640 px and not at 128). Keyframes are kept at the first one's size:
        later ones of another size are resized to it."""
        image_HW3 = np.ascontiguousarray(image_HW3, dtype=np.uint8)
        if image_HW3.ndim != 3 or image_HW3.shape[2] != 3 or min(image_HW3.shape[:2]) < 2:
            raise InputError(f"a keyframe must be an (H, W, 3) image, got {image_HW3.shape}")
        if prior_c2w_44 is not None:
            prior_c2w_44 = np.asarray(prior_c2w_44, dtype=np.float64)
            if prior_c2w_44.shape != (4, 4) or not np.isfinite(prior_c2w_44).all():
                raise InputError(f"a prior pose must be a finite 4x4 matrix, got {prior_c2w_44}")
        K_33 = np.asarray(K_33, dtype=np.float64)
        if self._keyframes:
            h, w = self._keyframes[0].image_HW3.shape[:2]
            if image_HW3.shape[:2] != (h, w):
                sh, sw = image_HW3.shape[:2]
                K_33 = scale_intrinsics(K_33, w / sw, h / sh)
                image_HW3 = resize_images(image_HW3[None], h, w)[0]
            first_features = self._keyframes[0].features_HW3
            if features_HW3 is not None and first_features is not None and features_HW3.shape != first_features.shape:
                features_HW3 = resize_images(features_HW3[None], *first_features.shape[:2])[0]
        self._keyframes.append(_Keyframe(name, int(stamp_ns), image_HW3, K_33, prior_c2w_44, features_HW3))
        self._last_keyframe_at = time.monotonic()
        while len(self._keyframes) > self.config.max_keyframes:
            self._forget(self._most_redundant())

    def _most_redundant(self) -> int:
        """Index of the keyframe to forget: the posed one whose camera centre is nearest to
        another's (before the first round, the oldest)."""
        if self._joint is None or len(self._posed) < 2:
            return 0
        centres_N3 = self._joint.c2w().detach()[:, :3, 3]
        distances_NN = torch.cdist(centres_N3, centres_N3).fill_diagonal_(math.inf)
        return self._posed[int(distances_NN.min(dim=1).values.argmin())]

    def _forget(self, index: int) -> None:
        del self._keyframes[index]
        if index in self._posed:
            row = self._posed.index(index)
            kept = [r for r in range(len(self._posed)) if r != row]
            c2w = self._joint.c2w().detach()[kept]
            del self._posed[row], self._confidence[row]
            self._posed = [i - (i > index) for i in self._posed]
            self._start_joint_training(c2w)
            self._sync_scene()
        else:
            self._posed = [i - (i > index) for i in self._posed]

    # ------------------------------------------------------------------ training

    @property
    def ready(self) -> bool:
        return self._scene is not None

    def training_due(self) -> bool:
        """Whether `train` does work: the scene is trained, or its first round may start."""
        return self.ready or not self.waiting_for()

    def waiting_for(self) -> str:
        """What the first round waits for, in words; empty when it may start (or has)."""
        tried = self._chain_tried
        chain_placed_too_few = tried is not None and tried[1] is None and tried[0] == self._names()
        return waiting_for(len(self._keyframes), self.ready, self._last_keyframe_at, self.config, chain_placed_too_few)

    def _names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self._keyframes)

    def status(self) -> LiveStatus:
        alignment = self._alignment
        return LiveStatus(keyframes=len(self._keyframes), posed_keyframes=len(self._posed), step=self._step,
                          loss=self._loss, rounds=self._rounds, ready=self.ready,
                          scale_source=alignment.scale_source if alignment else None,
                          prior_residual=float(np.nanmedian(alignment.centre_residual_N)) if alignment else None,
                          pose_start=self._pose_start,
                          verdict=None if self._verdict is None else self._verdict.status,
                          verdict_reasons="; ".join(self._verdict.reasons) if self._verdict else "",
                          waiting_for=self.waiting_for())

    def train(self, seconds: float, steps: int | None = None,
              between_steps: Callable[[], None] | None = None) -> LiveStatus:
        """One slice of work: a full round when one is due (it takes `round_budget_s`), else
        registration of new keyframes and `seconds` of continued training (`steps` steps
        instead, when given: reproducible runs).

        `between_steps` is called after every step of a full round: until the round ends, this
        object still holds the previous round's scene, untouched, so the caller may read
        products from it (render, save); it must not add keyframes or reset."""
        if self._scene is None and self._chained_poses is not None and not self.waiting_for() \
                and usable_priors(self._priors(list(range(len(self._keyframes)))), self.config) is None:
            self._chain()  # a chain that places too few makes the first round wait while keyframes come
        if not self.training_due():
            return self.status()
        if self._scene is None or regrown(len(self._keyframes), self._keyframes_at_last_round, self.config):
            self._full_round(between_steps)
            return self.status()
        self._register_new_keyframes()
        if chain_left_too_many(self._pose_start, self._unplaced_since_round(), self._keyframes_at_last_round,
                               self.config):
            self._full_round(between_steps)
            return self.status()
        self._continue_training(seconds, steps)
        return self.status()

    def _chain(self) -> np.ndarray | None:
        """The feature chain's poses of the keyframes now in (None: it places too few), run once
        per set of keyframes, at the chain's resolution where every keyframe came with one."""
        names = self._names()
        if self._chain_tried is None or self._chain_tried[0] != names:
            K_N33 = np.stack([k.K_33 for k in self._keyframes])
            if all(k.features_HW3 is not None for k in self._keyframes):
                images_NHW3 = np.stack([k.features_HW3 for k in self._keyframes])
                (h, w), (fh, fw) = self._keyframes[0].image_HW3.shape[:2], images_NHW3.shape[1:3]
                K_N33 = scale_intrinsics(K_N33, fw / w, fh / h)
            else:
                images_NHW3 = np.stack([k.image_HW3 for k in self._keyframes])
            keyframes = ImageSet(names=list(names), images_NHW3=images_NHW3, K_N33=K_N33, capture="360", source="live")
            self._chain_tried = (names, self._chained_poses(keyframes))
        return self._chain_tried[1]

    def _unplaced_since_round(self) -> int:
        """Keyframes come since the last full round that registration has tried and not placed."""
        return len(self._keyframes) - len(self._posed) - self._unplaced_at_round

    def _full_round(self, between_steps: Callable[[], None] | None = None) -> None:
        keyframes = ImageSet(names=[k.name for k in self._keyframes],
                             images_NHW3=np.stack([k.image_HW3 for k in self._keyframes]),
                             K_N33=np.stack([k.K_33 for k in self._keyframes]), capture="360", source="live")
        chain = None if self._chained_poses is None else self._chain
        initial_c2w_N44, self._pose_start = round_start_poses(self._priors(list(range(len(self._keyframes)))), chain,
                                                              self.config)
        posed = list(range(len(keyframes)))
        if self._pose_start == "features":
            # Keyframes the chain could not place wait to be registered, as later ones do: the
            # trainer would fill them with a neighbour's pose, which kept poses never leave.
            posed = np.flatnonzero(np.isfinite(initial_c2w_N44[:, 0, 0])).tolist()
            initial_c2w_N44 = initial_c2w_N44[posed]
        image_set = keyframes.subset(posed)
        config = round_config(self.config, self._rounds, self._pose_start)
        result = reconstruct(image_set, config, None if between_steps is None else lambda _: between_steps(),
                             initial_c2w_N44=initial_c2w_N44)
        self._scene = Scene.from_training(result.engine, result.config, image_set.names, image_set.images_NHW3,
                                          image_set.K_N33, result.c2w_N44)
        if self._encoder_passes is not None:
            self._scene.encoder_pass = self._encoder_passes(result.engine)
        self._posed = posed
        self._confidence = [0.0 if out else float(c) for c, out in zip(result.confidence_N, result.outlier_N)]
        self._verdict = result.verdict
        self._keyframes_at_last_round = len(self._keyframes)
        self._unplaced_at_round = len(self._keyframes) - len(posed)
        self._rounds += 1
        self._step += len(result.curves)
        self._loss = result.curves[-1]["loss"] if result.curves else None
        self._start_joint_training(torch.from_numpy(result.c2w_N44).float())
        self._align_to_priors()

    def _priors(self, indices: list[int]) -> np.ndarray:
        """(N, 4, 4) prior poses of these keyframes, NaN rows where one has none."""
        priors_N44 = np.full((len(indices), 4, 4), np.nan)
        for row, i in enumerate(indices):
            if self._keyframes[i].prior_c2w_44 is not None:
                priors_N44[row] = self._keyframes[i].prior_c2w_44
        return priors_N44

    def _align_to_priors(self) -> None:
        """Refit the similarity into the priors' frame to the current poses (after they change);
        the scene keeps it as its output frame, so a saved scene answers in that frame too."""
        self._alignment = align_to_prior(self._joint.c2w().detach().double().cpu().numpy(),
                                         self._priors(self._posed), PRIOR_SOURCE, min_baseline=MIN_PRIOR_BASELINE)
        self._scene.use_frame(self._alignment)

    def _start_joint_training(self, c2w_N44: torch.Tensor) -> None:
        scene = self._scene
        device = scene.engine.field.grid.device
        level = scene.config.fine_size
        posed = [self._keyframes[i] for i in self._posed]
        images = np.stack([k.image_HW3 for k in posed])
        h, w = images.shape[1:3]
        small = ImageSet(names=[k.name for k in posed], images_NHW3=images, K_N33=np.stack([k.K_33 for k in posed]))
        small = small.resized(level) if max(h, w) > level else small
        self._images = torch.from_numpy(small.images_NHW3).float().div(255.0).to(device)
        self._K = torch.from_numpy(small.K_N33).float().to(device)
        scale = self.config.continued_lr_scale
        self._joint = JointRefinement(scene.engine, c2w_N44.to(device), pose_lr=self.config.trainer.lr_refine * scale,
                                      field_lr_scale=scale, divergence=self.config.trainer.divergence)

    def _register_new_keyframes(self) -> None:
        posed = set(self._posed)
        waiting = [i for i in range(len(self._keyframes)) if i not in posed]
        if not waiting:
            return
        frames = [self._keyframes[i] for i in waiting]
        # priors are in the scene's output frame once they fix it; before that they are not comparable
        priors = self._priors(waiting) if self._alignment is not None else None
        registration = self._scene.register(np.stack([k.image_HW3 for k in frames]),
                                            np.stack([k.K_33 for k in frames]), prior_c2w_N44=priors)
        accepted = [j for j in range(len(frames)) if bool(registration.accepted_B[j])]
        if not accepted:
            return
        self._posed += [waiting[j] for j in accepted]
        # rows follow the posed keyframes, the new ones last (as their poses below)
        self._scene.thumbnails_ND = np.concatenate([self._scene.thumbnails_ND,
                                                    thumbnails(np.stack([frames[j].image_HW3 for j in accepted]))])
        self._confidence += [float(registration.confidence_B[j]) for j in accepted]
        previous = self._joint.c2w().detach()
        self._start_joint_training(torch.cat([previous, registration.c2w_B44[accepted]]))
        self._sync_scene()

    def _continue_training(self, seconds: float, steps: int | None) -> None:
        deadline, last_step = time.perf_counter() + seconds, None if steps is None else self._step + steps

        def more() -> bool:
            return self._step < last_step if last_step is not None else time.perf_counter() < deadline

        while more():
            loss = self._joint.step(self._images, self._K, self.config.batch_images, self._generator)
            if math.isfinite(loss):  # a diverged step was rolled back, not taken
                self._loss = loss
            self._step += 1
            if self._step % self.config.trainer.occupancy_every == 0:
                self._scene.engine.field.update_occupancy()
        self._sync_scene()

    def _sync_scene(self) -> None:
        """The scene's cameras are the posed keyframes (what a checkpoint stores)."""
        posed = [self._keyframes[i] for i in self._posed]
        self._scene.names = [k.name for k in posed]
        self._scene.K_N33 = np.stack([k.K_33 for k in posed])
        self._scene.c2w_N44 = self._joint.c2w().detach().double().cpu().numpy()
        self._align_to_priors()

    # ------------------------------------------------------------------ products
    # The scene works in the engine's gauge; what leaves it is in its output frame (the priors'
    # when they fix one: Scene.to_output), and what comes in is mapped back (Scene.from_output).

    @property
    def alignment(self) -> PriorAlignment | None:
        """The similarity from the scene's gauge into the priors' frame (None: products are in
        the gauge), with its per-keyframe residuals in the posed keyframes' order."""
        return self._alignment

    def keyframe_poses(self) -> KeyframePoses:
        posed = [self._keyframes[i] for i in self._posed]
        c2w = self._joint.c2w().detach().double().cpu().numpy() if self._joint is not None else np.zeros((0, 4, 4))
        return KeyframePoses(names=[k.name for k in posed], stamps_ns=[k.stamp_ns for k in posed],
                             c2w_N44=self._scene.to_output(c2w) if self._scene is not None else c2w,
                             confidence_N=np.asarray(self._confidence, dtype=np.float64),
                             K_N33=np.stack([k.K_33 for k in posed]) if posed else np.zeros((0, 3, 3)),
                             sizes_N2=np.array([[k.image_HW3.shape[1], k.image_HW3.shape[0]] for k in posed],
                                               dtype=np.int64).reshape(-1, 2),
                             scale_source=self._scene.scale_source if self._scene is not None else None,
                             verdict=None if self._verdict is None else self._verdict.status)

    def point_cloud(self, max_points: int = 20000) -> tuple[np.ndarray, np.ndarray]:
        """(P, 3) float32 points and (P, 3) uint8 colours where the field is opaque, seen from
        up to 16 keyframes (empty before the first round)."""
        if self._scene is None:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
        pick = evenly_spaced_indices(len(self._images), 16)
        _, h, w, _ = self._images.shape
        with torch.no_grad():
            cloud = point_cloud(self._scene.engine.field, self._K[pick], self._joint.c2w()[pick].detach(), h, w)
        points = self._scene.points_to_output(cloud.points_P3.double().cpu().numpy()).astype(np.float32)
        colours = (cloud.colors_P3.clamp(0, 1) * 255).round().byte().cpu().numpy()
        if len(points) > max_points:
            keep = np.random.default_rng(self.config.seed).choice(len(points), max_points, replace=False)
            points, colours = points[keep], colours[keep]
        return points, colours

    def render(self, K_33: np.ndarray, c2w_44: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 colour and (H, W) float32 depth along the optical axis (NaN where
        the ray hits nothing; in the products' units) seen from `c2w_44` (in the products'
        frame) with intrinsics K_33 at width x height."""
        if self._scene is None:
            raise NotReadyError("the scene is not trained yet")
        render = self._scene.render(K_33, self._scene.from_output(np.asarray(c2w_44, dtype=np.float64)), width, height)
        rgb = (render.rgb_R3.clamp(0, 1) * 255).round().byte().cpu().numpy()
        depth = torch.where(render.opacity_R > 0.5, render.z_depth_R, torch.full_like(render.z_depth_R, math.nan))
        scale = 1.0 if self._scene.output_frame is None else self._scene.output_frame.scale
        return rgb, depth.float().cpu().numpy() * np.float32(scale)

    def register(self, image_HW3: np.ndarray, K_33: np.ndarray, prior_c2w_44: np.ndarray | None = None) -> FramePose:
        """Pose of one frame (in the products' frame) with its confidence; it is not added to
        the scene. `prior_c2w_44`: its pose from the keyframes' prior source (camera-to-odom at
        its stamp), used once the priors fix the products' frame: it races with the encoder's
        candidates, and a pose outside the gate around it is rejected (`prior_gate`)."""
        if self._scene is None:
            raise NotReadyError("the scene is not trained yet")
        prior = None if prior_c2w_44 is None or self._alignment is None else np.asarray(prior_c2w_44, np.float64)
        registration = self._scene.register(image_HW3[None], np.asarray(K_33)[None],
                                            prior_c2w_N44=None if prior is None else prior[None])
        c2w_44 = self._scene.to_output(registration.c2w_B44[0].double().cpu().numpy())
        contradicts = prior is not None and not self._within_prior_gate(c2w_44, prior)
        return FramePose(c2w_44=c2w_44, confidence=float(registration.confidence_B[0]),
                         accepted=bool(registration.accepted_B[0]) and not contradicts, contradicts_prior=contradicts)

    def _within_prior_gate(self, c2w_44: np.ndarray, prior_c2w_44: np.ndarray) -> bool:
        residual = float(np.nanmedian(self._alignment.centre_residual_N))
        return bool(self.config.prior_gate.accepts(c2w_44[None], prior_c2w_44[None], self.keyframe_poses().c2w_N44,
                                                   residual)[0])

    @property
    def scene(self) -> Scene | None:
        """The trained scene with the current keyframe poses (for checkpoints), or None. It is
        in the engine's gauge; its `output_frame` maps it into the products' frame."""
        return self._scene
