"""Per-scene optimisation of Generative Lifting on unposed images (360 or forward-facing captures).

Phases (all within one time or iteration budget):
1. pose learning: encoder + field through the diffusion objective (core.diffusion), coarse
   (32 px images, 32^3 grid) then fine (64 px, 64^3) from `fine_at` of the phase on, cosine
   learning-rate decay (without decay the accuracy oscillated, findings note). The coarse
   stage is a race of `starts` independent starts (seeds); the one whose most likely
   hypotheses explain the images best goes on to the fine stage, and how far the starts agree
   is evidence for the run's self-check (core.self_check; no ground truth involved).
2. re-assignment: for every image render its most likely hypothesis turned by j * 45 degrees of
   azimuth (j = 0..7, so the 180-degree flip is always among them) at low resolution and keep
   the one with the lowest full-image error (undoes the flips the encoder settles in).
3. refinement: per-image azimuth/elevation/roll/radius deltas and an se(3) twist, jointly with the
   field, on the photometric loss (as ACE0's pose refiner).
4. polish (360 captures): a fresh field from the refined poses, refined with them once more
   (`polish_fraction`).
Forward-facing captures (`mode="forward"`, core.forward_poses): one hypothesis per image near a
reference camera, the field in that camera's NDC; the same phases, where re-assignment has no
flips to undo and is skipped (the encoder's twist becomes each image's base).
`poses="gt"` is the oracle: the field alone is trained with the given poses (moved into the
same gauge), to measure the gap between estimated and known poses.

Divergence (non-finite loss or a loss above `DivergenceConfig.factor` x the running median) rolls
the engine and optimisers back to the last good in-memory snapshot. Checkpoints to disk are
the caller's job: `result.engine.state_dict()` / `load_state_dict()`.
"""

import copy
import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from nvs_ros.core.appearance import views_set_apart
from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.diffusion import GenerativeLifting, t_max_at
from nvs_ros.core.field import RadianceField
from nvs_ros.core.forward_poses import build_forward_engine, forward_gauge
from nvs_ros.core.gauge import fill_unknown, into_gauge, upright
from nvs_ros.core.image_set import ImageSet, plain_border_level
from nvs_ros.core.orbit_poses import PoseRefinement, orbit_radius_for_fov
from nvs_ros.core.pose_encoder import PoseEncoder
from nvs_ros.core.refine import (OutlierCorrection, align_views, candidate_errors, correct_outliers,
                                suspect_views)
from nvs_ros.core.self_check import Verdict, judge
from nvs_ros.core.trainer_config import TrainerConfig
from nvs_ros.core.training_loop import Budget, DivergenceGuard, cosine, field_regulariser

_log = logging.getLogger(__name__)

@dataclass
class TrainingProgress:
    """What the progress callback receives after every step."""

    step: int
    elapsed_s: float
    phase: str
    loss: float
    fraction: float
    """Of the whole budget, 0..1."""
    engine: GenerativeLifting


@dataclass
class ReconstructionResult:
    """Estimated cameras, the trained engine and how training went."""

    c2w_N44: np.ndarray
    """Camera-to-world, float64, OpenCV axes, in the field's world frame (the gauge: cameras
    around the origin at distance `radius`, +Z up; forward: near the reference camera, the
    identity, in units of its near plane)."""
    confidence_N: np.ndarray
    """Photometric fit of each image in [0, 1]: (PSNR - 10 dB) / 20 dB, clipped."""
    probability_N: np.ndarray
    """Encoder's top probability (NaN for the oracle)."""
    photometric_error_N: np.ndarray
    """Full-image MSE at the fine size, colours in [0, 1]."""
    mean_image_error_N: np.ndarray
    """The same against the mean of the images the scene was trained on (the self-check's yardstick)."""
    engine: GenerativeLifting
    radius: float
    """Camera distance of the 360 gauge (forward: the near-plane depth)."""
    curves: list[dict]
    """One dict per step: step, time (s since the start), loss, phase, lr (the field grid's,
    after the cosine decay; every other rate decays by the same factor)."""
    seed: int
    """Seed of the start that was kept."""
    start_errors: list[float]
    """Per start of the race: mean full-image MSE from the top hypotheses after the coarse stage
    (NaN for a lone start; the oracle: its training loss; given poses: none)."""
    rollbacks: int
    outlier_N: np.ndarray = None  # type: ignore[assignment]
    """Views the outlier correction took out (they do not fit the scene); none by default."""
    reposed_N: np.ndarray = None  # type: ignore[assignment]
    """Views the outlier correction moved to a better pose."""
    config: "TrainerConfig | None" = None
    """The configuration the engine was built with (what was estimated from the images, as the
    background, filled in): the one to save with the scene."""
    start_c2w: list[np.ndarray] = field(default_factory=list)
    """Per start of the race: its top hypotheses' poses (N, 4, 4) after the coarse stage."""
    kept_start: int = 0
    verdict: Verdict | None = None
    """The run's own judgement of its poses (core.self_check); views it does not support are
    among `outlier_N`."""

    def __post_init__(self) -> None:
        n = len(self.c2w_N44)
        self.outlier_N = np.zeros(n, dtype=bool) if self.outlier_N is None else self.outlier_N
        self.reposed_N = np.zeros(n, dtype=bool) if self.reposed_N is None else self.reposed_N

    def camera_estimates(self, image_set: ImageSet) -> CameraEstimates:
        n = len(image_set)
        sizes_N2 = np.tile([image_set.width, image_set.height], (n, 1))
        c2w_N44 = np.where(self.outlier_N[:, None, None], np.nan, self.c2w_N44)
        return CameraEstimates(names=list(image_set.names), c2w_N44=c2w_N44, registered_N=~self.outlier_N,
                               K_N33=image_set.K_N33, sizes_N2=sizes_N2,
                               confidence_N=np.where(self.outlier_N, 0.0, self.confidence_N))


