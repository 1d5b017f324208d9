"""Joint refinement (SparseAGS's last step): the field and every view's pose trained together on
the photometric loss."""

import torch
from torch import Tensor

from nvs_ros.core import cameras
from nvs_ros.core.diffusion import GenerativeLifting
from nvs_ros.core.training_loop import DivergenceConfig, DivergenceGuard, adam, field_regulariser


class JointRefinement:
    """The field and every view's pose trained together on the photometric loss (SparseAGS's
    final joint refinement; also how a live scene keeps learning as views are added), with the
    field's regulariser and the divergence guard of every training loop (core.training_loop).

    Views carry a fixed base pose and a learnable twist; `active_N` takes views out of the
    field's training (outliers) without forgetting them. A caller that adds or drops views
    builds a new one from the current poses (`c2w()`).
    """

    def __init__(self, engine: GenerativeLifting, c2w_N44: Tensor, pose_lr: float = 1e-3,
                 field_lr_scale: float = 1.0, divergence: DivergenceConfig = DivergenceConfig()) -> None:
        self.engine = engine
        self.base_N44 = c2w_N44.detach().float().clone()
        self.twists = torch.nn.ParameterDict({"N6": torch.zeros(len(c2w_N44), 6, device=c2w_N44.device)})
        self.active_N = torch.ones(len(c2w_N44), dtype=torch.bool, device=c2w_N44.device)
        groups = engine.field.parameter_groups()
        for group in groups:
            group["lr"] *= field_lr_scale
        self.field_optimizer = adam(groups)
        self.pose_optimizer = adam(list(self.twists.parameters()), lr=pose_lr)
        self.guard = DivergenceGuard(divergence)
        self.steps = 0

    def c2w(self, index_B: Tensor | None = None) -> Tensor:
        twist = self.twists["N6"] if index_B is None else self.twists["N6"][index_B]
        base = self.base_N44 if index_B is None else self.base_N44[index_B]
        return cameras.se3_exp(twist) @ base

    def step(self, images_NHW3: Tensor, K_N33: Tensor, batch: int, generator: torch.Generator | None = None) -> float:
        """One Adam step of field and twists on a random batch of active views; returns the loss.
        A diverged step is not taken: field, poses and optimisers go back to the last good
        snapshot (DivergedError once that has happened too often)."""
        active = torch.nonzero(self.active_N)[:, 0]
        pick = active[torch.randperm(len(active), generator=generator)[:batch].to(active.device)]
        loss = self.engine.posed_loss(images_NHW3[pick], K_N33[pick], self.c2w(pick), generator)
        value = float(loss.detach())
        objects = {"engine": self.engine, "field_optimizer": self.field_optimizer,
                   "pose_optimizer": self.pose_optimizer, "twists": self.twists}
        if not self.guard.healthy(value):
            self.guard.roll_back(objects, f"loss {value:.3g} at step {self.steps}")
            return value
        self.field_optimizer.zero_grad(set_to_none=True)
        self.pose_optimizer.zero_grad(set_to_none=True)
        (loss + field_regulariser(self.engine)).backward()
        self.field_optimizer.step()
        self.pose_optimizer.step()
        self.steps += 1
        self.guard.record(value, self.steps, objects)
        return value
