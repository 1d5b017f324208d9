"""Register image files into a saved scene (`nvs-ros register SCENE_DIR IMAGE...`): one
encoder pass, a ranking of candidate poses and a direct alignment to the field per frame
(core.registration, core.direct_alignment), with a confidence; frames that do not belong to the scene
are rejected, not forced into it.

The encoder pass runs on the backend a RuntimeConfig chooses (nvs_ros.runtime: torch, ONNX
Runtime, TensorRT; `auto` by default); the rest of the registration runs in torch.

Intrinsics: the scene's training camera, rescaled to each image's size (the same camera at
another resolution), unless given.
"""

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nvs_ros.core.scene import Scene
from nvs_ros.io.image_files import read_image, rescale_intrinsics
from nvs_ros.io.output_folder import write_json
from nvs_ros.runtime.backend import RuntimeConfig
from nvs_ros.runtime.encoder_pass import encoder_pass

_log = logging.getLogger(__name__)


@dataclass
class FrameResult:
    name: str
    c2w_44: np.ndarray
    confidence: float
    accepted: bool
    latency_s: float
    """Wall time of the registration alone (decoding the file excluded)."""


def use_backend(scene: Scene, config: RuntimeConfig) -> str:
    """Register the scene's frames with its encoder pass on the backend `config` chooses
    (BackendUnavailable where one named explicitly cannot run); returns which ran, for people."""
    chosen = encoder_pass(scene.engine, replace(config, device=str(scene.engine.field.grid.device)))
    scene.encoder_pass = chosen
    return chosen.description


def register_images(scene: Scene, paths: list[Path], K_33: np.ndarray | None = None) -> list[FrameResult]:
    """Pose of every image in the scene's output frame (that of its poses.json); unreadable
    files raise DatasetError."""
    results = []
    for path in paths:
        image_HW3, _ = read_image(path)
        h, w = image_HW3.shape[:2]
        width, height = scene.image_size
        K = np.asarray(K_33, dtype=np.float64) if K_33 is not None else \
            rescale_intrinsics(scene.K_N33[0], (height, width), (h, w))
        started = time.perf_counter()
        registration = scene.register(image_HW3[None], K[None])
        latency = time.perf_counter() - started
        results.append(FrameResult(name=Path(path).name, c2w_44=scene.to_output(registration.c2w_B44[0].double().cpu().numpy()),
                                   confidence=float(registration.confidence_B[0]),
                                   accepted=bool(registration.accepted_B[0]), latency_s=latency))
        _log.debug("%s: confidence %.2f in %.1f ms", path, results[-1].confidence, 1000 * latency)
    return results


def write_registrations(path: Path, scene_dir: Path, results: list[FrameResult]) -> None:
    """JSON: per frame its pose (OpenCV camera-to-world, the scene's frame; null when rejected),
    confidence and latency."""
    write_json(path, {"scene": str(scene_dir), "convention": "OpenCV camera-to-world (x right, y down, z forward)",
                      "frames": [{"name": r.name, "accepted": r.accepted, "confidence": r.confidence,
                                  "c2w": r.c2w_44.tolist() if r.accepted else None,
                                  "latency_ms": 1000.0 * r.latency_s} for r in results]})
