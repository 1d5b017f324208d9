"""Engine settings small enough for tests: coarse 16 px / 16^3 -> fine 32 px / 24^3; 8 anchors
on one ring (the bundled ring is at 25 degrees: poses have 2 degrees of freedom, azimuth and
elevation). Measured: bundled:object, 8 views, 32 px, 1500 steps converge in ~30 s.
One start (no race): the tests of the other pieces keep the single start they were measured
with; test_trainer races three."""

from nvs_ros.core.diffusion import DiffusionConfig
from nvs_ros.core.field import FieldConfig
from nvs_ros.core.orbit_poses import OrbitConfig
from nvs_ros.core.pose_encoder import PoseEncoderConfig
from nvs_ros.core.trainer_config import TrainerConfig

TINY = TrainerConfig(
    time_budget_s=None, iterations=1500, coarse_size=16, fine_size=32, coarse_grid=16, fine_grid=24,
    batch_images=8, lr_encoder=2e-3, refine_fraction=0.45, reassign_size=16, occupancy_every=1000, starts=1,
    encoder=PoseEncoderConfig(input_size=32, channels=(16, 32, 32, 32), hidden=64, groups=4,
                              orbit=OrbitConfig(num_azimuths=8, ring_elevations_deg=(25.0,))),
    diffusion=DiffusionConfig(rays_per_step=2048, samples_per_ray=16),
    field=FieldConfig(resolution=16),
)
