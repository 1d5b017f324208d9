"""Settings of analysis by synthesis: render-and-compare refinement (core.render_compare), the
registration of new frames (core.registration, core.direct_alignment) and the outlier
correction (core.outlier_correction)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class RefineConfig:
    """Render-and-compare refinement and registration."""

    damping: float = 0.1
    """Levenberg-Marquardt damping, relative to the Gauss-Newton curvature (keeps a step from
    overshooting where a few pixels' gradients dominate)."""
    difference_step: float = 1e-3
    """Twist step of render-and-compare's forward differences (radians and world units; the
    cameras sit ~3-4 units out, a field cell is ~0.05 wide: the nudge stays inside one trilinear
    cell, and the slope is the field's own)."""
    size: int = 32
    """Longer image side at which views are scored (residuals, confidence, outliers) and the
    training views' reference PSNR is measured; the confidence's tolerances are set at it."""
    search_size: int = 16
    """Longer image side at which a new frame's candidate poses are ranked (and its contrast
    measured: at 8 px chair's frames had contrasts of 0.28-0.89, too close to foreign ones)."""
    candidates: int = 3
    """Encoder hypotheses tried per new frame (most likely first), each also turned by 180
    degrees of azimuth: the flip the encoder confuses most (findings note). Every sphere
    anchor is tried too: the encoder of a scene trained on few views generalises poorly."""
    retrieved_candidates: int = 1
    """Training views most alike a new frame (core.appearance.most_alike) whose poses join its
    candidates (scenes that keep their training views' thumbnails): a start that has the
    training camera's roll and distance, not an anchor's. Chair, 38 frames, 2 seeds, with
    render-and-compare after the search: none 45-58% within 5 degrees, median 4.1-5.9;
    1: 66% / 3.0-3.2 (within 15: 82-89% -> 92%); 3 and 6: 66%, within 15 89%. Same latency."""
    aligned_candidates: int = 1
    """Best-ranked candidates aligned per new frame (core.direct_alignment); the one with the
    lowest residual wins. Chair, 38 frames: 1 and 2 both 95% within 5 degrees (3, measured with
    a first version of the alignment: 95%, and a candidate 90 degrees off won one frame); each
    candidate more costs ~30 ms."""
    alignment_sizes: tuple[int, ...] = (32, 64)
    """Longer image sides (capped at the frame's own) of the frame's levels the alignment steps
    go through, coarse to fine; `size` is always among them (the field renders at it). Chair,
    38 frames: (32, 64) 95% within 5 degrees, median 1.6; (32,) 87%, 2.7; (16, 32, 64) 79%, 3.5."""
    alignment_steps: int = 6
    """Gauss-Newton steps per level and round (chair: 8, 95%; 5, 92%), ~0.35 ms each."""
    alignment_rounds: int = 2
    """Renders of the field from the aligning pose, each followed by the steps (chair: 1 round,
    87% within 5 degrees, median 2.0; 2 rounds 95%, 1.6); a render is ~6 ms at 32 px."""
    psnr_tolerance: float = 24.0
    """dB below the training views' PSNR at which the fit confidence reaches 0."""
    contrast_range: tuple[float, float] = (0.25, 0.75)
    """Contrasts mapped to confidence 0 and 1."""
    min_confidence: float = 0.5
    """Registrations below this are rejected."""
    outlier_mads: float = 4.0
    """A view is an outlier when its log residual lies this many MADs above the median."""
    stays_high_factor: float = 5.0
    """A re-posed suspect is also an outlier when the field still explains it this many times
    worse than the median view it trained on: a frame of another scene that the field learnt to
    fit a little while it was in training, which gives it some contrast (measured on chair, 64
    px: foreign temple frames 4.8-8.7 times the chair median; at 4 the live scene's tiny ring
    test lost a keyframe's registration)."""
    suspect_mads: float = 2.0
    """The same, for setting a view aside to re-pose it (lenient: a few flipped views also drag
    their neighbours' residuals up, and a suspect that fits after all simply comes back)."""
    suspect_min_ratio: float = 1.5
    """A suspect's residual is also at least this many times the median view's. On a few views
    the log residuals' spread is tiny, and the MADs alone set aside views 1.2-1.7 times the
    median (4 of 8 right views of a tiny ring, which the field then learnt without and took
    out as outliers). At 2, a right view that a flipped one had dragged up to 1.5 stayed in,
    and the flipped one was taken out instead of turned back (the tests' 8-view ring)."""
    max_suspect_fraction: float = 1.0 / 3.0
    """At most this share of the views (those with the highest residuals) is set aside at once:
    the field must still learn the scene from the others, against which the suspects are then
    judged."""
    search_elevations_deg: tuple[float, ...] = (-10.0, 5.0, 20.0, 35.0, 50.0, 65.0, 80.0)
    search_azimuths: int = 16
    """The grid of poses on the viewing sphere (looking at the centre) tried for a suspect view,
    next to its own pose's turns: a view the pose learning put at a wrong elevation (chair's
    top views, 60-90 degrees up, sat at 20-50) is no turn about the up axis away."""
    correction_candidates: int = 4
    correction_steps: int = 15
    correction_rays_per_view: int = 512
    """Best-ranked search poses that race per suspect, their refinement steps and pixels (more
    than a registration's: re-posing is not latency-bound as registration is)."""
    correction_race_steps: int = 2
    """Steps every candidate gets before the one with the lowest error goes on alone (a wrong
    candidate shows early)."""
