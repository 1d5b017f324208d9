"""Writing what the live scene knows to an output folder (the `~/save` service).

The same folder `nvs-ros reconstruct` writes: poses.json, poses_tum.txt, run.json
(nvs_ros.io.output_folder), cloud.ply, and the scene checkpoint scene.pt + scene.json
(nvs_ros.io.scene_checkpoint), so the folder is also a scene directory that registering and
rendering load. Every file is written atomically. With odometry priors, poses and cloud are in
the odometry frame and metres (poses.json says so in "scale"); the checkpoint stays in the
engine's gauge and holds the similarity into that frame (scene.json "output_frame"), so frames
registered into it later come out in the odometry frame as well.
"""

from pathlib import Path

import numpy as np

from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.live_scene import KeyframePoses, LiveScene
from nvs_ros.io.output_folder import write_output_folder
from nvs_ros.io.point_cloud_ply import write_point_cloud_ply
from nvs_ros.io.scene_checkpoint import SUMMARY, WEIGHTS, save_scene


def estimates_from_poses(poses: KeyframePoses, trusted: bool = True) -> CameraEstimates:
    """Keyframe poses -> CameraEstimates (stamps in seconds; keyframes without a finite pose
    count as unregistered). Poses of a round its self-check does not trust (`trusted` False)
    keep their place but get confidence 0: a reader of poses.json alone must not take them."""
    c2w_N44 = np.asarray(poses.c2w_N44, dtype=np.float64).reshape(-1, 4, 4)
    registered_N = np.isfinite(c2w_N44).all(axis=(1, 2))
    confidence_N = np.asarray(poses.confidence_N, dtype=np.float64) if trusted else np.zeros(len(c2w_N44))
    return CameraEstimates(
        names=list(poses.names), c2w_N44=np.where(registered_N[:, None, None], c2w_N44, np.nan),
        registered_N=registered_N, K_N33=np.asarray(poses.K_N33, dtype=np.float64).reshape(-1, 3, 3),
        sizes_N2=np.asarray(poses.sizes_N2, dtype=int).reshape(-1, 2),
        confidence_N=np.where(registered_N, confidence_N, 0.0),
        stamps_N=np.asarray(poses.stamps_ns, dtype=np.float64) / 1e9, scale_source=poses.scale_source)


def save_scene_products(folder: Path, scene: LiveScene, cloud_points: int, run_info: dict) -> list[str]:
    """Write the products of `scene` (which must be ready) to `folder`; the names written."""
    folder = Path(folder).expanduser()
    alignment = scene.alignment
    residual = None if alignment is None else float(np.nanmedian(alignment.centre_residual_N))
    status = scene.status()
    verdict = {"status": status.verdict, "reasons": [r for r in status.verdict_reasons.split("; ") if r],
               "trusted": status.trusted}
    write_output_folder(folder, estimates_from_poses(scene.keyframe_poses(), status.trusted),
                        {"estimator": "nvs_node", **run_info, "prior_median_centre_residual": residual,
                         "verdict": verdict})
    written = ["poses.json", "poses_tum.txt", "run.json"]
    xyz_P3, rgb_P3 = scene.point_cloud(cloud_points)
    if len(xyz_P3):
        write_point_cloud_ply(folder / "cloud.ply", xyz_P3, np.asarray(rgb_P3, dtype=np.float64) / 255.0)
        written.append("cloud.ply")
    save_scene(folder, scene.scene)
    return [*written, WEIGHTS, SUMMARY]
