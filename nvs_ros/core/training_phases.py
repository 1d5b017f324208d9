"""The phases of per-scene optimisation of Generative Lifting on unposed images (360 or
forward-facing captures), on the run's state and step loop (core.training_run).

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
   field, on the photometric loss (as ACE0's pose refiner). Learnt poses of a 360 capture are
   refined with a fresh field (`fresh_field`), coarse to fine in grid and images: the field of pose
   learning learnt the scene while the poses were 8-20 degrees off and holds them there.
Forward-facing captures (`mode="forward"`, core.forward_poses): one hypothesis per image near a
reference camera, the field in that camera's NDC; the same phases, where re-assignment has no
flips to undo and is skipped (the encoder's twist becomes each image's base).
`poses="gt"` is the oracle: the field alone is trained with the given poses (moved into the
same gauge), to measure the gap between estimated and known poses.
"""

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from nvs_ros.core.diffusion import GenerativeLifting, t_max_at
from nvs_ros.core.direct_alignment import align_views
from nvs_ros.core.field import RadianceField
from nvs_ros.core.forward_poses import forward_gauge
from nvs_ros.core.gauge import fill_unknown, into_gauge, upright
from nvs_ros.core.outlier_correction import correct_outliers, lower_residual, suspect_views
from nvs_ros.core.reconstruction_result import ReconstructionResult
from nvs_ros.core.training_loop import field_regulariser
from nvs_ros.core.training_run import TrainingRun

_log = logging.getLogger(__name__)


class TrainingPhases(TrainingRun):
    """One run's phases (module docstring): `estimate` (poses learnt from the images),
    `refine_from` (poses given), `oracle` (ground-truth poses)."""

    # ---- pose estimation

    def estimate(self) -> ReconstructionResult:
        config = self.config
        learn_share = 1.0 - config.refine_fraction
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
        in_360 = config.mode == "360"
        refining = config.refine_fraction > 0
        probability_N = self._reassign(engine) if refining and in_360 else self._top_as_base(engine)
        if refining:
            if in_360 and config.fresh_field:
                self._refine_with_fresh_field(engine, learn_share, config.refine_fraction)
            else:
                self._refine(engine, learn_share, config.refine_fraction, fine_at=None,
                             lr=config.lr_refine_learnt if in_360 else config.lr_refine)
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

    def _refine_with_fresh_field(self, engine: GenerativeLifting, start: float, share: float) -> None:
        """The learnt poses refined with a fresh field, coarse to fine (`TrainerConfig.fresh_field`);
        the views the outlier correction took out stay out of its training until they fit. Undone
        where it leaves the views worse explained than the field of pose learning did (a budget
        too short for a field to grow from nothing: tens of steps)."""
        judged_N = torch.from_numpy(~self.outlier_N)
        error_before = self._mean_fit_error(engine, judged_N)
        before = (engine.field, copy.deepcopy(engine.refinement.state_dict()), self.outlier_N, self.reposed_N,
                  self.active_N)
        c2w_N44 = self._poses(engine)
        engine.field = RadianceField(engine.field.config).to(self.device)
        engine.refinement.start_at(c2w_N44)
        self.active_N = judged_N.clone()
        self._refine(engine, start, share, fine_at=self.config.fine_at, lr=self.config.lr_refine_learnt,
                     loss=self._coarse_to_fine_loss)
        error_after = self._mean_fit_error(engine, judged_N)
        if error_after < error_before:
            return
        _log.info("fresh field undone: mean image error %.5f after it, %.5f with the field of pose learning",
                  error_after, error_before)
        engine.field, refinement_state, self.outlier_N, self.reposed_N, self.active_N = before
        engine.refinement.load_state_dict(refinement_state)

    def _mean_fit_error(self, engine: GenerativeLifting, views_N: Tensor) -> float:
        """Mean full-image MSE (fine size) of these views from their current poses."""
        errors_N = self._full_image_errors(engine, self._poses(engine)[:, None], self.config.fine_size)[:, 0]
        return float(errors_N[views_N.to(self.device)].mean())

    def _refine(self, engine: GenerativeLifting, start: float, share: float, fine_at: float | None,
                lr: float, loss: Callable | None = None) -> None:
        """The refinement phase: poses and field on the photometric loss. With the outlier
        correction (360 captures) it runs in parts: all views; without the views whose residual
        stands out (suspects), from `suspects_at` of the phase on; after re-posing the suspects,
        with those that fit; and so on for each further look (`correction_rounds`). `loss`: the
        posed loss by default; a fresh field's is `_coarse_to_fine_loss`."""
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
            self._optimise(engine, self._budget(share * part), "refine", loss or self._posed_loss, self.generator,
                           self._pose_optimizer(engine, lr, False), fine_at if i == 0 else None,
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
        """Each suspect re-posed (core.outlier_correction.correct_outliers); those that fit from no pose found
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
            correction = lower_residual(correction, correct_outliers(engine, images, K, restarted_N44, retry_N,
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
        self._refine(engine, 0.0, 1.0, fine_at=self.config.fine_at, lr=self.config.lr_refine)
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
        return self._posed_loss_at(engine, self.config.fine_size, generator)

    def _coarse_to_fine_loss(self, engine: GenerativeLifting, progress: float, generator: torch.Generator,
                             fine: bool) -> Tensor:
        """The posed loss on coarse images while the field is coarse (as pose learning's): a fresh
        field's first steps, where learnt poses are still degrees off, and the oracle's."""
        return self._posed_loss_at(engine, self.config.fine_size if fine else self.config.coarse_size, generator)

    def _posed_loss_at(self, engine: GenerativeLifting, size: int, generator: torch.Generator) -> Tensor:
        images, K = self._level(size)
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

    # ---- oracle

    def oracle(self) -> ReconstructionResult:
        c2w_N44 = (forward_gauge(self.gt_c2w_N44, self.config.forward) if self.config.mode == "forward"
                   else into_gauge(self.gt_c2w_N44, self.radius))
        self.gt_c2w = torch.from_numpy(c2w_N44).float().to(self.device)
        engine = self._new_engine(self.config.seed)
        generator = torch.Generator().manual_seed(self.config.seed)
        loss = self._optimise(engine, self._budget(1.0), "oracle", self._coarse_to_fine_loss, generator,
                              self._pose_optimizer(engine, 0.0, False), self.config.fine_at, (0.0, 1.0))
        return self._result(engine, self.gt_c2w, np.full(self.n, np.nan), self.config.seed, [loss])


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
