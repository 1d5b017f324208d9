"""One reconstruction end to end: load, estimate cameras and scene, write the output folder.

    poses.json, poses_tum.txt, run.json, metrics.json (with ground truth)   (io.output_folder)
    scene.pt, scene.json   the trained scene: register frames into it, render it  (io.scene_checkpoint)
    cloud.ply      coloured points where the field is opaque, seen from the estimated cameras
    views/         real and rendered views side by side (<name>_real.png, _render.png): the
                   held-out views and a few training views
    report.html    cameras vs ground truth after alignment, views, training curves, metrics

Every 8th image is held out: not trained on, registered into the finished scene afterwards
(encoder pass + direct alignment, core.registration), rendered from that pose and scored (PSNR,
SSIM): novel-view synthesis with unknown poses. poses.json covers every image.
The estimator sees `image_set.without_ground_truth()` (the oracle `poses="gt"` excepted);
ground truth is read here only to score the result.
"""

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.cameras import scale_intrinsics
from nvs_ros.core.errors import InputError
from nvs_ros.core.image_set import ImageSet, evenly_spaced_indices
from nvs_ros.core.pose_prior import PriorGate, align_to_prior
from nvs_ros.core.metrics import finite_or_none, psnr, ssim
from nvs_ros.core.sim3 import ransac_sim3, umeyama_sim3
from nvs_ros.core.products import backproject, merge_clouds
from nvs_ros.core.scene import Scene
from nvs_ros.core.reconstruction_result import ReconstructionResult
from nvs_ros.core.trainer import reconstruct
from nvs_ros.core.training_run import TrainingProgress
from nvs_ros.core.trainer_config import TrainerConfig
from nvs_ros.io.evaluation import score_estimates
from nvs_ros.io.output_folder import software_versions, write_json, write_output_folder, write_png
from nvs_ros.io.point_cloud_ply import write_point_cloud_ply
from nvs_ros.io.report import ReportContent, write_report
from nvs_ros.io.scene_checkpoint import save_scene

_log = logging.getLogger(__name__)

HOLD_OUT_EVERY = 8
"""Every 8th image (from the first) is held out of training and registered afterwards."""
PRIOR_AGREEMENT = PriorGate(max_offset_fraction=0.1, max_turn_deg=5.0)
"""A registered held-out view that lands this near its initial pose is accepted whatever its
confidence."""
REPORT_TRAINING_VIEWS = 4
MIN_TRAINING_VIEWS = 2
"""Fewer views fix no relative pose: the trainer needs two at least."""
"""Training views rendered into views/ and the report next to the held-out ones."""


