"""The `nvs-ros` command.

Examples:
    nvs-ros demo                                   # bundled scene -> out/demo, prints pose accuracy
    nvs-ros eval out/demo/colmap --gt bundled      # score any output folder against ground truth
    nvs-ros reconstruct ../shared/data/nerf_synthetic_chair --size 64 --out runs/chair
    nvs-ros eval runs/temple --gt ../shared/data/middlebury_temple_ring
    nvs-ros register runs/chair new_frame.png      # pose new frames in a reconstructed scene
    nvs-ros register runs/chair new_frame.png --backend onnxruntime
    nvs-ros export runs/chair --format onnx         # encoder.onnx, field.onnx, manifest.json
    nvs-ros export runs/chair --format nerfstudio   # transforms.json + images/: ns-train nerfacto --data
    nvs-ros bag-from bundled out/room_bag --size 64 --views 24   # any dataset -> ROS 2 bag
    nvs-ros play out/room_bag --rate 0.5 --loop                  # publish it with /clock
"""

import argparse
import logging
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.logging import RichHandler

from nvs_ros import __version__
from nvs_ros.app.demo import demo_config, ground_truth_estimates, run_colmap_baseline
from nvs_ros.app.export import EXPORT_FORMATS
from nvs_ros.core.errors import NvsError
from nvs_ros.core.image_set import ImageSet
from nvs_ros.io.bag_writer import STORAGES, write_bag
from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.errors import NvsIOError
from nvs_ros.io.evaluation import evaluate_output_folder, write_metrics
from nvs_ros.io.image_folder import write_image_folder
from nvs_ros.io.metrics_table import metrics_table
from nvs_ros.io.output_folder import read_poses, read_run_info, write_output_folder
from nvs_ros.runtime.backend import BACKENDS

log = logging.getLogger("nvs_ros.cli")
# Tables must stay readable when piped into a log, where rich would assume 80 columns.
CONSOLE = Console(width=None if Console().is_terminal else 140)

DEMO_STEPS = 2000
"""Engine training steps of `nvs-ros demo` (a step budget: the same result on a busy machine).
The refinement with a fresh field reaches from where 1,200 steps of pose learning leave the
poses (seeds 2 and 3, the hardest, RRA@15 100% at 2,000 steps as at 2,500). Accuracy and engine
time over seeds and arithmetic: bench/robustness.py, bench/README.md."""

PLAY_WAIT_S = 60.0
"""`play` waits this long for subscribers by default: a node started at the same time imports
torch and declares its topics within seconds, even on a busy 2-core machine."""

EXIT_OK = 0
EXIT_ERROR = 1
"""A mistake the user can correct (nvs_ros.core.errors.NvsError): the one ERROR line says which."""
EXIT_USAGE = 2
"""argparse's code for an unknown command or option, or a missing or malformed argument."""
EXIT_REJECTED = 3
"""`register`: at least one frame was rejected (it does not fit the scene)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT, as shells report it)."""
EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}    success
  {EXIT_ERROR}    an error you can correct, reported as one line: an unreadable or empty input, images
       of different sizes, too few images, a poses file (--init) that is missing, malformed
       or places fewer than two training images, a saved scene that cannot be loaded
  {EXIT_USAGE}    a wrong command line (argparse)
  {EXIT_REJECTED}    register: a frame was rejected (it does not fit the scene)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
