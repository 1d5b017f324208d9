"""The output folder every estimator writes and `nvs-ros eval` reads.

    poses.json      per image: name, registered, confidence, c2w (4x4, OpenCV axes), intrinsics
    poses_tum.txt   registered cameras as TUM trajectory lines: t tx ty tz qx qy qz qw
    run.json        config, versions, seed, timings
    metrics.json    only when ground truth exists

Every file is written atomically (temporary file + rename): an interrupted run never
leaves a half-written file next to finished ones.
"""

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from nvs_ros import __version__
from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.rotations import quaternion_xyzw
from nvs_ros.io.errors import OutputFolderError

POSES_FORMAT = "nvs_ros.poses/1"
CONVENTION = "camera-to-world 4x4, OpenCV camera axes (x right, y down, z forward)"


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write `content` (text or bytes) to `path` through a temporary file in the same folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(folder: Path) -> None:
    """OutputFolderError unless `folder` is, or could be created as, a folder this process may
    write; nothing is created (a node checks its output folder at start-up, not at the first
    save minutes later)."""
    folder = Path(folder)
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not existing.is_dir():
        raise OutputFolderError(f"{existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputFolderError(f"{existing} is not writable")


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=_to_jsonable) + "\n")


def write_png(path: Path, rgb_HW3: np.ndarray) -> None:
    """An (H, W, 3) uint8 RGB image as a PNG file, written atomically (views/ of an output folder)."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb_HW3), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OutputFolderError(f"cannot encode a {np.shape(rgb_HW3)} image as PNG for {path}")
    write_atomic(path, png.tobytes())


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def poses_to_json(estimates: CameraEstimates) -> dict:
    images = []
    for i, name in enumerate(estimates.names):
        K = estimates.K_N33[i]
        width, height = (int(v) for v in estimates.sizes_N2[i])
        registered = bool(estimates.registered_N[i])
        entry = {
            "name": name,
            "registered": registered,
            "confidence": float(estimates.confidence_N[i]),
            "c2w": estimates.c2w_N44[i].tolist() if registered else None,
            "intrinsics": {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2],
                           "width": width, "height": height},
        }
        if estimates.stamps_N is not None:
            entry["stamp"] = float(estimates.stamps_N[i])
        images.append(entry)
    return {"format": POSES_FORMAT, "convention": CONVENTION,
            "scale": estimates.scale_source or "arbitrary (poses are up to a similarity)",
            "images": images}


def poses_from_json(data: dict) -> CameraEstimates:
    if data.get("format") != POSES_FORMAT:
        raise OutputFolderError(f"poses.json format is {data.get('format')!r}, expected {POSES_FORMAT!r}")
    images = data["images"]
    n = len(images)
    c2w_N44 = np.full((n, 4, 4), np.nan)
    for i, entry in enumerate(images):
        if entry["registered"]:
            c2w_N44[i] = np.asarray(entry["c2w"], dtype=np.float64)
    intr = [entry["intrinsics"] for entry in images]
    K_N33 = np.array([[[k["fx"], 0, k["cx"]], [0, k["fy"], k["cy"]], [0, 0, 1]] for k in intr], dtype=np.float64)
    has_stamps = n > 0 and all("stamp" in entry for entry in images)
    scale = data.get("scale", "")
    return CameraEstimates(
        names=[entry["name"] for entry in images],
        c2w_N44=c2w_N44,
        registered_N=np.array([entry["registered"] for entry in images], dtype=bool),
        K_N33=K_N33.reshape(n, 3, 3),
        sizes_N2=np.array([[k["width"], k["height"]] for k in intr], dtype=int).reshape(n, 2),
        confidence_N=np.array([entry["confidence"] for entry in images], dtype=np.float64),
        stamps_N=np.array([entry["stamp"] for entry in images]) if has_stamps else None,
        scale_source=None if scale.startswith("arbitrary") else scale,
    )


def poses_to_tum(estimates: CameraEstimates) -> str:
    """TUM trajectory (timestamp tx ty tz qx qy qz qw) of the registered cameras.

    Without capture stamps the image index is the timestamp.
    """
    lines = ["# timestamp tx ty tz qx qy qz qw  (camera-to-world, OpenCV camera axes)"]
    for i in np.flatnonzero(estimates.registered_N):
        c2w = estimates.c2w_N44[i]
        stamp = float(estimates.stamps_N[i]) if estimates.stamps_N is not None else float(i)
        quat_xyzw = quaternion_xyzw(c2w[:3, :3])
        values = [stamp, *c2w[:3, 3], *quat_xyzw]
        lines.append(" ".join(f"{v:.9f}" for v in values))
    return "\n".join(lines) + "\n"


def software_versions() -> dict[str, str]:
    """Versions worth recording next to a result."""
    import cv2
    import torch

    return {"nvs_ros": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "opencv": cv2.__version__, "machine": platform.machine(),
            "processor_count": str(os.cpu_count())}


def write_output_folder(out_dir: Path, estimates: CameraEstimates, run_info: dict,
                        metrics: dict | None = None) -> None:
    """Write poses.json, poses_tum.txt, run.json and (with ground truth) metrics.json."""
    out_dir = Path(out_dir)
    write_json(out_dir / "poses.json", poses_to_json(estimates))
    write_atomic(out_dir / "poses_tum.txt", poses_to_tum(estimates))
    write_json(out_dir / "run.json", {"versions": software_versions(), **run_info})
    if metrics is not None:
        write_json(out_dir / "metrics.json", metrics)


def read_poses(out_dir: Path) -> CameraEstimates:
    """The estimates stored in an output folder, or in a poses file given as a .json path."""
    given = Path(out_dir)
    path = given if given.suffix == ".json" else given / "poses.json"
    if given.suffix == ".json" and not path.is_file():
        raise OutputFolderError(f"{given}: no such poses file")
    if not path.is_file():
        raise OutputFolderError(f"{out_dir} is not an nvs_ros output folder: no poses.json")
    try:
        return poses_from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise OutputFolderError(f"{path} is malformed: {err}") from err


def read_run_info(out_dir: Path) -> dict:
    """run.json of an output folder ({} where there is none)."""
    path = Path(out_dir) / "run.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise OutputFolderError(f"{path} is malformed: {err}") from err