def build_engine(config: TrainerConfig, num_images: int, radius: float,
                 reference_camera: tuple[Tensor, int, int] = (torch.eye(3), 2, 2)) -> GenerativeLifting:
    """A fresh engine (coarse field, random encoder, zero refinements) for `config`. `radius`
    is the 360 gauge's camera distance; `reference_camera` (K, height, width) sets a forward
    capture's NDC map (a loaded state dict brings the trained one)."""
    coarse_field = replace(config.field, resolution=config.coarse_grid)
    if config.mode == "forward":
        return build_forward_engine(num_images, *reference_camera, config.forward, config.encoder, coarse_field,
                                    config.diffusion)
    refinement = PoseRefinement(num_images, config.encoder.orbit, radius)
    return GenerativeLifting(PoseEncoder(config.encoder), RadianceField(coarse_field), refinement, config.diffusion)


def reconstruct(image_set: ImageSet, config: TrainerConfig = TrainerConfig(),
                progress_callback: Callable[[TrainingProgress], None] | None = None,
                initial_c2w_N44: np.ndarray | None = None) -> ReconstructionResult:
    """Cameras and a radiance field from the images of a 360 or forward capture (intrinsics given).

    Only `config.poses == "gt"` reads `image_set.c2w_N44`; otherwise pass
    `image_set.without_ground_truth()`. `initial_c2w_N44` (any frame and scale, NaN rows
    unknown) replaces the pose-learning phase: the poses are moved into the mode's gauge and
    refined with the field, outlier correction included for 360 captures (`--init features|POSES`).
    """
    if config.poses == "gt" and not image_set.has_ground_truth:
        raise ValueError("poses='gt' needs an image set with ground-truth poses")
    if config.time_budget_s is None and config.iterations is None:
        raise ValueError("give a time budget, an iteration count or both")
    apart_N = _views_set_apart(image_set, config)
    config = _with_background(config, image_set, ~apart_N)
    run = _Run(image_set, config, progress_callback, apart_N)
    if config.poses == "gt":
        result = run.oracle()
    else:
        result = run.estimate() if initial_c2w_N44 is None else run.refine_from(initial_c2w_N44)
    return _judged(replace(result, config=config), given_poses=config.poses == "gt" or initial_c2w_N44 is not None)


def _judged(result: ReconstructionResult, given_poses: bool) -> ReconstructionResult:
    """The result with its self-check: the views it does not support join the outliers."""
    verdict = judge(result.photometric_error_N, result.mean_image_error_N, ~result.outlier_N, result.start_c2w,
                    result.start_errors, result.kept_start, given_poses, result.config.self_check)
    unsupported_N = ~result.outlier_N & ~verdict.supported_N
    if unsupported_N.any():
        _log.info("self-check: %d views the scene does not explain are reported unregistered", int(unsupported_N.sum()))
    (_log.info if verdict.converged else _log.warning)("self-check: %s", verdict.summary())
    return replace(result, verdict=verdict, outlier_N=result.outlier_N | unsupported_N,
                   reposed_N=result.reposed_N & ~unsupported_N)