"""

DATASET_HELP = ("a dataset folder (NeRF-synthetic transforms_*.json, nerfstudio transforms.json, COLMAP "
                "sparse/0 + images/, LLFF poses_bounds.npy, "
                "DTU cameras_sphere.npz, Middlebury *_par.txt), an image folder, or "
                "bundled[:room|object[:ring|sphere|arc]] for the built-in rendered scene")


def run_config(args: argparse.Namespace) -> dict:
    """The command's options, as recorded in run.json."""
    return {key: value for key, value in vars(args).items() if key != "run"}


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    source = f"bundled:{args.variant}:ring"
    started = time.perf_counter()
    with CONSOLE.status(f"rendering the bundled scene ({args.views} views, {args.size} px)"):
        scene = load_image_set(source, max_side=args.size, views=args.views)
    render_s = time.perf_counter() - started
    write_image_folder(out / "scene", scene)
    log.info("scene: %d views at %dx%d in %.1f s -> %s", len(scene), scene.width, scene.height,
             render_s, out / "scene")

    rows = [(f"nvs_ros ({demo_engine(args, scene, out / 'nvs_ros'):.0f} s)",
             evaluate_output_folder(out / "nvs_ros", scene))]
    reference_dir = out / "ground_truth"
    write_output_folder(reference_dir, ground_truth_estimates(scene),
                        {"estimator": "ground_truth", "dataset": source, "seed": args.seed,
                         "config": run_config(args), "timings": {"render_s": render_s}})
    reference_row = ("ground truth (self-check)", evaluate_output_folder(reference_dir, scene))

    colmap_dir = out / "colmap"
    with CONSOLE.status("pycolmap incremental SfM (the classical baseline)"):
        colmap_s = run_colmap_baseline(scene, colmap_dir, args.size, args.views, args.seed, {"dataset": source})
    rows.append((f"pycolmap SfM ({colmap_s:.1f} s)", evaluate_output_folder(colmap_dir, scene)))
    rows.append(reference_row)

    CONSOLE.print(metrics_table(rows, title=f"Pose accuracy on {source} ({len(scene)} views, {args.size} px)"))
    print_self_check(out / "nvs_ros")
    CONSOLE.print(f"products: {out.resolve()}")
    return EXIT_OK


def demo_engine(args: argparse.Namespace, scene: ImageSet, out_dir: Path) -> float:
    """The engine (pose-distribution encoder + radiance field) on the demo scene (app.demo's
    configuration for its ring); returns its wall time in seconds."""
    from nvs_ros.app.reconstruction import run_reconstruction

    if args.threads:
        torch.set_num_threads(args.threads)
    config = demo_config(scene, args.iters, args.time_budget, args.seed, args.starts)
    started = time.perf_counter()
    with CONSOLE.status(f"nvs_ros: pose-distribution encoder + radiance field ({args.iters} steps)"):
        run_reconstruction(scene, out_dir, config, run_info={"command": run_config(args)})
    return time.perf_counter() - started


def print_self_check(out_dir: Path) -> None:
    """The run's verdict on its own poses (run.json), one line, marked where it is not sure."""
    verdict = read_run_info(out_dir).get("verdict")
    if verdict is None:
        return
    style = "green" if verdict["status"] == "converged" else "bold red"
    reasons = f": {'; '.join(verdict['reasons'])}" if verdict["reasons"] else ""
    CONSOLE.print(f"verdict [{style}]{verdict['status']}[/{style}]{reasons} "
                  f"({verdict['supported']} of {verdict['views']} trained views supported)")


def run_eval(args: argparse.Namespace) -> int:
    out_dir = Path(args.output_dir)
    estimates = read_poses(out_dir)  # before the dataset: a wrong folder fails at once
    ground_truth = load_image_set(args.gt, max_side=args.size, views=args.views, split=args.split)
    metrics = write_metrics(out_dir, estimates, ground_truth)
    CONSOLE.print(metrics_table([(str(args.output_dir), metrics)]))
    CONSOLE.print(f"wrote {Path(args.output_dir) / 'metrics.json'}")
    return EXIT_OK


def run_reconstruct(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from nvs_ros.app.pose_start import resolve_pose_start
    from nvs_ros.app.reconstruction import check_inputs, run_reconstruction
    from nvs_ros.io.capture_type import choose_mode

    if args.threads:
        torch.set_num_threads(args.threads)
    image_set = load_image_set(args.input, max_side=args.size, views=args.views, split=args.split)
    if args.poses == "gt" and not image_set.has_ground_truth:
        raise NvsIOError(f"--poses gt needs ground truth, and {args.input} has none")
    mode = choose_mode(image_set, args.mode)
    init = "none" if args.poses == "gt" else args.init  # the oracle's poses are the ground truth's
    start = resolve_pose_start(init, args.input, image_set, views=args.views, split=args.split)
    budget = {"time_budget_s": args.time_budget, "iterations": args.iters, "seed": args.seed, "device": args.device,
              "starts": args.starts}
    check_inputs(image_set, start.c2w_N44)  # before the progress bar: a mistake is one line
    log.info("mode %s (requested: %s)", mode, args.mode)
    log.info("%d views at %dx%d from %s", len(image_set), image_set.width, image_set.height, image_set.source)
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn(), TextColumn("loss {task.fields[loss]:.4f}")]
    with Progress(*columns, console=CONSOLE) as progress:
        task = progress.add_task("training", total=1.0, loss=float("nan"))

        def on_step(state) -> None:
            if state.step % 10 == 0:
                progress.update(task, completed=state.fraction, description=state.phase, loss=state.loss)

        metrics = run_reconstruction(image_set, Path(args.out), start.trainer_config(mode, poses=args.poses, **budget),
                                     on_step, {"command": run_config(args), "init": init,
                                               "initial_poses": start.start.value},
                                     initial_c2w_N44=start.c2w_N44, prior_source=start.prior_source,
                                     learn_instead=start.learnt_alternative(mode, **budget)).metrics
    if metrics is not None:
        CONSOLE.print(metrics_table([(f"nvs_ros ({args.poses})", metrics)],
                                    title=f"Pose accuracy on {image_set.source}"))
    print_self_check(Path(args.out))
    CONSOLE.print(f"products: {Path(args.out).resolve()} (poses.json, cloud.ply, views/, report.html)")
    return EXIT_OK


