"""A trained scene on disk: SCENE_DIR/scene.pt (weights, poses, intrinsics, config: what
registering frames and rendering need) next to scene.json (the same minus the weights, for
people and tools).

scene.pt holds tensors and plain values only and is read with `torch.load(weights_only=True)`,
which cannot run code from the file. Both are written atomically (temporary file + rename).
"""

import os
import tempfile
from pathlib import Path

import torch

from nvs_ros.core.scene import Scene
from nvs_ros.io.errors import SceneCheckpointError
from nvs_ros.io.output_folder import write_json

WEIGHTS = "scene.pt"
SUMMARY = "scene.json"


def save_scene(folder: Path, scene: Scene) -> Path:
    """Write the scene into `folder` (created); returns the weights' path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = scene.state_dict()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{WEIGHTS}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, folder / WEIGHTS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    arrays = ("engine", "c2w_N44", "K_N33", "output_frame", "thumbnails_ND")  # written below, or not at all
    summary = {k: v for k, v in state.items() if k not in arrays}
    summary["c2w_N44"] = state["c2w_N44"].tolist()
    summary["K_N33"] = state["K_N33"].tolist()
    frame = state["output_frame"]
    summary["output_frame"] = None if frame is None else {k: v.tolist() if torch.is_tensor(v) else v
                                                          for k, v in frame.items()}
    write_json(folder / SUMMARY, summary)
    return folder / WEIGHTS


def is_scene_dir(path: Path) -> bool:
    return (Path(path) / WEIGHTS).is_file()


def load_scene(folder: Path, device: str = "cpu") -> Scene:
    """The scene saved in `folder`, on `device`."""
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise SceneCheckpointError(f"{folder}: no {WEIGHTS} (not a saved scene; `nvs-ros reconstruct` writes one)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise SceneCheckpointError(f"{path}: unreadable scene checkpoint ({err})") from err
    try:
        return Scene.from_state_dict(state, device=device)
    except (KeyError, ValueError, TypeError, RuntimeError) as err:
        raise SceneCheckpointError(f"{path}: incompatible scene checkpoint ({err})") from err