# ----------------------------------------------------------------------------- the run

class _Run:
    def __init__(self, image_set: ImageSet, config: TrainerConfig,
                 progress_callback: Callable[[TrainingProgress], None] | None, apart_N: np.ndarray) -> None:
        self.config = config
        self.device = torch.device(config.device)
        self.callback = progress_callback
        self.start = time.perf_counter()
        self.curves: list[dict] = []
        self.step = 0
        self.rollbacks = 0
        self.n = len(image_set)
        self.gt_c2w_N44 = image_set.c2w_N44 if config.poses == "gt" else None
        self.apart_N = apart_N
        """Views that look like none of the others (core.appearance): out of training until the
        outlier correction finds they fit."""
        self.active_N = torch.from_numpy(~apart_N)
        self.outlier_N = np.zeros(self.n, dtype=bool)
        self.reposed_N = np.zeros(self.n, dtype=bool)
        self.gt_c2w: Tensor | None = None
        """The oracle's poses in the gauge, on the device (set by `oracle`)."""
        self.race_c2w: list[np.ndarray] = []
        self.start_errors: list[float] = []
        self.kept_start = 0
        """The race of pose learning's starts (`_race`): their poses and errors, and the one kept."""
        self.image_set = image_set.without_ground_truth()
        self.x0_N3SS = self._encoder_inputs()
        self.levels: dict[int, tuple[Tensor, Tensor]] = {}
        coarse = self._level(config.coarse_size)
        scene_radius = config.scene_radius or float(config.field.box_half_size)
        _, h, w, _ = coarse[0].shape
        self.radius = (config.forward.near if config.mode == "forward"
                       else orbit_radius_for_fov(coarse[1][0].cpu(), h, w, scene_radius))

    # ---- data

    def _encoder_inputs(self) -> Tensor:
        size = self.config.encoder.input_size
        images = torch.from_numpy(self.image_set.images_NHW3).permute(0, 3, 1, 2).float() / 255.0
        resized = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear",
                                                  antialias=True, align_corners=False)
        return resized.to(self.device)

    def _level(self, max_side: int) -> tuple[Tensor, Tensor]:
        """(images_NHW3 in [0, 1], K_N33) at a longer side of max_side, cached."""
        if max_side not in self.levels:
            small = self.image_set.resized(max_side)
            images = torch.from_numpy(small.images_NHW3).float().div(255.0).to(self.device)
            K = torch.from_numpy(small.K_N33).float().to(self.device)
            self.levels[max_side] = (images, K)
        return self.levels[max_side]

    # ---- engine and optimisers

    def _new_engine(self, seed: int) -> GenerativeLifting:
        torch.manual_seed(seed)
        images, K = self._level(self.config.coarse_size)
        _, h, w, _ = images.shape
        return build_engine(self.config, self.n, self.radius, (K[0].cpu(), h, w)).to(self.device)

    def _field_optimizer(self, engine: GenerativeLifting) -> torch.optim.Optimizer:
        groups = engine.field.parameter_groups()
        if engine.envmap is not None:  # the background belongs to the scene model
            groups.append({"params": [engine.envmap], "lr": self.config.field.lr})
        for group in groups:
            group.setdefault("initial_lr", group["lr"])
        return torch.optim.Adam(groups)

    def _pose_optimizer(self, engine: GenerativeLifting, refine_lr: float, encoder: bool) -> torch.optim.Optimizer:
        groups = [{"params": engine.refinement.refinement_parameters(), "lr": refine_lr,
                   "initial_lr": refine_lr}]
        if encoder:
            groups.append({"params": list(engine.encoder.parameters()), "lr": self.config.lr_encoder,
                           "initial_lr": self.config.lr_encoder})
        return torch.optim.Adam(groups)

    # ---- one optimisation phase

    def _budget(self, share: float) -> Budget:
        return Budget(self.config.time_budget_s, self.config.iterations, share)

    def _optimise(self, engine: GenerativeLifting, budget: Budget, phase: str,
                  loss_fn: Callable[[GenerativeLifting, float, torch.Generator, bool], Tensor],
                  generator: torch.Generator, pose_optimizer: torch.optim.Optimizer,
                  fine_at: float | None, total_share: tuple[float, float],
                  span: tuple[float, float] = (0.0, 1.0)) -> float:
        """Runs steps until the budget is spent; returns the mean loss of the last 10% of steps.
        The budget covers `span` of the phase's progress (learning rates, noise curriculum and
        the fine switch follow the phase's progress: a race's starts run its first part)."""
        field_optimizer = self._field_optimizer(engine)
        guard = DivergenceGuard(self.config.divergence)
        objects = {"engine": engine, "field_opt": field_optimizer, "pose_opt": pose_optimizer}
        fine = fine_at is None
        losses: list[float] = []
        while (spent := budget.progress()) < 1.0:
            progress = span[0] + (span[1] - span[0]) * spent
            if not fine and progress >= fine_at:
                fine = True
                engine.field.upsample(self.config.fine_grid)
                field_optimizer = self._field_optimizer(engine)
                objects["field_opt"] = field_optimizer
                guard.take(objects)
            scale = cosine(progress, self.config.lr_final_fraction)
            for optimizer in (field_optimizer, pose_optimizer):
                for group in optimizer.param_groups:
                    group["lr"] = group["initial_lr"] * scale
            # Non-finite parameters (a bad step, corrupted state) would make non-finite rays,
            # which the renderer cannot index: check them before rendering.
            finite = all(bool(torch.isfinite(p).all()) for p in engine.parameters())
            loss = loss_fn(engine, progress, generator, fine) if finite else torch.tensor(math.nan)
            value = float(loss.detach())
            if not guard.healthy(value):
                guard.roll_back(objects, f"loss {value:.3g} at step {self.step}")
                self.rollbacks += 1
                budget.step += 1
                continue
            field_optimizer.zero_grad(set_to_none=True)
            pose_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            field_optimizer.step()
            pose_optimizer.step()
            budget.step += 1
            self.step += 1
            losses.append(value)
            guard.record(value, budget.step, objects)
            if budget.step % self.config.occupancy_every == 0:
                engine.field.update_occupancy()
            self._report(engine, phase, value, field_optimizer.param_groups[0]["lr"],
                         total_share[0] + total_share[1] * budget.progress())
        tail = losses[-max(1, len(losses) // 10):]
        return float(np.mean(tail)) if tail else math.inf

    def _report(self, engine: GenerativeLifting, phase: str, loss: float, lr: float, fraction: float) -> None:
        elapsed = time.perf_counter() - self.start
        self.curves.append({"step": self.step, "time": elapsed, "loss": loss, "phase": phase, "lr": lr})
        if self.callback is not None:
            self.callback(TrainingProgress(self.step, elapsed, phase, loss, min(1.0, fraction), engine))

    def _batch(self, generator: torch.Generator) -> Tensor:
        """Random images of the batch, among those still in training (outliers are not)."""
        active = torch.nonzero(self.active_N)[:, 0]
        return active[torch.randperm(len(active), generator=generator)[: self.config.batch_images]].to(self.device)

    @torch.no_grad()
    def _poses(self, engine: GenerativeLifting) -> Tensor:
        """(N, 4, 4) every view's current refined pose."""
        return engine.refinement.base_c2w(torch.arange(self.n, device=self.device))

    # ---- pose estimation

    def estimate(self) -> ReconstructionResult:
        config = self.config
        polish_share = self._polish_share()
        learn_share = 1.0 - config.refine_fraction - polish_share
        starts = self._race(learn_share * config.fine_at)
        best = min(starts, key=lambda start: start.error)
        engine, seed = best.engine, best.seed
        fine_share = learn_share * (1.0 - config.fine_at)
        self._optimise(engine, self._budget(fine_share), "poses", self._diffusion_loss, best.generator,
                       best.pose_optimizer, config.fine_at, (learn_share - fine_share, fine_share),
                       span=(config.fine_at, 1.0))
        self.race_c2w = [start.c2w_N44 for start in starts]
        self.start_errors = [start.error for start in starts]
        self.kept_start = starts.index(best)
        self.generator = torch.Generator().manual_seed(seed + 1000)
        reassign = config.refine_fraction > 0 and config.mode == "360"
        probability_N = self._reassign(engine) if reassign else self._top_as_base(engine)
        if config.refine_fraction > 0:
            self._refine(engine, learn_share, config.refine_fraction, fine_at=None)
        if polish_share > 0:
            self._polish(engine, learn_share + config.refine_fraction, polish_share)
        if config.refine_fraction > 0:
            self._align_views(engine)
        c2w_N44 = self._poses(engine)
        return self._result(engine, c2w_N44, probability_N, seed, self.start_errors)

    def _race(self, share: float) -> list["_Start"]:
        """The coarse stage of pose learning from `config.starts` seeds, sharing `share` of the
        budget; each start ends with the photometric error and the poses of its most likely
        hypotheses (a lone start is not scored)."""
        config = self.config
        each = share / config.starts
        starts = []
        for r in range(config.starts):
            seed = config.seed + r
            engine = self._new_engine(seed)
            generator = torch.Generator().manual_seed(seed)
            pose_optimizer = self._pose_optimizer(engine, config.lr_refine_while_encoding, True)
            self._optimise(engine, self._budget(each), f"poses[{r}]", self._diffusion_loss, generator,
                           pose_optimizer, config.fine_at, (r * each, each), span=(0.0, config.fine_at))
            if config.starts == 1:  # nothing to race against
                return [_Start(seed, engine, generator, pose_optimizer, math.nan, np.zeros((0, 4, 4)))]
            error, c2w_N44 = self._start_outcome(engine)
            _log.info("start %d (seed %d): photometric error %.5f", r, seed, error)
            starts.append(_Start(seed, engine, generator, pose_optimizer, error, c2w_N44))
        return starts

    def _polish_share(self) -> float:
        config = self.config
        polishing = config.refine_fraction > 0 and config.mode == "360"
        return config.polish_fraction if polishing else 0.0

    def _polish(self, engine: GenerativeLifting, start: float, share: float) -> None:
        """A fresh field from the refined poses, refined with them (`TrainerConfig.polish_fraction`);
        the views the outlier correction took out stay out of its training until they fit. The
        polish is undone where it leaves the views it started with worse explained than before
        (a budget too short for a field to grow from nothing: tens of steps)."""
        judged_N = torch.from_numpy(~self.outlier_N)
        error_before = self._mean_fit_error(engine, judged_N)
        before = (engine.field, copy.deepcopy(engine.refinement.state_dict()), self.outlier_N, self.reposed_N,
                  self.active_N)
        c2w_N44 = self._poses(engine)
        engine.field = RadianceField(engine.field.config).to(self.device)
        engine.refinement.start_at(c2w_N44)
        self.active_N = judged_N.clone()
        self._refine(engine, start, share, fine_at=self.config.fine_at, phase="polish")
        error_after = self._mean_fit_error(engine, judged_N)
        if error_after < error_before:
            return
        _log.info("polish undone: mean image error %.5f after it, %.5f before", error_after, error_before)
        engine.field, refinement_state, self.outlier_N, self.reposed_N, self.active_N = before
        engine.refinement.load_state_dict(refinement_state)

    def _mean_fit_error(self, engine: GenerativeLifting, views_N: Tensor) -> float:
        """Mean full-image MSE (fine size) of these views from their current poses."""
        errors_N = self._full_image_errors(engine, self._poses(engine)[:, None], self.config.fine_size)[:, 0]
        return float(errors_N[views_N.to(self.device)].mean())

    def _refine(self, engine: GenerativeLifting, start: float, share: float, fine_at: float | None,
                phase: str = "refine") -> None:
        """The refinement phase: poses and field on the photometric loss. With the outlier
        correction (360 captures) it runs in parts: all views; without the views whose residual
        stands out (suspects), from `suspects_at` of the phase on; after re-posing the suspects,
        with those that fit; and so on for each further look (`correction_rounds`)."""
        config = self.config
        correcting = config.outlier_correction and config.mode == "360"
        later = (1.0 - config.suspects_at) / (1 + config.correction_rounds)
        shares = [config.suspects_at] + [later] * (1 + config.correction_rounds) if correcting else [1.0]
        self.start_c2w_N44 = self._poses(engine)
        for i, part in enumerate(shares):
            if i >= 1:
                self._align_views(engine)
            if i == 1:
                self._set_suspects_aside(engine)
            if i > 2:
                self._look_again(engine)
            if i >= 2:
                self._correct_outliers(engine)
            self._optimise(engine, self._budget(share * part), phase, self._posed_loss, self.generator,
                           self._pose_optimizer(engine, config.lr_refine, False), fine_at if i == 0 else None,
                           (start + share * sum(shares[:i]), share * part))

    def _align_views(self, engine: GenerativeLifting) -> None:
        """The views in training aligned to the field (`TrainerConfig.align_views`)."""
        config = self.config
        if not (config.align_views and config.mode == "360" and config.lr_refine > 0):
            return
        images, K = self._level(config.fine_size)
        views = torch.nonzero(self.active_N.to(self.device))[:, 0]
        c2w_B44, _ = align_views(engine, images[views], K[views], self._poses(engine)[views])
        engine.refinement.set_poses(views, c2w_B44)

    def _set_suspects_aside(self, engine: GenerativeLifting) -> None:
        images, K = self._level(self.config.fine_size)
        c2w_N44 = self._poses(engine)
        self.suspects_N = suspect_views(engine, images, K, c2w_N44) | torch.from_numpy(self.apart_N).to(self.device)
        self.active_N = ~self.suspects_N.cpu()
        _log.info("outlier correction: %d suspect views set aside", int(self.suspects_N.sum()))

    def _look_again(self, engine: GenerativeLifting) -> None:
        """Suspects of a later round: the views still taken out, and those whose residual stands
        out now that the field has trained with the re-posed ones."""
        images, K = self._level(self.config.fine_size)
        c2w_N44 = self._poses(engine)
        out_N = torch.from_numpy(self.outlier_N).to(self.device)
        self.suspects_N = out_N | suspect_views(engine, images, K, c2w_N44, self.config.later_look)
        _log.info("outlier correction: %d suspects in the next round, %d of them not out",
                  int(self.suspects_N.sum()), int((self.suspects_N & ~out_N).sum()))

    def _correct_outliers(self, engine: GenerativeLifting) -> None:
        """Each suspect re-posed (core.refine.correct_outliers); those that fit from no pose found
        near their current one try again from the pose refinement started from. Refined with the
        field while it fitted the others, a view whose start was flipped wanders (measured on
        chair, 17 of 87 initial poses flipped: 130-180 degrees and 0.1-2 scene sizes from the truth
        after a third of the budget; a turn of its current pose came within 15 degrees for 3 of
        them, of its start pose for all 17; on that field the retry kept 1 more of 17 re-posed)."""
        images, K = self._level(self.config.fine_size)
        c2w_N44 = self._poses(engine)
        correction = correct_outliers(engine, images, K, c2w_N44, self.suspects_N, generator=self.generator)
        retry_N = correction.outlier_N
        if retry_N.any():
            restarted_N44 = torch.where(retry_N[:, None, None], self.start_c2w_N44, correction.c2w_N44)
            correction = _lower_residual(correction, correct_outliers(engine, images, K, restarted_N44, retry_N,
                                                                      generator=self.generator))
        reposed = torch.nonzero(correction.reposed_N)[:, 0]
        if len(reposed):
            engine.refinement.set_poses(reposed, correction.c2w_N44[reposed])
        self.outlier_N = correction.outlier_N.cpu().numpy()
        self.reposed_N = (self.reposed_N | correction.reposed_N.cpu().numpy()) & ~self.outlier_N
        self.active_N = ~correction.outlier_N.cpu()
        _log.info("outlier correction: %d views re-posed, %d taken out", len(reposed), int(self.outlier_N.sum()))

    def refine_from(self, initial_c2w_N44: np.ndarray) -> ReconstructionResult:
        """Poses from elsewhere (features, odometry) instead of the pose-learning phase, moved
        into the mode's gauge (360: around the origin, upright; forward: relative to the
        reference camera, in units of its near plane)."""
        sharper = min(self.config.initial_fine_size, max(self.image_set.width, self.image_set.height))
        self.config = replace(self.config, fine_size=max(self.config.fine_size, sharper))
        engine = self._new_engine(self.config.seed)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        known_N44 = fill_unknown(initial_c2w_N44)
        c2w_N44 = (forward_gauge(known_N44, self.config.forward) if self.config.mode == "forward"
                   else into_gauge(upright(known_N44), self.radius))
        engine.refinement.start_at(torch.from_numpy(c2w_N44).float().to(self.device))
        self._refine(engine, 0.0, 1.0, fine_at=self.config.fine_at)
        self._align_views(engine)
        c2w = self._poses(engine)
        return self._result(engine, c2w, np.full(self.n, np.nan), self.config.seed, [])

    @torch.no_grad()
    def _start_outcome(self, engine: GenerativeLifting) -> tuple[float, np.ndarray]:
        """How a start of the race ended, without ground truth: the mean full-image MSE
        (reassign_size) of the images from their most likely hypotheses, each re-assigned as the
        run's re-assignment would (360 captures: flips undone, so starts in one basin agree), and
        those poses (N, 4, 4)."""
        index_N = torch.arange(self.n, device=self.device)
        if self.config.mode == "360":
            azimuth_N, elevation_N, _, _, errors_N = self._reassigned(engine)
            c2w_N44 = engine.refinement.c2w(azimuth_N[:, None], elevation_N[:, None], index_N)[:, 0]
        else:
            hyp = engine.predict(self.x0_N3SS)
            c2w_N44 = engine.refinement.hypotheses_c2w(hyp, index_N)[index_N, hyp.probs_BK.argmax(dim=-1)]
            errors_N = self._full_image_errors(engine, c2w_N44[:, None], self.config.reassign_size)[:, 0]
        return float(errors_N[self.active_N.to(self.device)].mean()), c2w_N44.double().cpu().numpy()

    def _diffusion_loss(self, engine: GenerativeLifting, progress: float, generator: torch.Generator,
                        fine: bool) -> Tensor:
        images, K = self._level(self.config.fine_size if fine else self.config.coarse_size)
        index_B = self._batch(generator)
        t_B = engine.sample_t(len(index_B), t_max_at(self.config.diffusion, progress), self.device, generator)
        terms = engine.training_loss(self.x0_N3SS[index_B], images[index_B], K[index_B], index_B, t_B, generator)
        return terms.loss + field_regulariser(engine)

    def _posed_loss(self, engine: GenerativeLifting, progress: float, generator: torch.Generator,
                    fine: bool) -> Tensor:
        images, K = self._level(self.config.fine_size)
        index_B = self._batch(generator)
        c2w_B44 = engine.refinement.base_c2w(index_B) if self.gt_c2w is None else self.gt_c2w[index_B]
        return engine.posed_loss(images[index_B], K[index_B], c2w_B44, generator) + field_regulariser(engine)

    def _top_as_base(self, engine: GenerativeLifting) -> np.ndarray:
        probability_N = engine.refinement.set_base_to_top(engine.predict(self.x0_N3SS))
        return probability_N.cpu().numpy().astype(np.float64)

    @torch.no_grad()
    def _reassign(self, engine: GenerativeLifting) -> np.ndarray:
        """Keep, per image, the best of the top hypothesis turned by j * 45 degrees (j = 0..7)."""
        azimuth_N, elevation_N, probability_N, moved_N, _ = self._reassigned(engine)
        _log.info("re-assignment moved %d of %d images", int(moved_N.sum()), self.n)
        engine.refinement.set_base(azimuth_N, elevation_N)
        return probability_N.cpu().numpy().astype(np.float64)

    @torch.no_grad()
    def _reassigned(self, engine: GenerativeLifting) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Per image, the best of its top hypothesis turned by j * 45 degrees of azimuth: azimuth,
        elevation, the hypothesis' probability, whether it turned, and its full-image MSE at
        `reassign_size`."""
        hyp = engine.predict(self.x0_N3SS)
        azimuth_N, elevation_N, probability_N = hyp.top()
        turns_J = torch.arange(8, device=self.device) * (math.pi / 4)
        candidates_NJ = azimuth_N[:, None] + turns_J
        c2w_NJ44 = engine.refinement.c2w(candidates_NJ, elevation_N[:, None].expand_as(candidates_NJ),
                                         torch.arange(self.n, device=self.device))
        errors_NJ = self._full_image_errors(engine, c2w_NJ44, self.config.reassign_size)
        best_N = errors_NJ.argmin(dim=1)
        return (candidates_NJ.gather(1, best_N[:, None])[:, 0], elevation_N, probability_N, best_N != 0,
                errors_NJ.gather(1, best_N[:, None])[:, 0])

    def _full_image_errors(self, engine: GenerativeLifting, c2w_NJ44: Tensor, size: int) -> Tensor:
        """(N, J) full-image MSE of every image seen from each of its J candidate poses."""
        images, K = self._level(size)
        return candidate_errors(engine, images, K, c2w_NJ44)

    # ---- oracle

    def oracle(self) -> ReconstructionResult:
        c2w_N44 = (forward_gauge(self.gt_c2w_N44, self.config.forward) if self.config.mode == "forward"
                   else into_gauge(self.gt_c2w_N44, self.radius))
        self.gt_c2w = torch.from_numpy(c2w_N44).float().to(self.device)
        engine = self._new_engine(self.config.seed)
        generator = torch.Generator().manual_seed(self.config.seed)
        loss = self._optimise(engine, self._budget(1.0), "oracle", self._posed_loss_oracle, generator,
                              self._pose_optimizer(engine, 0.0, False), self.config.fine_at, (0.0, 1.0))
        return self._result(engine, self.gt_c2w, np.full(self.n, np.nan), self.config.seed, [loss])

    def _posed_loss_oracle(self, engine: GenerativeLifting, progress: float, generator: torch.Generator,
                           fine: bool) -> Tensor:
        images, K = self._level(self.config.fine_size if fine else self.config.coarse_size)
        index_B = self._batch(generator)
        return engine.posed_loss(images[index_B], K[index_B], self.gt_c2w[index_B], generator) + \
            field_regulariser(engine)

    # ---- result

    @torch.no_grad()
    def _result(self, engine: GenerativeLifting, c2w_N44: Tensor, probability_N: np.ndarray, seed: int,
                start_errors: list[float]) -> ReconstructionResult:
        images, K = self._level(self.config.fine_size)
        _, h, w, _ = images.shape
        errors = []
        for i in range(self.n):
            rgb = engine.render_view(K[i], c2w_N44[i], h, w)
            errors.append(float(((rgb.reshape(h, w, 3) - images[i]) ** 2).mean()))
        error_N = np.array(errors)
        mean_HW3 = images[self.active_N.to(self.device)].mean(dim=0)
        mean_image_error_N = ((images - mean_HW3) ** 2).mean(dim=(1, 2, 3)).double().cpu().numpy()
        psnr_N = -10.0 * np.log10(np.maximum(error_N, 1e-10))
        return ReconstructionResult(
            c2w_N44=c2w_N44.double().cpu().numpy(), confidence_N=np.clip((psnr_N - 10.0) / 20.0, 0.0, 1.0),
            probability_N=probability_N, photometric_error_N=error_N, mean_image_error_N=mean_image_error_N,
            engine=engine, radius=self.radius,
            curves=self.curves, seed=seed, start_errors=start_errors, rollbacks=self.rollbacks,
            outlier_N=self.outlier_N, reposed_N=self.reposed_N, start_c2w=self.race_c2w, kept_start=self.kept_start)


@dataclass
class _Start:
    """One start of the pose-learning race, as the coarse stage left it."""

    seed: int
    engine: GenerativeLifting
    generator: torch.Generator
    pose_optimizer: torch.optim.Optimizer
    error: float
    """Mean full-image MSE of the images from their most likely hypotheses."""
    c2w_N44: np.ndarray
    """Those hypotheses' poses."""


def _lower_residual(current: OutlierCorrection, restarted: OutlierCorrection) -> OutlierCorrection:
    """Per view, the correction that leaves the lower residual; a view whose restarted pose wins
    has moved (to its start pose or a pose found from there), even where the search kept that pose."""
    restart_N = restarted.residual_N < current.residual_N
    moved_N = restarted.reposed_N | (restart_N & ~restarted.outlier_N)

    def pick(a: Tensor, b: Tensor) -> Tensor:
        return torch.where(restart_N.view(-1, *[1] * (a.dim() - 1)), b, a)

    return OutlierCorrection(c2w_N44=pick(current.c2w_N44, restarted.c2w_N44),
                             outlier_N=pick(current.outlier_N, restarted.outlier_N),
                             reposed_N=pick(current.reposed_N, moved_N),
                             residual_N=pick(current.residual_N, restarted.residual_N))


def _views_set_apart(image_set: ImageSet, config: TrainerConfig) -> np.ndarray:
    """The views kept out of pose learning for their looks (core.appearance): only where the
    outlier correction will judge them later (360 captures, poses estimated)."""
    judged = config.outlier_correction and config.mode == "360" and config.poses == "estimate"
    apart_N = views_set_apart(image_set.images_NHW3) if judged else np.zeros(len(image_set), dtype=bool)
    if apart_N.any():
        _log.info("belonging: %d of %d views look like none of the others, out of training until they fit: %s",
                  int(apart_N.sum()), len(apart_N), ", ".join(np.asarray(image_set.names)[apart_N]))
    return apart_N


def _with_background(config: TrainerConfig, image_set: ImageSet, belonging_N: np.ndarray) -> TrainerConfig:
    images_NHW3 = image_set.images_NHW3 if belonging_N.all() else image_set.images_NHW3[belonging_N]
    level = plain_border_level(images_NHW3) if config.background_from_images else None
    if level is None or config.diffusion.background_model != "constant":
        return config
    _log.info("background: the images' plain border, grey level %.2f", level)
    return replace(config, diffusion=replace(config.diffusion, background=level))

