"""Incremental reconstruction of a live camera: keyframes come in video order, the scene keeps
learning without restarting, and answers with poses, a point cloud and rendered views.

What the ROS node's worker calls (one thread owns a LiveScene; it is not thread-safe):
1. Until `min_keyframes` keyframes are in, nothing is trained.
2. The first round is the full method on the keyframes so far (core.trainer.reconstruct:
   pose distribution, re-assignment, refinement), `round_budget_s` long.
3. Afterwards each `train(seconds)` registers the keyframes that arrived since (one encoder
   pass + render-and-compare, core.refine), adds the accepted ones to the scene, and continues
   training field and poses together for `seconds` (core.refine.JointRefinement). Frames that
   do not fit (low confidence) wait and are tried again by the next full round.
4. When the keyframes have grown by `regrow_factor` since the last full round, the next call
   runs a full round on all of them (the encoder is retrained from scratch on the larger set,
   the field too): poses learnt from a few frames are not baked into the map.
"""

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from nvs_ros.core.cameras import scale_intrinsics
from nvs_ros.core.image_set import ImageSet, evenly_spaced_indices, resize_images
from nvs_ros.core.products import point_cloud
from nvs_ros.core.refine import JointRefinement
from nvs_ros.core.scene import Scene
from nvs_ros.core.trainer import TrainerConfig, reconstruct


@dataclass(frozen=True)
class LiveSceneConfig:
    min_keyframes: int = 8
    """Training starts when this many keyframes are in."""
    round_budget_s: float = 60.0
    """Training time of one full round."""
    round_iterations: int | None = None
    """Steps of one full round instead of its time (reproducible runs and tests)."""
    max_keyframes: int = 64
    """Keyframes kept at most: beyond it the most redundant one (nearest camera centre to
    another keyframe's) is forgotten, so memory and step time stay bounded on a long run."""
    regrow_factor: float = 1.5
    """A full round runs again once the keyframes have grown by this factor since the last one."""
    device: str = "cpu"
    seed: int = 0
    batch_images: int = 8
    """Views per continued-training step."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Settings of the full rounds (its time budget is replaced by round_budget_s)."""


@dataclass
class LiveStatus:
    keyframes: int
    posed_keyframes: int
    step: int
    loss: float | None
    rounds: int
    ready: bool


@dataclass
class KeyframePoses:
    """The posed keyframes, in the scene's world frame (OpenCV camera-to-world)."""

    names: list[str]
    stamps_ns: list[int]
    c2w_N44: np.ndarray
    confidence_N: np.ndarray
    K_N33: np.ndarray
    sizes_N2: np.ndarray
    """(width, height) of each keyframe image, which K refers to."""


@dataclass
class FramePose:
    c2w_44: np.ndarray
    confidence: float
    accepted: bool


@dataclass
class _Keyframe:
    name: str
    stamp_ns: int
    image_HW3: np.ndarray
    K_33: np.ndarray


