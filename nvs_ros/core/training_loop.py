"""What every training loop of the engine shares: a share of the budget, the optimiser, the cosine
learning-rate decay, the field's regulariser, a finiteness check of the parameters, and the
divergence guard that rolls a diverged step back."""

import copy
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nvs_ros.core.diffusion import GenerativeLifting

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DivergenceConfig:
    factor: float = 20.0
    margin: float = 0.5
    """A step diverged when its loss is not finite or above factor x the median of the last 50
    losses + margin (losses are MSEs of [0, 1] colours plus 0.1 x a cross-entropy)."""
    snapshot_every: int = 25
    """Steps between in-memory snapshots a diverged step rolls back to."""
    max_rollbacks: int = 10
    """Rollbacks after which training gives up (DivergedError)."""


class DivergedError(RuntimeError):
    """Training diverged and could not be rolled back: the caller keeps its last finished result."""


class Budget:
    """A share of the time and step budget; progress is the larger of the two fractions."""

    def __init__(self, time_budget_s: float | None, iterations: int | None, share: float) -> None:
        self.seconds = None if time_budget_s is None else time_budget_s * share
        self.steps = None if iterations is None else max(1, round(iterations * share))
        self.start = time.perf_counter()
        self.step = 0

    def progress(self) -> float:
        fractions = [0.0]
        if self.seconds is not None:
            fractions.append((time.perf_counter() - self.start) / max(self.seconds, 1e-9))
        if self.steps is not None:
            fractions.append(self.step / self.steps)
        return min(1.0, max(fractions))


def adam(params: list[dict] | list[Tensor], lr: float = 1e-3) -> torch.optim.Optimizer:
    """The engine's optimiser: Adam, fused (one kernel over all parameters). Plain Adam loops over
    the tensors, which on a CPU costs several times as much a step for the fine grid and the
    encoder (bench/README.md)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def all_finite(params: list[Tensor]) -> bool:
    """Whether every parameter is finite: a sum is NaN or infinite when an element is (and
    overflows only past 1e38, far beyond any value a field or pose takes), one read of each
    tensor instead of a mask the size of the grid."""
    with torch.no_grad():
        return bool(torch.stack([p.sum() for p in params]).isfinite().all())


def cosine(progress: float, final_fraction: float) -> float:
    """Learning-rate factor at `progress` (0..1) of a cosine decay to `final_fraction`."""
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def field_regulariser(engine: GenerativeLifting) -> Tensor | float:
    """The field's total-variation term, weighted by its config (0: none), added to every loss
    the field trains on."""
    weight = engine.field.config.tv_weight
    return weight * engine.field.tv_loss() if weight > 0 else 0.0


class DivergenceGuard:
    """Detects a diverged step and restores the last good in-memory snapshot of the objects
    (anything with state_dict / load_state_dict: engine, optimisers, pose twists)."""

    def __init__(self, config: DivergenceConfig = DivergenceConfig()) -> None:
        self.config = config
        self.history: list[float] = []
        self.snapshot: dict | None = None
        self.rollbacks = 0

    def healthy(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return False
        recent = self.history[-50:]
        # The absolute margin keeps legitimate jumps of a tiny loss (a sharp distribution
        # switching hypotheses costs up to ~0.1 of classification loss) from counting.
        if len(recent) < 10:
            return True
        return loss <= self.config.factor * float(np.median(recent)) + self.config.margin

    def record(self, loss: float, step: int, objects: dict) -> None:
        self.history.append(loss)
        if self.snapshot is None or step % self.config.snapshot_every == 0:
            self.take(objects)

    def take(self, objects: dict) -> None:
        self.snapshot = {name: copy.deepcopy(obj.state_dict()) for name, obj in objects.items()}

    def roll_back(self, objects: dict, reason: str) -> None:
        self.rollbacks += 1
        if self.snapshot is None or self.rollbacks > self.config.max_rollbacks:
            raise DivergedError(f"training diverged ({reason}) and could not be rolled back "
                                f"({self.rollbacks} rollbacks)")
        _log.warning("training diverged (%s): rolling back to the last good snapshot", reason)
        for name, obj in objects.items():
            obj.load_state_dict(copy.deepcopy(self.snapshot[name]))
