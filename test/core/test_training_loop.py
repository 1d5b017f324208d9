"""nvs_ros.core.training_loop, as the live scene's continued training (core.joint_refinement.JointRefinement)
uses it: a diverged step is rolled back, not taken, and training goes on; too many give up."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny_engine import TINY

from nvs_ros.core.joint_refinement import JointRefinement
from nvs_ros.core.training_run import build_engine
from nvs_ros.core.training_loop import Budget, DivergedError, DivergenceConfig, adam, all_finite, cosine
from nvs_ros.io.datasets import load_image_set


@pytest.fixture()
def joint():
    torch.manual_seed(0)
    views = load_image_set("bundled:object", max_side=16, views=6)
    engine = build_engine(TINY, len(views), radius=float(np.linalg.norm(views.c2w_N44[0, :3, 3])))
    images = torch.from_numpy(views.images_NHW3).float() / 255.0
    K = torch.from_numpy(views.K_N33).float()
    return engine, images, K, torch.from_numpy(views.c2w_N44).float()


def test_a_diverged_step_of_joint_training_is_rolled_back(joint):
    engine, images, K, c2w = joint
    refinement = JointRefinement(engine, c2w, divergence=DivergenceConfig(snapshot_every=5))
    generator = torch.Generator().manual_seed(0)
    losses = [refinement.step(images, K, 4, generator) for _ in range(10)]
    assert all(math.isfinite(loss) for loss in losses)
    twists, grid = refinement.twists["N6"].detach().clone(), engine.field.grid.detach().clone()
    assert math.isnan(refinement.step(torch.full_like(images, math.nan), K, 4, generator))  # seen, not taken
    assert refinement.guard.rollbacks == 1 and refinement.steps == 10
    # the snapshot of step 10 (every 5 steps) is the state before the diverged step
    assert torch.equal(refinement.twists["N6"].detach(), twists) and torch.equal(engine.field.grid, grid)
    assert all(math.isfinite(refinement.step(images, K, 4, generator)) for _ in range(5))


def test_joint_training_gives_up_after_too_many_rollbacks(joint):
    engine, images, K, c2w = joint
    refinement = JointRefinement(engine, c2w, divergence=replace(DivergenceConfig(), max_rollbacks=1))
    nan_images = torch.full_like(images, math.nan)
    refinement.step(images, K, 4)
    refinement.step(nan_images, K, 4)
    assert refinement.guard.rollbacks == 1
    with pytest.raises(DivergedError, match="could not be rolled back"):
        refinement.step(nan_images, K, 4)


def test_budget_progress_and_cosine_decay():
    budget = Budget(time_budget_s=None, iterations=100, share=0.5)
    assert budget.steps == 50 and budget.progress() == 0.0
    budget.step = 25
    assert budget.progress() == 0.5
    assert cosine(0.0, 0.05) == 1.0 and math.isclose(cosine(1.0, 0.05), 0.05) and cosine(0.5, 0.0) == 0.5


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_all_finite_finds_one_bad_element_among_a_grid_of_good_ones(bad):
    params = [torch.nn.Parameter(torch.randn(1, 4, 17, 17, 17)), torch.nn.Parameter(torch.randn(6))]
    assert all_finite(params)
    params[0].data[0, 2, 5, 7, 11] = bad
    assert not all_finite(params)


def test_the_fused_optimiser_takes_plain_adams_steps():
    torch.manual_seed(0)
    start = torch.randn(50)
    fused, plain = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    optimisers = [adam([{"params": [fused], "lr": 1e-2}]), torch.optim.Adam([plain], lr=1e-2)]
    for _ in range(20):
        for param, optimiser in zip((fused, plain), optimisers):
            optimiser.zero_grad()
            (param ** 2 * torch.linspace(0.5, 2.0, 50)).sum().backward()
            optimiser.step()
    assert torch.allclose(fused, plain, atol=1e-5) and not torch.allclose(fused, start)
