"""One training run's state and step loop, which the phases (core.training_phases) build on: the
images at each level, fresh engines and their optimisers, the loop that spends a share of the
budget on one loss (cosine decay, the coarse-to-fine switch, divergence rollback, progress), and
the result the run ends with.

Divergence (non-finite loss or a loss above `DivergenceConfig.factor` x the running median) rolls
the engine and optimisers back to the last good in-memory snapshot. Checkpoints to disk are
the caller's job: `result.engine.state_dict()` / `load_state_dict()`.
"""

import math
import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from nvs_ros.core import cameras
from nvs_ros.core.diffusion import GenerativeLifting
from nvs_ros.core.field import RadianceField
from nvs_ros.core.forward_poses import build_forward_engine
from nvs_ros.core.image_set import ImageSet
from nvs_ros.core.orbit_poses import PoseRefinement, orbit_radius_for_fov
from nvs_ros.core.pose_encoder import PoseEncoder
from nvs_ros.core.reconstruction_result import ReconstructionResult
from nvs_ros.core.render_compare import candidate_errors
from nvs_ros.core.trainer_config import TrainerConfig
from nvs_ros.core.training_loop import Budget, DivergenceGuard, adam, all_finite, cosine


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


class TrainingRun:
    """A run's state over one image set (which views train, which are out) and what every phase
    uses: cached image levels, engines and optimisers, `_optimise` (the step loop) and `_result`."""

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
        """The race of pose learning's starts (`TrainingPhases._race`): their poses and errors, and the one kept."""
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
        """(N, 3, S, S) the images at the encoder's input size, in [0, 1]."""
        size = self.config.encoder.input_size
        images = torch.from_numpy(self.image_set.images_NHW3).float() / 255.0
        return cameras.resized_images(images, (size, size)).permute(0, 3, 1, 2).to(self.device)

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
        return adam(groups)

    def _pose_optimizer(self, engine: GenerativeLifting, refine_lr: float, encoder: bool) -> torch.optim.Optimizer:
        groups = [{"params": engine.refinement.refinement_parameters(), "lr": refine_lr,
                   "initial_lr": refine_lr}]
        if encoder:
            groups.append({"params": list(engine.encoder.parameters()), "lr": self.config.lr_encoder,
                           "initial_lr": self.config.lr_encoder})
        return adam(groups)

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
            finite = all_finite(list(engine.parameters()))
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

    def _full_image_errors(self, engine: GenerativeLifting, c2w_NJ44: Tensor, size: int) -> Tensor:
        """(N, J) full-image MSE of every image seen from each of its J candidate poses."""
        images, K = self._level(size)
        return candidate_errors(engine, images, K, c2w_NJ44)

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
