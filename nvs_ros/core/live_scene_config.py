"""Settings of a live scene (core.live_scene), and what its keyframes' prior poses are."""

from dataclasses import dataclass, field

from nvs_ros.core.pose_prior import PriorGate
from nvs_ros.core.trainer_config import TrainerConfig

PRIOR_SOURCE = "odometry"
"""What the keyframes' prior poses are (the scale source the products report)."""
MIN_PRIOR_BASELINE = 1e-3
"""Prior camera centres closer together than this (the source's units) fix no scale."""


@dataclass(frozen=True)
class LiveSceneConfig:
    min_keyframes: int = 8
    """Training starts when this many keyframes are in."""
    idle_round_s: float | None = None
    """When no keyframe has come for this long [s], training starts with `min_round_keyframes`
    or more instead of waiting for `min_keyframes`; None: always wait for them."""
    min_round_keyframes: int = 3
    """The fewest keyframes a round starts with after `idle_round_s`: two views pose each other
    only up to their shared features, a third is what a ring or a chain needs to check them."""
    round_budget_s: float = 60.0
    """Training time of one full round."""
    round_iterations: int | None = None
    """Steps of one full round instead of its time (reproducible runs and tests)."""
    max_keyframes: int = 64
    """Keyframes kept at most: beyond it the most redundant one (nearest camera centre to
    another keyframe's) is forgotten, so memory and step time stay bounded on a long run."""
    regrow_factor: float = 1.5
    """A full round runs again once the keyframes have grown by this factor since the last one."""
    unplaced_fraction: float = 0.25
    """After a round started from chained features, a full round also runs once the keyframes
    added since that registration could not place reach this share of the round's keyframes (and
    two): the chain places what registration into a young field rejects (the bundled room
    streamed: its last 6 of 24 keyframes waited for a round at 27 that never came). Not after
    odometry or learnt starts: there a new round would learn again what odometry had started
    (a node test's tracking, whose 6 s scene rejects many frames, lost its odometry frame)."""
    device: str = "cpu"
    seed: int = 0
    batch_images: int = 8
    """Views per continued-training step."""
    continued_lr_scale: float = 0.3
    """Learning rates of continued training (field and poses) as a share of a full round's: it
    refines a scene that has converged and must not shake it."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Settings of the full rounds (its time budget is replaced by round_budget_s)."""
    priors_as_initial_poses: bool = True
    """A full round starts from the keyframes' prior poses (refined with the field, missing ones
    filled from the nearest in time) instead of learning the poses from the images, when at
    least half of the keyframes have one."""
    prior_gate: PriorGate = PriorGate(max_offset_fraction=0.25, max_turn_deg=20.0, residual_factor=3.0)
    """A registered frame outside this gate around its prior is rejected whatever its confidence:
    odometry is locally right, and a registration that contradicts it found a wrong look-alike
    (the room's walls: a CI run on a loaded CPU put one 1.8 radii off at confidence >= 0.5)."""
