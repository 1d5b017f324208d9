"""`nvs-ros export SCENE_DIR --format FORMAT`: a saved scene for the next tool, with a manifest
that says what each file is and where it came from.

One command for every format: each is an ExportFormat in EXPORT_FORMATS whose writer puts its
files into the output folder and returns their manifest entries; a new format (a TensorRT engine
for one GPU) is one more writer.
- onnx: the scene's networks for other runtimes (from scene.pt); per file its graph, inputs and
  outputs (name, shape with -1 for the dynamic dimension, dtype), the ONNX opset and its sha256.
- nerfstudio: transforms.json (io.transforms_json) + images/ + cloud.ply, which
  `ns-train nerfacto --data OUT` reads as it is.
- colmap: a COLMAP text model in sparse/0/ (io.colmap_model; points from cloud.ply) + images/,
  the layout COLMAP, gsplat and nerfstudio's colmap parser read.
The last two take the registered cameras of any output folder (poses.json, in the products'
frame, as cloud.ply) and the images it was made from, loaded again from run.json's "dataset" at
the size they are stored at (undistorted, as the loader gives them to every estimator), or from
another source given as `images`. The manifest holds the sha256 of the file they were exported
from (scene.pt, poses.json), so a deployment can tell a stale export from a current one.
"""

import dataclasses
import hashlib
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from nvs_ros import __version__
from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.image_set import ImageSet
from nvs_ros.core.scene import Scene
from nvs_ros.io.colmap_model import IMAGES_FOLDER, write_colmap_model
from nvs_ros.io.datasets import load_image_set, reload_image_set
from nvs_ros.io.errors import NvsIOError, OutputFolderError
from nvs_ros.io.image_files import rescale_intrinsics
from nvs_ros.io.output_folder import read_poses, read_run_info, write_atomic, write_json, write_png
from nvs_ros.io.point_cloud_ply import read_point_cloud_ply
from nvs_ros.io.scene_checkpoint import WEIGHTS, load_scene
from nvs_ros.io.transforms_json import TRANSFORMS, write_transforms
from nvs_ros.runtime.graph import encoder_graph, export_onnx, field_graph, hypothesis_type

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "nvs_ros.export/1"

GRAPH_MEANING = {
    "encoder": "the registration's encoder pass: images (B, 3, S, S) RGB in [0, 1] at the encoder's input "
               "size -> the fields of its pose hypotheses at t = 0 (azimuth/elevation in radians on the "
               "scene's viewing sphere, or twists about the reference camera for forward captures) and "
               "their logits (softmax: the probabilities)",
    "field": "the radiance field's point query: points (P, 3) in the scene's gauge -> density (P,), rgb (P, 3)",
}


def _onnx_files(scene: Scene, out: Path) -> list[dict]:
    entries = []
    for graph in (encoder_graph(scene.engine), field_graph(scene.engine)):
        model = export_onnx(graph)
        name = f"{graph.spec.name}.onnx"
        write_atomic(out / name, model)
        entries.append({"file": name, "graph": graph.spec.name, "meaning": GRAPH_MEANING[graph.spec.name],
                        "opset": graph.spec.opset, "sha256": hashlib.sha256(model).hexdigest(),
                        "inputs": [dataclasses.asdict(t) for t in graph.spec.inputs],
                        "outputs": [dataclasses.asdict(t) for t in graph.spec.outputs]})
    entries[0]["hypotheses"] = hypothesis_type(scene.engine).__name__
    return entries


_log = logging.getLogger(__name__)

POSES = "poses.json"
CLOUD = "cloud.ply"
COLMAP_MODEL = "sparse/0"


@dataclass(frozen=True)
class ExportedViews:
    """The registered cameras of an output folder with their images, at the images' size."""

    estimates: CameraEstimates
    """Registered cameras only, intrinsics and sizes those of `images`."""
    images: ImageSet | None
    """The views of `estimates`, in order; None where no source could be loaded."""

    @property
    def image_names(self) -> list[str]:
        """Each image's file in images/ of an export folder: its name, as PNG (lossless)."""
        return [PurePosixPath(name).with_suffix(".png").as_posix() for name in self.estimates.names]

    @property
    def file_paths(self) -> list[str]:
        """Each image's path in an export folder."""
        return [f"{IMAGES_FOLDER}/{name}" for name in self.image_names]


def exported_views(scene_dir: Path, images: str | None = None, required: bool = True) -> ExportedViews:
    """The registered cameras of the output folder `scene_dir` and their images, loaded from
    `images` (any source; all its views, matched by name) or else from run.json's "dataset"
    (the views it was run with). Not `required`: no images where no source loads."""
    estimates = read_poses(scene_dir)
    keep = np.flatnonzero(estimates.registered_N)
    if len(keep) == 0:
        raise OutputFolderError(f"{scene_dir}/{POSES} has no registered camera to export")
    estimates = _subset(estimates, keep)
    run = read_run_info(scene_dir)
    source = images or run.get("dataset")
    try:
        if source is None:
            raise OutputFolderError(f"{scene_dir}/run.json records no dataset: give the images it was made from")
        loaded = (load_image_set(images) if images else
                  reload_image_set(source, views=run.get("num_views"),
                                   split=run.get("command", {}).get("split", "train")))
    except NvsIOError as err:
        if required:
            raise
        _log.warning("no images exported (%s)", err)
        return ExportedViews(estimates, None)
    by_name = {name: i for i, name in enumerate(loaded.names)}
    missing = [name for name in estimates.names if name not in by_name]
    if missing:
        raise OutputFolderError(f"{source} has no image named {missing[0]!r} ({len(missing)} of the "
                                f"{len(estimates)} registered views missing): give the images it was made from")
    loaded = loaded.subset([by_name[name] for name in estimates.names])
    size_hw = (loaded.height, loaded.width)
    K_N33 = np.array([rescale_intrinsics(K_33, (h, w), size_hw)
                      for K_33, (w, h) in zip(estimates.K_N33, estimates.sizes_N2)])
    sizes_N2 = np.tile([loaded.width, loaded.height], (len(estimates), 1))
    return ExportedViews(dataclasses.replace(estimates, K_N33=K_N33, sizes_N2=sizes_N2), loaded)