def run_register(args: argparse.Namespace) -> int:
    from rich.table import Table

    from nvs_ros.app.frame_registration import register_images, use_backend, write_registrations
    from nvs_ros.io.scene_checkpoint import load_scene
    from nvs_ros.runtime.backend import RuntimeConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    scene = load_scene(Path(args.scene_dir), device=args.device)
    backend = use_backend(scene, RuntimeConfig(backend=args.backend, device=args.device, threads=args.threads or 0))
    CONSOLE.print(f"encoder pass on {backend}")
    results = register_images(scene, [Path(p) for p in args.images])
    table = Table(title=f"Frames registered into {args.scene_dir}")
    for column in ["image", "accepted", "confidence", "camera centre (x, y, z)", "ms"]:
        table.add_column(column)
    for r in results:
        centre = ", ".join(f"{v:.3f}" for v in r.c2w_44[:3, 3])
        table.add_row(r.name, "yes" if r.accepted else "no", f"{r.confidence:.2f}", centre, f"{1000 * r.latency_s:.0f}")
    CONSOLE.print(table)
    if args.out:
        write_registrations(Path(args.out), Path(args.scene_dir), results)
    return EXIT_OK if all(r.accepted for r in results) else EXIT_REJECTED


def run_export(args: argparse.Namespace) -> int:
    from nvs_ros.app.export import export_scene

    out = Path(args.out) if args.out else Path(args.scene_dir) / "export" / args.format
    manifest = export_scene(Path(args.scene_dir), out, args.format, images=args.images)
    for item in manifest["files"]:
        what = f"{item['graph']}, opset {item['opset']}" if "graph" in item else item["meaning"]
        CONSOLE.print(f"{out / item['file']}: {what}")
    CONSOLE.print(f"manifest: {out / 'manifest.json'}")
    return EXIT_OK


def run_bag_from(args: argparse.Namespace) -> int:
    image_set = load_image_set(args.dataset, max_side=args.size, views=args.views, split=args.split)
    out = write_bag(image_set, args.out, storage=args.storage, compressed=args.compressed,
                    rate_hz=args.rate_hz, image_topic=args.image_topic,
                    camera_info_topic=args.camera_info_topic, frame_id=args.frame_id)
    CONSOLE.print(f"wrote {len(image_set)} frames ({image_set.width}x{image_set.height}, "
                  f"{'with' if image_set.has_ground_truth else 'no'} ground truth) -> {out}")
    return EXIT_OK


def run_play(args: argparse.Namespace) -> int:
    from nvs_ros.ros.bag_player import play_bag  # needs rclpy: only this command imports it
    stats = play_bag(args.bag, rate=args.rate, loop=args.loop, clock=not args.no_clock,
                     topics=args.topics, delay_s=args.delay,
                     wait_for_subscribers_s=0.0 if args.no_wait else args.wait)
    lost = f" (damaged bag: {stats.loss})" if stats.loss else ""
    CONSOLE.print(f"published {stats.published} in {stats.wall_s:.1f} s ({stats.loops} passes){lost}")
    return EXIT_OK


