"""The node's two statuses on /diagnostics: "<node>: camera input" (frames in, skipped, queued,
intrinsics, latency, the callback's cost) and "<node>: scene" (training, tracking, what TF
carries or why it is withheld, the scale's source, the verdict, the worker's errors). The keys are
documented in docs/ros2.md; tests and benches read them by name.
"""

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from nvs_ros.app.scene_worker import SceneWorker
from nvs_ros.core.self_check import CONVERGED
from nvs_ros.ros.camera_input import CameraInput
from nvs_ros.ros.odometry import CameraOdometry
from nvs_ros.ros.params import NodeConfig
from nvs_ros.ros.pose_tf import PoseTf

NO_SCALE = "none (monocular, arbitrary)"


def camera_input_status(node_name: str, camera: CameraInput, image_topic: str) -> DiagnosticStatus:
    stats = camera.stats
    if stats.accepted == 0:
        level, message = DiagnosticStatus.WARN, "no usable frames yet"
    elif stats.last_skip_reason:
        level, message = DiagnosticStatus.WARN, f"skipped {stats.skipped} frame(s)"
    else:
        level, message = DiagnosticStatus.OK, "receiving frames"
    timed = max(1, stats.received)
    queue = camera.frame_queue
    values = {"frames_received": stats.received, "frames_accepted": stats.accepted,
              "frames_skipped": stats.skipped, "frames_waiting_for_camera_info": len(camera.waiting),
              "frames_queued": len(queue) if queue is not None else 0,
              "frames_dropped_queue_full": queue.dropped if queue is not None else 0,
              "last_skip_reason": stats.last_skip_reason, "keyframes": len(camera.intake.keyframes),
              "intrinsics": camera.intrinsics.source,
              "camera": camera.intrinsics.describe(),
              "image_size": f"{stats.last_size[1]}x{stats.last_size[0]}",
              "latency_s": f"{stats.last_latency_s:.3f}", "latency_note": stats.latency_note,
              "clock": camera.clock_name(),
              "callback_ms_mean": f"{1e3 * stats.callback_s_total / timed:.3f}",
              "callback_ms_max": f"{1e3 * stats.callback_s_max:.3f}",
              "callback_cpu_ms_mean": f"{1e3 * stats.callback_cpu_s_total / timed:.3f}"}
    return _status(f"{node_name}: camera input", level, message, image_topic, values)


def scene_status(node_name: str, worker: SceneWorker, pose_tf: PoseTf, odometry: CameraOdometry,
                 config: NodeConfig, waiting_s: float) -> DiagnosticStatus:
    """`waiting_s`: how long the scene has waited for its first products."""
    stats = worker.stats
    status = stats.status
    served = stats.tracked_frames + stats.tracking_rejected
    ready = bool(status and status.ready)
    waiting = status.waiting_for if status else f"{config.min_keyframes} keyframes"
    if stats.failing:
        level, message = DiagnosticStatus.ERROR, stats.last_error
    elif ready and status.verdict != CONVERGED:
        level, message = DiagnosticStatus.WARN, f"poses {status.verdict}: {status.verdict_reasons}"
    elif ready:
        level, message = DiagnosticStatus.OK, "publishing poses"
    else:
        level, message = DiagnosticStatus.WARN, f"waiting for {waiting}" if waiting else "first training round"
    values = {"scene_keyframes": status.keyframes if status else 0,
              "posed_keyframes": status.posed_keyframes if status else 0,
              "training_step": status.step if status else 0,
              "loss": "" if not status or status.loss is None else f"{status.loss:.5f}",
              "rounds": status.rounds if status else 0, "ready": ready,
              "waiting_for": "" if ready else waiting or "first training round",
              "waiting_s": "" if ready else _seconds(waiting_s),
              "keyframe_queue": worker.queue_length, "dropped_keyframes": stats.dropped_keyframes,
              "train_s_total": f"{stats.train_s_total:.1f}", "renders": stats.renders,
              "renders_refused": stats.renders_refused,
              "tracked_frames": stats.tracked_frames, "tracking_rejected": stats.tracking_rejected,
              "tracking_against_odometry": stats.tracking_against_odometry,
              "tracked_older_than_tf": pose_tf.tracked_older_than_tf,
              "inference_backend": stats.inference_backend,
              "tracking_register_ms_mean": _mean_ms(stats.tracking_register_s_total, served),
              "tracking_latency_ms_mean": _mean_ms(stats.tracking_latency_s_total, served),
              "last_tracking_confidence": "" if stats.last_tracking_confidence is None
              else f"{stats.last_tracking_confidence:.3f}",
              "first_poses_after_s": _seconds(stats.first_poses_after_s),
              "first_cloud_after_s": _seconds(stats.first_cloud_after_s),
              "tf": f"{pose_tf.last[1]} -> {pose_tf.last[2]}" if pose_tf.last else "",
              "tf_withheld": pose_tf.withheld,
              "scale_source": status.scale_source if status and status.scale_source else NO_SCALE,
              "prior_residual_m": "" if not status or status.prior_residual is None
              else f"{status.prior_residual:.3f}",
              "pose_start": status.pose_start if status and status.pose_start else "",
              "verdict": status.verdict if status and status.verdict else "",
              "verdict_reasons": status.verdict_reasons if status else "",
              "keyframes_with_odometry": odometry.keyframes_with_odometry,
              "keyframes_without_odometry": odometry.keyframes_without_odometry,
              "device": config.device,
              "errors": stats.errors, "last_error": stats.last_error}
    return _status(f"{node_name}: scene", level, message, config.device, values)


def _status(name: str, level: bytes, message: str, hardware_id: str, values: dict) -> DiagnosticStatus:
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _mean_ms(total_s: float, count: int) -> str:
    return "" if count == 0 else f"{1e3 * total_s / count:.1f}"
