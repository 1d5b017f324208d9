"""The configuration of one reconstruction: budget, phases and learning rates, and the settings
that a capture type or a pose start changes."""

from dataclasses import dataclass, field, replace
from typing import Literal

from nvs_ros.core.diffusion import DiffusionConfig
from nvs_ros.core.field import FieldConfig
from nvs_ros.core.forward_poses import ForwardConfig
from nvs_ros.core.pose_encoder import PoseEncoderConfig
from nvs_ros.core.refine_config import RefineConfig
from nvs_ros.core.self_check import SelfCheckConfig
from nvs_ros.core.training_loop import DivergenceConfig


@dataclass(frozen=True)
class TrainerConfig:
    """Budget, phases and learning rates of one reconstruction."""

    mode: Literal["360", "forward"] = "360"
    """Capture type: cameras around the scene (orbit anchors, world-space box) or facing one
    way (core.forward_poses: K = 1 near a reference camera, NDC field; `forward` configures it)."""
    time_budget_s: float | None = 600.0
    """Wall-clock budget of the training phases (re-assignment and the final evaluation render
    come on top: seconds at 64 px); None: only `iterations` counts."""
    iterations: int | None = None
    """Step budget of all phases (shared as the time is); None: only the time counts."""
    poses: Literal["estimate", "gt"] = "estimate"
    """"gt": oracle, train the field with the ground-truth poses (tests and gap measurements)."""
    coarse_size: int = 32
    fine_size: int = 64
    """Longer image side rendered in the coarse / fine stage."""
    coarse_grid: int = 32
    fine_grid: int = 64
    """Field grid resolution in the coarse / fine stage."""
    fine_at: float = 0.4
    """Fraction of the pose-learning phase after which the fine stage starts."""
    batch_images: int = 16
    lr_encoder: float = 1e-3
    lr_refine: float = 3e-3
    """Learning rate of the per-image deltas (radians, log radius) in the refinement phase."""
    initial_fine_size: int = 128
    """Fine size (capped at the images' own) when the poses start from given ones (`--init`,
    odometry): with no pose learning the whole budget refines, and chained or odometry poses
    are already finer than a 64 px pixel. Measured on llff_fern at 252 px, 2 min, median
    relative rotation error: chained 0.41 degrees; refined at 64 px 0.54 (lr_refine 1e-3 to
    1e-2: 0.54-0.87); at 128 px 0.45 (0.34 with lr_refine 3e-3)."""
    lr_refine_while_encoding: float = 0.0
    """The same during pose learning (0: hypotheses come from the encoder alone, as measured)."""
    lr_final_fraction: float = 0.05
    """Cosine decay ends at this fraction of each learning rate."""
    lr_refine_learnt: float = 1e-2
    """The same for learnt poses (360 captures), which start 8-20 degrees off where given ones
    start a few: measured on the demo's ring (bundled object, 24 views, 128 px, 2,500 steps),
    seeds 2 and 3 from the same learnt poses, RRA@15 / median rotation error, with `fresh_field`:
    3e-3 1.00 / 0.9 and 0.80 / 5.5 degrees, 1e-2 1.00 / 0.8 and 1.00 / 1.1."""
    refine_fraction: float = 0.4
    """Share of the budget for re-assignment + refinement (0 disables both)."""
    fresh_field: bool = True
    """Learnt poses of a 360 capture are refined with a fresh field that grows coarse to fine from
    them, outlier correction included, not with the field of pose learning, which learnt the
    scene while the poses were wrong and keeps some of it (blur, floaters) that holds them there;
    undone where the fresh field explains the views worse (a budget of tens of steps). Demo ring
    as above, lr_refine_learnt 1e-2: refining with the field of pose learning, then a fresh one
    for the last half, RRA@15 1.00 and 1.00, median 1.2 and 2.2 degrees; a fresh field from the
    start 1.00 and 1.00, 0.8 and 1.1. Chair (100 views, 64 px, one thread), the former split of a
    refinement then a fresh field: ten minutes of the fresh field from the poses of a 30-minute run
    took RRA@15 81% -> 92%."""
    reassign_size: int = 32
    outlier_correction: bool = True
    """During refinement (360 captures), views whose photometric residual stands out are set
    aside, then re-posed by a search over the viewing sphere; those that still do not fit are
    taken out of the field's training and reported unregistered (core.outlier_correction.correct_outliers;
    `suspects_at`, `correction_rounds`). Views that look like none of the others
    (core.appearance) are kept out of training from the start and are suspects at the first look."""
    align_views: bool = True
    """During refinement (360 captures, poses refined), every view in training is aligned to the
    field before each part after the first and once at the end (core.direct_alignment.align_views), kept
    where it then explains its view better: the joint refinement's small steps leave views a few
    degrees, or a view's spacing, short of where the field explains them best."""
    suspects_at: float = 0.1
    """Fraction of the refinement phase after which the suspects are set aside. While a flipped view
    trains with the others, its pose wanders and it paints its view into the field where the others
    should be: measured on chair (64 px, 17 of 87 initial poses flipped, 300 s, before the sphere
    grid of the correction), flips corrected 13 and 9 of 17 (seeds 0, 1) with the suspects set aside
    after a quarter of the phase, 15 and 15 after a tenth."""
    correction_rounds: int = 2
    """Looks at the suspects. A later look takes the views still out and those whose residual stands
    out now: a tenth of the phase in, the field does not show every wrong view yet (same chair
    runs: the second look found 2 and 13 flipped views the first had missed, all 17 corrected in
    both)."""
    later_look: RefineConfig = field(default_factory=lambda: RefineConfig(suspect_min_ratio=2.0))
    """Refinement settings of a later look: it sets aside only views at least twice the median view's residual (the first,
    `RefineConfig.suspect_min_ratio`, 1.5: it must also catch the right views a wrong one drags
    up). By then a wrong view stands out more (chair: flipped views 3.3-7.6 times the median at the
    first look, 4.3-6.3 at the second), while on the tests' tiny rings right views sat at 1.5 and
    came out of a last look worse than they went in."""
    background_from_images: bool = True
    """The field's constant background is the grey level of the images' plain border when they
    have one (`core.image_set.plain_border_level`: an object on black cloth), instead of
    `diffusion.background` (white); textured borders keep the configured level."""
    starts: int = 1
    """Independent starts (seeds `seed`, `seed` + 1, ...) racing through the coarse stage of pose
    learning, which they share (each gets `fine_at` / `starts` of the phase); the lowest
    photometric error of the most likely hypotheses (flips re-assigned) wins and goes on alone,
    and the starts' agreement is evidence for the self-check (core.self_check). One by default:
    at the demo's budget three starts left each too few steps (bundled object, 2500 steps, RRA@15
    100%, 77%, 77%, 50% over four seeds and arithmetics, against 100% for one start at seed 0),
    and their evidence did not separate right from wrong runs there; on tiny rings it did."""
    seed: int = 0
    device: str = "cpu"
    scene_radius: float | None = None
    """Radius of the ball that fills the view, world units; None: the field box's half size."""
    occupancy_every: int = 16
    """Steps between occupancy-grid updates of the field."""
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    self_check: SelfCheckConfig = field(default_factory=SelfCheckConfig)
    encoder: PoseEncoderConfig = field(default_factory=PoseEncoderConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    forward: ForwardConfig = field(default_factory=ForwardConfig)
    field: FieldConfig = field(default_factory=FieldConfig)

    def keeping_initial_poses(self) -> "TrainerConfig":
        """These settings for initial poses the photometric refinement would make worse (`--init
        features`, the live scene's chained start): the chained poses (SIFT tracks, bundle-adjusted)
        stay as they are and the field learns around them. Measured on dtu_scan65 (49 views, 400 px,
        300 s): the photometric refinement took the training views from 0.24 to 11.0 degrees median
        relative rotation error, and from the ground-truth poses to 10.2 (the 360 field does not model
        DTU's backdrop; with the images masked to white, 3.0): at 128 px it cannot match a bundle
        adjustment of 400 px features. The bundle adjustment's outlier rejection stands in for the
        correction's."""
        return replace(self, lr_refine=0.0, outlier_correction=False)


def config_for_mode(mode: Literal["360", "forward"], **settings) -> TrainerConfig:
    """A TrainerConfig for `mode` with that mode's best measured defaults, then `settings`.
    Forward-facing captures refine longer and faster than the defaults (tuned on 360 captures):
    measured on llff_fern (20 views, 64 px, 570 steps, seed 0), defaults RRA@15 1.00, CCA@0.1 0.55,
    median relative rotation error 1.6 degrees; refine_fraction 0.5 alone 1.00 / 0.55 / 1.0; with
    lr_refine 1e-2 too 1.00 / 1.00 / 0.8."""
    defaults = TrainerConfig(mode=mode, refine_fraction=0.5, lr_refine=1e-2) if mode == "forward" \
        else TrainerConfig(mode=mode)
    return replace(defaults, **settings)