def run_reconstruction(image_set: ImageSet, out_dir: Path, config: TrainerConfig,
                       progress: Callable[[TrainingProgress], None] | None = None,
                       run_info: dict | None = None, hold_out_every: int = HOLD_OUT_EVERY,
                       initial_c2w_N44: np.ndarray | None = None, prior_source: str | None = None,
                       learn_instead: TrainerConfig | None = None) -> "ReconstructionRun":
    """Reconstruct `image_set` without its held-out views, register those into the scene,
    write every product to `out_dir`; returns what was written and the training it came from.

    `initial_c2w_N44` (NaN rows: unknown) start the poses instead of learning them; with
    `prior_source` (e.g. "poses file") they are also the frame and scale of the products. With
    `learn_instead`, initial poses the run's self-check does not find converged (a feature chain
    fooled by a symmetric object) are not kept blindly: the poses are learnt from the images with
    that configuration, and the learnt run is kept where its own self-check finds it converged."""
    out_dir = Path(out_dir)
    check_inputs(image_set, initial_c2w_N44, hold_out_every)
    started = time.perf_counter()
    run_info = dict(run_info or {})
    trained = _train(image_set, config, progress, hold_out_every, initial_c2w_N44)
    if learn_instead is not None and initial_c2w_N44 is not None and not trained.result.verdict.converged:
        _log.warning("the initial poses are %s (%s): learning the poses from the images instead",
                     trained.result.verdict.status, "; ".join(trained.result.verdict.reasons))
        learnt = _train(image_set, learn_instead, progress, hold_out_every, None)
        run_info["initial_poses_verdict"] = trained.result.verdict.as_dict()
        kept = learnt.result.verdict.converged
        _log.info("learnt poses %s: keeping the %s ones", learnt.result.verdict.status,
                  "learnt" if kept else "initial")
        if kept:
            trained, initial_c2w_N44, prior_source, config = learnt, None, None, learn_instead
            run_info["initial_poses"] = "none (the initial poses were not converged)"
    result, train_set, registered_later_N, held_out_N = (trained.result, trained.train_set,
                                                         trained.registered_later_N, trained.held_out_N)
    initial = None if initial_c2w_N44 is None else initial_c2w_N44[~registered_later_N]
    scene = Scene.from_training(result.engine, result.config, train_set.names, train_set.images_NHW3, train_set.K_N33,
                                result.c2w_N44)
    if prior_source is not None and initial is not None:
        use_frame_of(scene, initial, prior_source)
    train_s = time.perf_counter() - started
    estimates = all_estimates(image_set, registered_later_N, result, scene, config, initial_c2w_N44)
    register_s = time.perf_counter() - started - train_s
    metrics = score_estimates(estimates, image_set) if image_set.has_ground_truth else None
    if metrics is not None:  # the run's own verdict beside what ground truth says of it
        metrics["verdict"] = result.verdict.status
    info = {"estimator": "nvs_ros generative lifting" + (" (oracle: ground-truth poses)" if config.poses == "gt" else ""),
            "config": dataclasses.asdict(result.config), "seed": config.seed, "kept_seed": result.seed,
            "mode": config.mode, "start_errors": [finite_or_none(e) for e in result.start_errors],
            "rollbacks": result.rollbacks,
            "dataset": image_set.source, "num_views": len(image_set),
            "held_out": [image_set.names[i] for i in np.flatnonzero(held_out_N)],
            "image_size": [image_set.width, image_set.height], **run_info}
    info["verdict"] = result.verdict.as_dict()
    info["timings"] = {"train_s": train_s, "register_held_out_s": register_s}
    info["training_steps"] = len(result.curves)  # with train_s, the speed of a device at this size
    info["output_frame"] = "gauge (arbitrary scale)" if scene.output_frame is None else scene.scale_source
    published = in_output_frame(estimates, scene)
    write_output_folder(out_dir, published, info, metrics)  # poses first: the main product
    save_scene(out_dir, scene)

    products_started = time.perf_counter()
    view_pairs = write_views(out_dir / "views", scene, estimates, image_set, held_out_N, ~registered_later_N)
    if metrics is not None:
        metrics.update(view_synthesis_metrics(view_pairs))
        write_json(out_dir / "metrics.json", metrics)
    write_cloud(out_dir / "cloud.ply", scene)
    write_report(out_dir / "report.html", report_content(image_set, estimates, result, metrics, view_pairs))
    info["timings"]["products_s"] = time.perf_counter() - products_started
    info["timings"]["total_s"] = time.perf_counter() - started
    write_json(out_dir / "run.json", {"versions": software_versions(), **info})
    return ReconstructionRun(metrics=metrics, estimates=published, training=result,
                             run_info=info)


@dataclass(frozen=True)
class ReconstructionRun:
    """What `run_reconstruction` wrote, for callers that read it rather than the files."""

    metrics: dict | None
    """metrics.json's content; None without ground truth."""
    estimates: CameraEstimates
    """poses.json's content: every image, in the products' frame."""
    training: ReconstructionResult
    """The kept training of the views trained on (in their order): re-posed and outlier views,
    verdict, curves."""
    run_info: dict
    """run.json's content, without the software versions."""


@dataclass
class _Trained:
    """One training of the views that are not registered afterwards."""

    result: ReconstructionResult
    train_set: ImageSet
    held_out_N: np.ndarray
    registered_later_N: np.ndarray
    """Held out, or without an initial pose: registered into the finished scene."""


def _train(image_set: ImageSet, config: TrainerConfig, progress: Callable[[TrainingProgress], None] | None,
           hold_out_every: int, initial_c2w_N44: np.ndarray | None) -> _Trained:
    held_out_N, registered_later_N = _registered_later(image_set, hold_out_every, initial_c2w_N44)
    unplaced = int((registered_later_N & ~held_out_N).sum())
    if unplaced:
        _log.info("%d views without an initial pose are registered after training", unplaced)
    train_set = image_set.subset(np.flatnonzero(~registered_later_N))
    estimator_input = train_set if config.poses == "gt" else train_set.without_ground_truth()
    initial = None if initial_c2w_N44 is None else initial_c2w_N44[~registered_later_N]
    result = reconstruct(estimator_input, config, progress, initial_c2w_N44=initial)
    return _Trained(result, train_set, held_out_N, registered_later_N)