def _subset(estimates: CameraEstimates, keep: np.ndarray) -> CameraEstimates:
    return dataclasses.replace(
        estimates, names=[estimates.names[i] for i in keep], c2w_N44=estimates.c2w_N44[keep],
        registered_N=estimates.registered_N[keep], K_N33=estimates.K_N33[keep], sizes_N2=estimates.sizes_N2[keep],
        confidence_N=estimates.confidence_N[keep],
        stamps_N=None if estimates.stamps_N is None else estimates.stamps_N[keep])


def _write_images(views: ExportedViews, out: Path) -> list[dict]:
    if views.images is None:
        return []
    for file_path, image_HW3 in zip(views.file_paths, views.images.images_NHW3):
        write_png(out / file_path, image_HW3)
    return [{"file": f"{IMAGES_FOLDER}/", "meaning": f"{len(views.images)} registered views, "
             f"{views.images.width}x{views.images.height} RGB PNG, as the loader gives them (undistorted)"}]


def _copy_cloud(scene_dir: Path, out: Path) -> str | None:
    if not (Path(scene_dir) / CLOUD).is_file():
        return None
    shutil.copyfile(Path(scene_dir) / CLOUD, out / CLOUD)
    return CLOUD


def _nerfstudio_files(scene_dir: Path, out: Path, images: str | None) -> list[dict]:
    views = exported_views(scene_dir, images)
    cloud = _copy_cloud(scene_dir, out)
    write_transforms(out, views.estimates, views.file_paths, ply_file_path=cloud)
    entries = [{"file": TRANSFORMS, "meaning": "nerfstudio transforms.json: PINHOLE intrinsics, camera-to-world "
                "per frame in nerfstudio's OpenGL camera axes (x right, y up, z back)"}]
    if cloud is not None:
        entries.append({"file": CLOUD, "meaning": "coloured points in the frame of the poses (ply_file_path)"})
    return entries + _write_images(views, out)


def _colmap_files(scene_dir: Path, out: Path, images: str | None) -> list[dict]:
    views = exported_views(scene_dir, images, required=False)
    cloud = Path(scene_dir) / CLOUD
    points_P3, colors_P3 = read_point_cloud_ply(cloud) if cloud.is_file() else (np.zeros((0, 3)), np.zeros((0, 3)))
    named = views.estimates if views.images is None else dataclasses.replace(views.estimates, names=views.image_names)
    write_colmap_model(out / COLMAP_MODEL, named, points_P3, colors_P3)
    return [{"file": f"{COLMAP_MODEL}/", "meaning": f"COLMAP text model: {len(named)} PINHOLE images "
             f"(world-to-camera, OpenCV axes), {len(points_P3)} points3D from {CLOUD} (no tracks)"},
            *_write_images(views, out)]


def _onnx_writer(scene_dir: Path, out: Path, images: str | None) -> list[dict]:
    return _onnx_files(load_scene(scene_dir), out)


@dataclass(frozen=True)
class ExportFormat:
    write: Callable[[Path, Path, str | None], list[dict]]
    """(scene_dir, out, images source or None) -> manifest entries of the files written into out."""
    source: str
    """The file in the scene folder the export is made from (its sha256 goes into the manifest)."""


EXPORT_FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat(_onnx_writer, WEIGHTS),
    "nerfstudio": ExportFormat(_nerfstudio_files, POSES),
    "colmap": ExportFormat(_colmap_files, POSES)}
"""format -> its writer and the file it is made from."""


def export_scene(scene_dir: Path, out: Path, fmt: str = "onnx", images: str | None = None) -> dict:
    """Export the output folder `scene_dir` into `out` (created) as `fmt`; returns the manifest,
    also written to out/manifest.json. OutputFolderError when scene_dir holds nothing to export;
    `images`: where the views' images are (default: the dataset run.json records)."""
    export_format = EXPORT_FORMATS[fmt]
    source = Path(scene_dir) / export_format.source
    if not source.is_file():
        raise OutputFolderError(f"{scene_dir}: no {export_format.source} to export (`nvs-ros reconstruct --out` "
                                "writes one)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = export_format.write(Path(scene_dir), out, images)
    manifest = {"format": MANIFEST_FORMAT, "export_format": fmt, "nvs_ros_version": __version__,
                "source": {"file": str(source.resolve()), "sha256": hashlib.sha256(source.read_bytes()).hexdigest()},
                "files": files}
    write_json(out / MANIFEST, manifest)
    return manifest
