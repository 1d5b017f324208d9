"""Which camera pose the node's /tf carries: what is sent, what is withheld, what is re-sent.

/tf carries the newest trusted pose as map -> camera optical frame or, when TF links `odom_frame`
to the camera (an odometry tree), as map -> odom composed with the camera's odometry pose at the
pose's image stamp (REP 105: never a second parent for the camera). It is withheld:
- while the scene does not trust its last round (LiveStatus.trusted): TF keeps the last trusted pose;
- in an odometry tree, until the poses are in odometry's scale (two keyframes with odometry,
  apart): a monocular pose has an arbitrary scale, and composed with metric odometry it would put
  the camera anywhere.
With tracking, /tf carries the newest pose by image stamp, tracked or keyframe, stamped with that
image's stamp, and stamps never go backwards; without it, the newest keyframe's pose stamped now.
/tf is volatile, so the last transform is re-sent every `tf_period_s`.
"""

from collections.abc import Callable

import numpy as np
from rclpy.clock import Clock
from rclpy.impl.rcutils_logger import RcutilsLogger

from nvs_ros.app.scene_worker import SceneWorker, TrackedFrame
from nvs_ros.core.live_scene import KeyframePoses
from nvs_ros.core.live_scene_config import PRIOR_SOURCE
from nvs_ros.ros import WARNING_PERIOD_S
from nvs_ros.ros.odometry import CameraOdometry
from nvs_ros.ros.tf_broadcaster import TfBroadcaster
from nvs_ros.ros.tf_tree import map_to_odom
from nvs_ros.ros.transforms import matrix_to_transform_stamped


class PoseTf:
    """The node's camera pose on /tf (called from the products callback and the re-send timer,
    which the node's default callback group runs one at a time)."""

    def __init__(self, broadcaster: TfBroadcaster, clock: Clock, logger: RcutilsLogger, worker: SceneWorker,
                 odometry: CameraOdometry, map_frame: str, camera_frame: Callable[[], str], *,
                 tracking: bool, period_s: float) -> None:
        self._broadcaster = broadcaster
        self._clock = clock
        self._logger = logger
        self._worker = worker
        self._odometry = odometry
        self._map_frame = map_frame
        self._camera_frame = camera_frame
        """The camera's optical frame now (it may come with the first image's header)."""
        self._tracking = tracking
        self._period_ns = period_s * 1e9
        self.last: tuple[np.ndarray, str, str] | None = None
        """(T_parent_child, parent, child) last sent."""
        self._last_stamp_ns: int | None = None
        self._last_sent_ns = 0
        """The node's clock when /tf was last sent."""
        self._pose_stamp_ns: int | None = None
        """Image stamp of the pose on /tf (keyframe or tracked frame)."""
        self.withheld = ""
        """Why the latest poses went out without TF (empty: they did not)."""
        self.tracked_older_than_tf = 0
        """Accepted tracked poses not sent: TF already carried a newer pose."""

    def clear(self) -> None:
        """The scene was reset: nothing is re-sent until new poses come."""
        self.last, self.withheld, self._pose_stamp_ns = None, "", None

    def send_keyframe_poses(self, poses: KeyframePoses, now_ns: int) -> None:
        """The newest keyframe's pose (of those with a finite pose)."""
        finite = [i for i in range(len(poses.names)) if np.isfinite(poses.c2w_N44[i]).all()]
        if not finite:
            return
        newest = max(finite, key=lambda i: poses.stamps_ns[i])
        c2w_44, stamp_ns = poses.c2w_N44[newest], poses.stamps_ns[newest]
        if not self._tracking:
            # Stamped now: poses of old keyframes keep improving, and tf2 ignores a re-sent stamp.
            self._send(c2w_44, stamp_ns, poses.scale_source, now_ns)
        elif self._pose_stamp_ns is None or stamp_ns > self._pose_stamp_ns:
            self._send(c2w_44, stamp_ns, poses.scale_source, stamp_ns)

    def send_tracked(self, tracked: TrackedFrame) -> None:
        """An accepted tracked frame's pose, unless TF already carries a newer one (counted)."""
        if self._pose_stamp_ns is not None and tracked.stamp_ns <= self._pose_stamp_ns:
            self.tracked_older_than_tf += 1
            return
        self._send(tracked.c2w_44, tracked.stamp_ns, tracked.scale_source, tracked.stamp_ns, tracked.odometry_c2w_44)

    def withhold_untrusted(self) -> bool:
        """True (and said in `withheld`) unless the scene trusts its last round's poses
        (LiveStatus.trusted). TF keeps the last trusted pose."""
        status = self._worker.stats.status
        if status is not None and status.trusted:
            return False
        self.withheld = f"the last round's poses are {status.verdict if status else None}: TF keeps the last trusted pose"
        self._logger.warning(self.withheld, throttle_duration_sec=WARNING_PERIOD_S)
        return True

    def resend(self) -> None:
        """The last transform again: a listener that starts late still gets the pose within a
        period. Not while the clock stands (a paused bag): tf2 warns about a re-sent stamp."""
        now_ns = self._clock.now().nanoseconds
        if self.last is None or now_ns == self._last_stamp_ns:
            return
        if not self._tracking:
            self._send_last(now_ns)
            return
        # With tracking, only while no newer pose comes (none sent for a period, no frame being
        # posed: a re-sent stamp newer than that frame's would keep its pose off TF), stamped
        # in the images' time (not the node's clock, which may be another: a bag without
        # use_sim_time): the pose's stamp advanced by the time since it was sent.
        since_sent_ns = now_ns - self._last_sent_ns
        if since_sent_ns >= self._period_ns and not self._worker.tracking_pending:
            self._send_last(self._last_stamp_ns + since_sent_ns)

    def _send(self, T_map_camera_44: np.ndarray, pose_stamp_ns: int, scale_source: str | None,
              tf_stamp_ns: int, T_odom_camera_44: np.ndarray | None = None) -> None:
        """map -> camera, or map -> odom composed with T_odom_camera at the pose's image stamp
        (looked up when not given). map -> odom only once the map poses are in odometry's scale
        (metres): before that it is withheld (a previous one, from metric poses, stays)."""
        if self._tracking and self._last_stamp_ns is not None and tf_stamp_ns <= self._last_stamp_ns:
            return
        odom, camera = self._odometry.odom_frame, self._camera_frame()
        if self._odometry.connected(camera):
            if scale_source != PRIOR_SOURCE:
                self.withheld = f"map -> {odom} withheld: the poses are not in odometry's scale yet"
                self._logger.warning(self.withheld, throttle_duration_sec=WARNING_PERIOD_S)
                return
            if self.withhold_untrusted():
                return
            if T_odom_camera_44 is None:
                T_odom_camera_44 = self._odometry.nearest(camera, pose_stamp_ns)
            self.last = (map_to_odom(T_map_camera_44, T_odom_camera_44), self._map_frame, odom)
        elif self.withhold_untrusted():
            return
        else:
            self.last = (T_map_camera_44, self._map_frame, camera)
        self.withheld = ""
        self._pose_stamp_ns = pose_stamp_ns
        self._send_last(tf_stamp_ns)

    def _send_last(self, stamp_ns: int) -> None:
        self._broadcaster.send([matrix_to_transform_stamped(*self.last, stamp_ns)])
        self._last_stamp_ns = stamp_ns
        self._last_sent_ns = self._clock.now().nanoseconds