def check_inputs(image_set: ImageSet, initial_c2w_N44: np.ndarray | None = None,
                 hold_out_every: int = HOLD_OUT_EVERY) -> None:
    """Raise InputError where `image_set` cannot be reconstructed (from these initial poses, NaN
    rows: none): too few images, or initial poses that place too few of the training images.
    `run_reconstruction` checks first; a caller may check before it starts showing progress."""
    if len(image_set) < MIN_TRAINING_VIEWS:
        raise InputError(f"{image_set.source} holds {len(image_set)} image(s); a reconstruction needs at least "
                         f"{MIN_TRAINING_VIEWS}")
    held_out_N, registered_later_N = _registered_later(image_set, hold_out_every, initial_c2w_N44)
    if (~registered_later_N).sum() < MIN_TRAINING_VIEWS:
        raise InputError(f"the initial poses place {int((~registered_later_N).sum())} of the "
                         f"{int((~held_out_N).sum())} training images (held-out ones aside); at least "
                         f"{MIN_TRAINING_VIEWS} need a pose, or start without initial poses")


def _registered_later(image_set: ImageSet, hold_out_every: int, initial_c2w_N44: np.ndarray | None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(N,) bool masks: the held-out views, and those registered into the finished scene instead
    of trained on (held out, or without an initial pose)."""
    held_out_N = held_out_mask(len(image_set), hold_out_every)
    # views the given poses miss are registered into the scene afterwards, as the held-out ones
    # are: a stand-in pose would be trained on (and kept, where the poses are not refined)
    unplaced_N = (np.zeros(len(image_set), dtype=bool) if initial_c2w_N44 is None
                  else ~np.isfinite(initial_c2w_N44).all(axis=(1, 2)) & ~held_out_N)
    return held_out_N, held_out_N | unplaced_N


def use_frame_of(scene: Scene, prior_c2w_N44: np.ndarray, source: str) -> None:
    """Give the scene's products in the frame (and scale) of the poses it started from, when
    they fix one (core.pose_prior)."""
    alignment = align_to_prior(scene.c2w_N44, prior_c2w_N44, source)
    if alignment is None:
        _log.warning("the %s poses fix no frame (fewer than two, or no baseline): products stay in the "
                     "reconstruction's own frame and scale", source)
        return
    scene.use_frame(alignment)
    _log.info("products in the frame of the %s: scale %.4g, %d of %d cameras agree (median centre residual %.3g)",
              source, alignment.to_prior.scale, int(alignment.inlier_N.sum()), len(prior_c2w_N44),
              float(np.nanmedian(alignment.centre_residual_N)))


def in_output_frame(estimates: CameraEstimates, scene: Scene) -> CameraEstimates:
    """The estimates as published: in the scene's output frame, with its scale source."""
    if scene.output_frame is None:
        return estimates
    return dataclasses.replace(estimates, c2w_N44=scene.to_output(estimates.c2w_N44), scale_source=scene.scale_source)


def held_out_mask(count: int, every: int) -> np.ndarray:
    """(N,) bool: every `every`-th image from the first on is held out (the LLFF / NeRF
    convention); `every` < 2 holds out nothing. At least two images are always trained on."""
    mask = np.zeros(count, dtype=bool)
    if every >= 2 and count - len(range(0, count, every)) >= 2:
        mask[::every] = True
    return mask


def all_estimates(image_set: ImageSet, held_out_N: np.ndarray, result: ReconstructionResult, scene: Scene,
                  config: TrainerConfig, initial_c2w_N44: np.ndarray | None = None) -> CameraEstimates:
    """Cameras of every image: trained ones from the reconstruction, the others (`held_out_N`:
    held out, or without an initial pose) registered into the scene (rejected ones
    unregistered); the oracle maps the held-out ground truth into the scene's gauge instead.
    A registered view's initial pose (NaN rows: none) is its prior (`held_out_priors`)."""
    n = len(image_set)
    c2w_N44 = np.full((n, 4, 4), np.nan)
    registered_N = np.zeros(n, dtype=bool)
    confidence_N = np.zeros(n)
    trained = result.camera_estimates(image_set.subset(np.flatnonzero(~held_out_N)))  # outliers unregistered
    c2w_N44[~held_out_N] = trained.c2w_N44
    registered_N[~held_out_N] = trained.registered_N
    confidence_N[~held_out_N] = trained.confidence_N
    held = np.flatnonzero(held_out_N)
    if len(held) and config.poses == "gt":
        to_gauge = umeyama_sim3(image_set.c2w_N44[~held_out_N, :3, 3], result.c2w_N44[:, :3, 3])
        c2w_N44[held] = to_gauge.apply_c2w(image_set.c2w_N44[held])
        registered_N[held] = True
        confidence_N[held] = 1.0
    elif len(held):
        prior_M44 = (None if initial_c2w_N44 is None
                     else held_out_priors(scene.c2w_N44, initial_c2w_N44, held_out_N))
        registration = scene.register(image_set.images_NHW3[held], image_set.K_N33[held],
                                      None if prior_M44 is None else scene.to_output(prior_M44))
        accepted = registration.accepted_B.cpu().numpy()
        c2w_N44[held] = registration.c2w_B44.double().cpu().numpy()
        if prior_M44 is not None:
            confirmed = confirmed_by_prior(scene.c2w_N44, c2w_N44[held], prior_M44) & ~accepted
            if confirmed.any():
                _log.info("held-out views: %d accepted as their initial poses confirm them", int(confirmed.sum()))
            accepted = accepted | confirmed
        c2w_N44[held[~accepted]] = np.nan
        registered_N[held] = accepted
        confidence_N[held] = registration.confidence_B.cpu().numpy()
        _log.info("held-out views: %d of %d registered", int(accepted.sum()), len(held))
    sizes_N2 = np.tile([image_set.width, image_set.height], (n, 1))
    return CameraEstimates(names=list(image_set.names), c2w_N44=c2w_N44, registered_N=registered_N,
                           K_N33=image_set.K_N33, sizes_N2=sizes_N2, confidence_N=confidence_N)


def held_out_priors(trained_c2w_M44: np.ndarray, initial_c2w_N44: np.ndarray, held_out_N: np.ndarray
                    ) -> np.ndarray | None:
    """The initial poses of the `held_out_N` views in the gauge of the trained views' poses
    (`trained_c2w_M44`, the other views in order; NaN rows: none), through the similarity that
    maps the trained views onto their initial poses; None when none has one or no
    similarity is fixed. A poses file's held-out views keep their given poses, and with
    `--init features` the chain placed the held-out images too (from their features alone, the
    field never sees them)."""
    held = initial_c2w_N44[held_out_N]
    if not np.isfinite(held).all(axis=(1, 2)).any():
        return None
    alignment = align_to_prior(trained_c2w_M44, initial_c2w_N44[~held_out_N], "initial poses")
    return None if alignment is None else alignment.to_prior.inverse().apply_c2w(held)


def confirmed_by_prior(trained_c2w_N44: np.ndarray, c2w_M44: np.ndarray, prior_M44: np.ndarray) -> np.ndarray:
    """(M,) bool: registered poses that land within PRIOR_AGREEMENT of their priors (all in the
    gauge of the trained views' poses, whose ring radius sets the offset): two independent
    sources agree, so the frame belongs even where the field's contrast alone would not accept
    it (a room looks alike from many poses)."""
    return PRIOR_AGREEMENT.accepts(c2w_M44, prior_M44, trained_c2w_N44)


def write_cloud(path: Path, scene: Scene) -> int:
    """cloud.ply seen from the scene's training cameras (at most 32, evenly spread) at 64 px, in
    the scene's output frame; returns the point count (0: nothing opaque, no file)."""
    width, height = scene.image_size
    scale = min(1.0, 64 / max(width, height))
    w, h = round(width * scale), round(height * scale)
    K_N33 = torch.from_numpy(scale_intrinsics(scene.K_N33, w / width, h / height)).float()
    c2w_N44 = torch.from_numpy(scene.c2w_N44).float()
    # through the scene's renderer: it maps rays into the field's space (the NDC of a forward capture)
    clouds = [backproject(scene.render(K_N33[i], c2w_N44[i], w, h), K_N33[i], c2w_N44[i], min_opacity=0.9)
              for i in evenly_spaced_indices(len(scene.names), 32)]
    voxel = scene.engine.field.voxel_size if scene.engine.ray_space is None else None
    cloud = merge_clouds(clouds, voxel)
    if len(cloud) == 0:  # a scene trained too briefly to be opaque anywhere: nothing to write
        _log.warning("the field is nowhere opaque from the training cameras: no %s written", path.name)
        return 0
    write_point_cloud_ply(path, scene.points_to_output(cloud.points_P3.double().cpu().numpy()),
                          cloud.colors_P3.cpu().numpy())
    _log.info("cloud.ply: %d points", len(cloud))
    return len(cloud)


@dataclass
class ViewPair:
    name: str
    held_out: bool
    real_HW3: np.ndarray
    rendered_HW3: np.ndarray
    psnr: float
    ssim: float


def write_views(folder: Path, scene: Scene, estimates: CameraEstimates, image_set: ImageSet,
                held_out_N: np.ndarray, trained_N: np.ndarray | None = None) -> list[ViewPair]:
    """Real and rendered views as PNGs at the training resolution: every held-out view (none of
    them was trained on; rendered from its registered pose) and a few of the views trained on
    (`trained_N`; default: all the others)."""
    small = image_set.resized(scene.config.fine_size)
    folder.mkdir(parents=True, exist_ok=True)
    train = np.flatnonzero(~held_out_N if trained_N is None else trained_N)
    shown = list(np.flatnonzero(held_out_N)) + list(train[evenly_spaced_indices(len(train), REPORT_TRAINING_VIEWS)])
    pairs = []
    for i in shown:
        if not estimates.registered_N[i]:
            continue
        render = scene.render(small.K_N33[i], estimates.c2w_N44[i], small.width, small.height)
        rendered_HW3 = (render.rgb_R3.clamp(0, 1) * 255).round().byte().cpu().numpy()
        real_HW3 = small.images_NHW3[i]
        stem = Path(image_set.names[i]).stem
        for suffix, image in [("real", real_HW3), ("render", rendered_HW3)]:
            write_png(folder / f"{stem}_{suffix}.png", image)
        pairs.append(ViewPair(image_set.names[i], bool(held_out_N[i]), real_HW3, rendered_HW3,
                              psnr(rendered_HW3, real_HW3), ssim(rendered_HW3, real_HW3)))
    return pairs


def view_synthesis_metrics(pairs: list[ViewPair]) -> dict:
    """Mean PSNR / SSIM of the held-out views (novel-view synthesis) and of the training views
    shown (fit); None where there are none."""
    out = {}
    for prefix, held_out in (("heldout", True), ("train", False)):
        chosen = [p for p in pairs if p.held_out == held_out]
        out[f"{prefix}_views"] = len(chosen)
        out[f"{prefix}_PSNR"] = finite_or_none(float(np.mean([p.psnr for p in chosen]))) if chosen else None
        out[f"{prefix}_SSIM"] = finite_or_none(float(np.mean([p.ssim for p in chosen]))) if chosen else None
    return out


def report_content(image_set: ImageSet, estimates: CameraEstimates, result: ReconstructionResult,
                   metrics: dict | None, view_pairs: list) -> ReportContent:
    registered = estimates.registered_N
    centres_N3 = estimates.c2w_N44[registered, :3, 3]
    camera_sets = {"estimate": centres_N3}
    if image_set.has_ground_truth:
        gt_N3 = image_set.c2w_N44[registered, :3, 3]
        scale = np.linalg.norm(gt_N3 - gt_N3.mean(axis=0), axis=1).max()
        sim3, _ = ransac_sim3(centres_N3, gt_N3, threshold=0.1 * scale)
        camera_sets = {"ground truth": gt_N3, "estimate (aligned)": sim3.apply_points(centres_N3)}
    curves = {"training loss": [(c["step"], c["loss"]) for c in result.curves if np.isfinite(c["loss"])]}
    notes = [f"{len(image_set)} views at {image_set.width}x{image_set.height} from {image_set.source}; "
             f"kept seed {result.seed}, rollbacks {result.rollbacks}."]
    return ReportContent(title="nvs_ros reconstruction", metrics=metrics, camera_sets=camera_sets,
                         self_check=self_check_lines(result, estimates),
                         view_pairs=[(f"{p.name} (held out)" if p.held_out else p.name, p.real_HW3, p.rendered_HW3,
                                      p.psnr) for p in view_pairs],
                         curves=curves, notes=notes)


def self_check_lines(result: ReconstructionResult, estimates: CameraEstimates) -> list[str]:
    """The verdict and its evidence as lines of text (report, CLI)."""
    verdict = result.verdict
    lines = [verdict.summary(), f"{int(estimates.registered_N.sum())} of {len(estimates.names)} views registered"]
    unregistered = [name for name, ok in zip(estimates.names, estimates.registered_N) if not ok]
    if unregistered:
        lines[-1] += "; not registered: " + ", ".join(unregistered)
    evidence = verdict.evidence
    if "start_agreement" in evidence:
        lines.append("independent starts agreeing with the kept one: " +
                     ", ".join(f"{a:.0%}" for a in evidence["start_agreement"]) + " of view pairs")
    lines.append(f"median view {evidence['median_psnr_db']:.1f} dB; {evidence['supported_share']:.0%} of the "
                 "trained views explained by the scene")
    return lines