class LiveScene:
    def __init__(self, config: LiveSceneConfig = LiveSceneConfig()) -> None:
        self.config = config
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
        self._rounds = 0
        self._step = 0
        self._loss: float | None = None
        self._generator = torch.Generator().manual_seed(self.config.seed)

    # ------------------------------------------------------------------ input

    def add_keyframe(self, image_HW3: np.ndarray, K_33: np.ndarray, stamp_ns: int, name: str) -> None:
        """A keyframe (uint8 RGB, intrinsics at its size). Keyframes are kept at the first one's
        size: later ones of another size are resized to it."""
        image_HW3 = np.ascontiguousarray(image_HW3, dtype=np.uint8)
        if image_HW3.ndim != 3 or image_HW3.shape[2] != 3 or min(image_HW3.shape[:2]) < 2:
            raise ValueError(f"a keyframe must be an (H, W, 3) image, got {image_HW3.shape}")
        K_33 = np.asarray(K_33, dtype=np.float64)
        if self._keyframes:
            h, w = self._keyframes[0].image_HW3.shape[:2]
            if image_HW3.shape[:2] != (h, w):
                sh, sw = image_HW3.shape[:2]
                K_33 = scale_intrinsics(K_33, w / sw, h / sh)
                image_HW3 = resize_images(image_HW3[None], h, w)[0]
        self._keyframes.append(_Keyframe(name, int(stamp_ns), image_HW3, K_33))
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

    def status(self) -> LiveStatus:
        return LiveStatus(keyframes=len(self._keyframes), posed_keyframes=len(self._posed), step=self._step,
                          loss=self._loss, rounds=self._rounds, ready=self.ready)

    def train(self, seconds: float) -> LiveStatus:
        """One slice of work: a full round when one is due (it takes `round_budget_s`), else
        registration of new keyframes and `seconds` of continued training."""
        if len(self._keyframes) < self.config.min_keyframes:
            return self.status()
        if self._scene is None or len(self._keyframes) >= self.config.regrow_factor * self._keyframes_at_last_round:
            self._full_round()
            return self.status()
        self._register_new_keyframes()
        self._continue_training(seconds)
        return self.status()

    def _full_round(self) -> None:
        image_set = ImageSet(names=[k.name for k in self._keyframes],
                             images_NHW3=np.stack([k.image_HW3 for k in self._keyframes]),
                             K_N33=np.stack([k.K_33 for k in self._keyframes]), capture="360", source="live")
        by_steps = self.config.round_iterations is not None
        config = replace(self.config.trainer, time_budget_s=None if by_steps else self.config.round_budget_s,
                         iterations=self.config.round_iterations,
                         device=self.config.device, seed=self.config.seed + self._rounds)
        result = reconstruct(image_set, config)
        self._scene = Scene.from_training(result.engine, config, image_set.names, image_set.images_NHW3,
                                          image_set.K_N33, result.c2w_N44)
        self._posed = list(range(len(self._keyframes)))
        self._confidence = [float(c) for c in result.confidence_N]
        self._keyframes_at_last_round = len(self._keyframes)
        self._rounds += 1
        self._step += len(result.curves)
        self._loss = result.curves[-1]["loss"] if result.curves else None
        self._start_joint_training(torch.from_numpy(result.c2w_N44).float())

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
        self._joint = JointRefinement(scene.engine, c2w_N44.to(device), pose_lr=self.config.trainer.lr_refine * 0.3,
                                      field_lr_scale=0.3)

    def _register_new_keyframes(self) -> None:
        posed = set(self._posed)
        waiting = [i for i in range(len(self._keyframes)) if i not in posed]
        if not waiting:
            return
        frames = [self._keyframes[i] for i in waiting]
        registration = self._scene.register(np.stack([k.image_HW3 for k in frames]),
                                            np.stack([k.K_33 for k in frames]), seed=self.config.seed + self._step)
        accepted = [j for j in range(len(frames)) if bool(registration.accepted_B[j])]
        if not accepted:
            return
        self._posed += [waiting[j] for j in accepted]
        self._confidence += [float(registration.confidence_B[j]) for j in accepted]
        previous = self._joint.c2w().detach()
        self._start_joint_training(torch.cat([previous, registration.c2w_B44[accepted]]))
        self._sync_scene()

    def _continue_training(self, seconds: float) -> None:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            loss = self._joint.step(self._images, self._K, self.config.batch_images, self._generator)
            if not math.isfinite(loss):
                raise RuntimeError("continued training diverged (non-finite loss)")
            self._loss = loss
            self._step += 1
            if self._step % 16 == 0:
                self._scene.engine.field.update_occupancy()
        self._sync_scene()

    def _sync_scene(self) -> None:
        """The scene's cameras are the posed keyframes (what a checkpoint stores)."""
        posed = [self._keyframes[i] for i in self._posed]
        self._scene.names = [k.name for k in posed]
        self._scene.K_N33 = np.stack([k.K_33 for k in posed])
        self._scene.c2w_N44 = self._joint.c2w().detach().double().cpu().numpy()

    # ------------------------------------------------------------------ products

    def keyframe_poses(self) -> KeyframePoses:
        posed = [self._keyframes[i] for i in self._posed]
        c2w = self._joint.c2w().detach().double().cpu().numpy() if self._joint is not None else np.zeros((0, 4, 4))
        return KeyframePoses(names=[k.name for k in posed], stamps_ns=[k.stamp_ns for k in posed], c2w_N44=c2w,
                             confidence_N=np.asarray(self._confidence, dtype=np.float64),
                             K_N33=np.stack([k.K_33 for k in posed]) if posed else np.zeros((0, 3, 3)),
                             sizes_N2=np.array([[k.image_HW3.shape[1], k.image_HW3.shape[0]] for k in posed],
                                               dtype=np.int64).reshape(-1, 2))

    def point_cloud(self, max_points: int = 20000) -> tuple[np.ndarray, np.ndarray]:
        """(P, 3) float32 points and (P, 3) uint8 colours where the field is opaque, seen from
        up to 16 keyframes (empty before the first round)."""
        if self._scene is None:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
        pick = evenly_spaced_indices(len(self._images), 16)
        _, h, w, _ = self._images.shape
        with torch.no_grad():
            cloud = point_cloud(self._scene.engine.field, self._K[pick], self._joint.c2w()[pick].detach(), h, w)
        points = cloud.points_P3.cpu().numpy().astype(np.float32)
        colours = (cloud.colors_P3.clamp(0, 1) * 255).round().byte().cpu().numpy()
        if len(points) > max_points:
            keep = np.random.default_rng(self.config.seed).choice(len(points), max_points, replace=False)
            points, colours = points[keep], colours[keep]
        return points, colours

    def render(self, K_33: np.ndarray, c2w_44: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 colour and (H, W) float32 depth along the optical axis (NaN where
        the ray hits nothing) seen from `c2w_44` with intrinsics K_33 at width x height."""
        if self._scene is None:
            raise RuntimeError("the scene is not trained yet")
        render = self._scene.render(K_33, c2w_44, width, height)
        rgb = (render.rgb_R3.clamp(0, 1) * 255).round().byte().cpu().numpy()
        depth = torch.where(render.opacity_R > 0.5, render.z_depth_R, torch.full_like(render.z_depth_R, math.nan))
        return rgb, depth.float().cpu().numpy()

    def register(self, image_HW3: np.ndarray, K_33: np.ndarray) -> FramePose:
        """Pose of one frame in the scene with its confidence (it is not added to the scene)."""
        if self._scene is None:
            raise RuntimeError("the scene is not trained yet")
        registration = self._scene.register(image_HW3[None], np.asarray(K_33)[None])
        return FramePose(c2w_44=registration.c2w_B44[0].double().cpu().numpy(),
                         confidence=float(registration.confidence_B[0]), accepted=bool(registration.accepted_B[0]))

    @property
    def scene(self) -> Scene | None:
        """The trained scene with the current keyframe poses (for checkpoints), or None."""
        return self._scene
