"""The engine on a GPU (`--device cuda`): training, the products and a registration run on the
GPU with the trainer's CPU random generator (the same noise on either device), and a scene saved
from the GPU reloads on the CPU. Skipped where torch sees no CUDA device (the CI machine); the
same path ran on an H200 through bench/reconstruct.py and bench/registration.py (README.md)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny_engine import TINY

from nvs_ros.core.diffusion import DiffusionConfig, GenerativeLifting
from nvs_ros.core.metrics import rotation_angle_deg
from nvs_ros.core.training_run import build_engine
from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.output_folder import read_poses
from nvs_ros.io.scene_checkpoint import load_scene
from nvs_ros.app.reconstruction import run_reconstruction

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_the_noise_of_a_seed_is_the_same_on_the_gpu() -> None:
    images_B3HW = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    t_B = torch.tensor([10, 500])
    on = {}
    for device in ("cpu", "cuda"):
        engine: GenerativeLifting = _engine().to(device)
        on[device] = engine.noisy_input(images_B3HW.to(device), t_B.to(device),
                                        torch.Generator().manual_seed(0)).cpu()
    torch.testing.assert_close(on["cuda"], on["cpu"])


def _engine() -> GenerativeLifting:
    return build_engine(replace(TINY, diffusion=DiffusionConfig(rays_per_step=256, samples_per_ray=8)), 4, 4.0,
                        (torch.eye(3), 8, 8))


def test_a_tiny_scene_trains_writes_its_products_and_registers_on_the_gpu(tmp_path) -> None:
    views = load_image_set("bundled:object", max_side=32, views=9)
    out = tmp_path / "run"
    run_reconstruction(views, out, replace(TINY, iterations=200, device="cuda"))
    estimates = read_poses(out)
    assert estimates.registered_N.sum() >= 8 and np.isfinite(estimates.c2w_N44[estimates.registered_N]).all()
    assert (out / "cloud.ply").stat().st_size > 0 and (out / "report.html").is_file()
    on_gpu, on_cpu = load_scene(out, device="cuda"), load_scene(out, device="cpu")
    gpu, cpu = (scene.register(views.images_NHW3[1:2], views.K_N33[1:2]) for scene in (on_gpu, on_cpu))
    assert gpu.accepted_B.tolist() == cpu.accepted_B.tolist()
    R_gpu, R_cpu = (r.c2w_B44[0, :3, :3].double().cpu().numpy() for r in (gpu, cpu))
    assert rotation_angle_deg(R_gpu.T @ R_cpu) < 1.0  # the same pose, up to the devices' arithmetic