def configure_logging(level: int) -> None:
    """Rich log lines in a terminal; plain single lines (one per message) in logs and pipes."""
    stderr = Console(stderr=True)
    if stderr.is_terminal:
        handler: logging.Handler = RichHandler(console=stderr, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nvs-ros", description=__doc__, epilog=EXIT_CODES_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"nvs_ros {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="reconstruct the bundled scene and print pose accuracy")
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--size", type=int, default=128, help="image side in pixels (default: 128)")
    demo.add_argument("--views", type=int, default=24, help="number of views on the ring (default: 24)")
    demo.add_argument("--variant", choices=["room", "object"], default="object",
                      help="an object on a plain background, or a textured room (the engine does not "
                           "converge there yet) (default: object)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--iters", type=int, default=DEMO_STEPS,
                      help=f"engine training steps (default: {DEMO_STEPS})")
    demo.add_argument("--time-budget", type=float, default=None,
                      help="engine training wall-clock cap, seconds (default: none)")
    demo.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    demo.add_argument("--starts", type=int, default=1,
                      help="independent starts racing through pose learning's coarse stage (default: 1)")
    demo.set_defaults(run=run_demo)

    evaluate = commands.add_parser("eval", help="score an output folder against ground truth",
                                   description="Compute pose metrics for an output folder "
                                   "(poses.json) and write metrics.json next to it.")
    evaluate.add_argument("output_dir", help="an output folder holding poses.json")
    evaluate.add_argument("--gt", required=True, help=f"ground truth: {DATASET_HELP}")
    evaluate.add_argument("--size", type=int, default=None,
                          help="max image side the dataset is loaded at (bundled scenes: render size)")
    evaluate.add_argument("--views", type=int, default=None,
                          help="bundled scenes: number of rendered views (default: 24)")
    evaluate.add_argument("--split", default="train", help="dataset split (NeRF-synthetic; default: train)")
    evaluate.set_defaults(run=run_eval)

    rec = commands.add_parser("reconstruct", help="estimate cameras and the scene from unposed images",
                              description="Per-scene training of the pose-distribution encoder and "
                              "radiance field (360-degree captures around a scene). Ground-truth poses "
                              "are never read by the estimator; intrinsics are.")
    rec.add_argument("input", help=DATASET_HELP + ", or a ROS bag (ROS 2 or ROS 1 .bag)")
    rec.add_argument("--out", required=True, help="output folder")
    rec.add_argument("--size", type=int, default=128, help="max image side loaded, pixels (default: 128)")
    rec.add_argument("--views", type=int, default=None, help="number of evenly spaced views (default: all)")
    rec.add_argument("--split", default="train", help="dataset split (NeRF-synthetic; default: train)")
    rec.add_argument("--time-budget", type=float, default=900.0,
                     help="training wall-clock budget, seconds (default: 900)")
    rec.add_argument("--iters", type=int, default=None, help="training step budget (default: time only)")
    rec.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="torch device (default: cpu)")
    rec.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    rec.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    rec.add_argument("--starts", type=int, default=1,
                     help="independent starts racing through pose learning's coarse stage (default: 1)")
    rec.add_argument("--mode", choices=["360", "forward", "auto"], default="auto",
                     help="capture type: around the scene, facing one way (LLFF-like), or auto: the "
                          "loader's hint, else from image overlap (default: auto)")
    rec.add_argument("--poses", choices=["estimate", "gt"], default="estimate",
                     help="gt: oracle run with the ground-truth poses, to measure the gap (default: estimate)")
    rec.add_argument("--init", default="auto", metavar="auto|none|features|POSES",
                     help="initial poses instead of learning them: 'features' chains OpenCV features "
                     "through the images (textured captures) and keeps them; 'auto' does so where the "
                     "chain places at least half of the images and otherwise learns the poses from the "
                     "images alone, as 'none' always does; an output folder or poses.json (e.g. odometry), "
                     "a COLMAP model or a transforms.json (poses matched by image name) is refined as given, "
                     "and its frame and scale are those of the "
                     "products (default: auto)")
    rec.set_defaults(run=run_reconstruct)

    register = commands.add_parser("register", help="pose new images in a reconstructed scene",
                                   description="One encoder pass, a ranking of candidate poses and a direct "
                                   "alignment to the field per image; prints pose, confidence and latency. "
                                   "Exit code 3 when a frame was rejected (it does not fit the scene).")
    register.add_argument("scene_dir", help="a `reconstruct` output folder (holds scene.pt)")
    register.add_argument("images", nargs="+", help="image files")
    register.add_argument("--out", default=None, help="write the poses to this JSON file")
    register.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="torch device (default: cpu)")
    register.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    register.add_argument("--backend", choices=BACKENDS, default="auto",
                          help="what runs the encoder pass: auto picks the fastest available here and logs why "
                          "(TensorRT, then ONNX Runtime, then torch); a named one that cannot run is an error "
                          "(default: auto)")
    register.set_defaults(run=run_register)

    export = commands.add_parser("export", help="export a reconstructed scene for other runtimes and tools",
                                 description="Writes into OUT (default: SCENE_DIR/export/FORMAT), with "
                                 "manifest.json (what each file is, the sha256 of the file it came from): "
                                 "onnx: the scene's inference graphs (the encoder pass, the field's point query; "
                                 "TensorRT engines are built from these where they run, `register --backend "
                                 "tensorrt`); nerfstudio: transforms.json (PINHOLE, camera-to-world in OpenGL "
                                 "axes) + images/ + cloud.ply, for `ns-train nerfacto --data OUT`; colmap: a "
                                 "text model in sparse/0 (cameras, images, points3D from cloud.ply) + images/. "
                                 "Only registered views are exported, with the images the run read, at the size "
                                 "they are stored at.")
    export.add_argument("scene_dir", help="a `reconstruct` output folder (onnx: holds scene.pt; others: poses.json)")
    export.add_argument("--format", choices=sorted(EXPORT_FORMATS), default="onnx", help="(default: onnx)")
    export.add_argument("--out", default=None, help="folder to write (default: SCENE_DIR/export/FORMAT)")
    export.add_argument("--images", default=None, metavar="SOURCE",
                        help="nerfstudio, colmap: the dataset the views' images are read from, matched by name "
                             "(default: the dataset run.json records)")
    export.set_defaults(run=run_export)

    bag_from = commands.add_parser("bag-from", help="write a dataset as a ROS 2 bag",
                                   description="Images (sensor_msgs/Image rgb8, or JPEG "
                                   "CompressedImage on <topic>/compressed) + CameraInfo per frame, "
                                   "and ground-truth camera-to-world as tf2_msgs/TFMessage "
                                   "world -> <frame id> on /ground_truth/tf when the dataset has it.")
    bag_from.add_argument("dataset", help=DATASET_HELP)
    bag_from.add_argument("out", help="bag folder to create (must not exist)")
    bag_from.add_argument("--size", type=int, default=None, help="max image side in pixels")
    bag_from.add_argument("--views", type=int, default=None, help="number of views, evenly spaced")
    bag_from.add_argument("--split", default="train", help="dataset split (NeRF-synthetic; default: train)")
    bag_from.add_argument("--storage", choices=sorted(STORAGES), default="mcap",
                          help="mcap (.mcap) or sqlite3 (.db3) (default: mcap)")
    bag_from.add_argument("--compressed", action="store_true", help="JPEG CompressedImage instead of raw rgb8")
    bag_from.add_argument("--rate-hz", type=float, default=10.0, help="frame rate of the stamps (default: 10)")
    bag_from.add_argument("--image-topic", default="/camera/image_raw", help="(default: /camera/image_raw)")
    bag_from.add_argument("--camera-info-topic", default="/camera/camera_info",
                          help="(default: /camera/camera_info)")
    bag_from.add_argument("--frame-id", default="camera_optical_frame",
                          help="header.frame_id, an optical frame (default: camera_optical_frame)")
    bag_from.set_defaults(run=run_bag_from)

    play = commands.add_parser("play", help="publish a ROS 2 or ROS 1 bag with /clock (like ros2 bag play)")
    play.add_argument("bag", help="bag folder (metadata.yaml), .mcap / .db3 file or ROS 1 .bag file")
    play.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default: 1)")
    play.add_argument("--loop", action="store_true", help="play again from the start when it ends")
    play.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    play.add_argument("--topics", nargs="+", default=None, help="play only these topics")
    play.add_argument("--delay", type=float, default=0.0, help="seconds to wait before the first message")
    play.add_argument("--wait", type=float, default=PLAY_WAIT_S, metavar="S",
                      help="wait up to S seconds until the bag's camera topics have a subscriber (a node "
                           "started after the player loses no frame), then play anyway with a warning "
                           f"(default: {PLAY_WAIT_S:g})")
    play.add_argument("--no-wait", action="store_true", help="play at once, whether anyone subscribes or not")
    play.set_defaults(run=run_play)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.run(args)
    except NvsError as err:  # a mistake to correct: its one line, no traceback (any other error is a bug)
        log.error("%s", err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
