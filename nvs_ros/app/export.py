"""`nvs-ros export SCENE_DIR --format FORMAT`: a saved scene's networks for other runtimes, with a
manifest that says what each file is and where it came from.

One command for every format: each is a writer in EXPORT_FORMATS that puts its files into the
output folder and returns their manifest entries; a new format (a TensorRT engine for one GPU, a
nerfstudio or COLMAP model folder) is one more writer. The manifest (manifest.json) holds, per
file, its graph, inputs and outputs (name, shape with -1 for the dynamic dimension, dtype), the
ONNX opset and the file's sha256, and for all of them the sha256 of the checkpoint (scene.pt)
they were exported from, so a deployment can tell a stale export from a current one.
"""

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

from nvs_ros import __version__
from nvs_ros.core.scene import Scene
from nvs_ros.io.output_folder import write_atomic, write_json
from nvs_ros.io.scene_checkpoint import WEIGHTS, load_scene
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


EXPORT_FORMATS: dict[str, Callable[[Scene, Path], list[dict]]] = {"onnx": _onnx_files}
"""format -> writer of its files into a folder, returning their manifest entries."""


def export_scene(scene_dir: Path, out: Path, fmt: str = "onnx") -> dict:
    """Export the scene saved in `scene_dir` into `out` (created) as `fmt`; returns the manifest,
    also written to out/manifest.json. SceneCheckpointError when scene_dir holds no scene."""
    scene = load_scene(scene_dir)
    checkpoint = Path(scene_dir) / WEIGHTS
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"format": MANIFEST_FORMAT, "export_format": fmt, "nvs_ros_version": __version__,
                "source": {"checkpoint": str(checkpoint.resolve()),
                           "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest()},
                "files": EXPORT_FORMATS[fmt](scene, out)}
    write_json(out / MANIFEST, manifest)
    return manifest
