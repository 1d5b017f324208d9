"""Reading camera images from ROS bags without a ROS install (rosbags, pure Python).

A bag is a rosbag2 folder (metadata.yaml + .db3 or .mcap files), a single .mcap / .db3 file or a
ROS 1 .bag; a damaged one is read as far as it is intact (`io.bag_files`: the loss is in
`BagFrames.loss` and logged once). `BagSource` reads one camera lazily: it resolves the topics
when opened and decodes only the image messages asked for, in the bag's time order. `read_bag`
builds an ImageSet from it.

Topics: the image topic carries sensor_msgs/msg/Image or CompressedImage; when not named it is
the bag's only image topic (an image_transport pair `X` + `X/compressed` counts as one camera:
the raw `X` is read). The camera_info topic (sensor_msgs/msg/CameraInfo) defaults to the one in
the image topic's namespace (`/cam/image_raw` -> `/cam/camera_info`). Ground-truth poses, for
evaluation only, come from tf2_msgs/msg/TFMessage on a separate topic (`DEFAULT_GT_TOPIC`, as
`write_bag` writes them): transforms parent -> the images' `header.frame_id` (an optical frame,
so the 4x4 is camera-to-world in OpenCV axes), matched to each image by header stamp.

Lenses: each image is undistorted by the camera model of its camera_info (io.camera_models:
plumb_bob, rational_polynomial, equidistant; binning and ROI as REP 104 says; an image_rect topic
uses P), so frames come out as pinhole images with the undistorted camera's K.

Times are int nanoseconds. A frame's stamp is its `header.stamp` (the bag's receive time when
the header stamp is zero). Images decode with the node's decoder (`io.image_decoding`).
Messages that cannot be used (undecodable, depth/16-bit encodings, wrong size) are skipped with
a warning and counted; a bag where none can be used raises BagError.
"""

import logging
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from rosbags.interfaces import Connection
from rosbags.serde import SerdeError

from nvs_ros.core.image_set import ImageSet, evenly_spaced_indices
from nvs_ros.core.rotations import rotation_matrix
from nvs_ros.io.bag_files import TYPESTORE, BagLoss, OpenBag, open_reader, read_messages
from nvs_ros.io.camera_models import CameraModel, camera_from_info, is_rectified_topic, undistorter
from nvs_ros.io.errors import BagError, CameraModelError
from nvs_ros.io.image_decoding import ImageConversionError, compressed_msg_to_rgb8, image_msg_to_rgb8
from nvs_ros.io.image_files import downscale, rescale_intrinsics

log = logging.getLogger(__name__)

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TF_TYPE = "tf2_msgs/msg/TFMessage"
DEFAULT_GT_TOPIC = "/ground_truth/tf"
CUSTOM_DATA_CAPTURE = "nvs_ros.capture"
"""metadata.yaml custom_data key where `write_bag` records ImageSet.capture."""
GT_TOLERANCE_NS = 1_000_000
"""A ground-truth transform further than this (1 ms) from an image's stamp is not its pose."""
_MAX_SKIP_WARNINGS = 10


@dataclass(frozen=True)
class BagFrame:
    """One decoded image message."""

    index: int
    """Position among the image topic's messages, 0-based, in time order."""
    stamp_ns: int
    frame_id: str
    """header.frame_id: the camera's (optical) frame."""
    image_HW3: np.ndarray
    """RGB uint8, undistorted (a pinhole image; as stored when the camera has no distortion)."""
    K_33: np.ndarray
    """Intrinsics for image_HW3's size, OpenCV pixel convention."""


@dataclass(frozen=True)
class BagFrames:
    """What `read_bag` returns: the ImageSet plus what ImageSet has no field for."""

    image_set: ImageSet
    stamps_ns: np.ndarray
    """(N,) int64 header stamps of image_set's views."""
    indices: np.ndarray
    """(N,) message index of each view in the image topic (its name is frame_<index>.png)."""
    skipped: int
    """Selected image messages that could not be used (see the log for why)."""
    image_topic: str
    camera_info_topic: str | None
    """None when the intrinsics were given."""
    loss: BagLoss | None = None
    """What a damaged bag lost (None: nothing); read_bag logs it as one warning."""


class BagSource:
    """One camera of a bag, read lazily. Use as a context manager:

        with BagSource("run.mcap") as src:            # topics auto-detected
            for frame in src.frames(indices=[0, 10, 20]):
                ...

    K_33: intrinsics for the images as stored; when given, camera_info is not read.
    Raises BagError (on enter or while iterating) for unreadable bags, missing or ambiguous topics.
    """

    def __init__(self, path: str | Path, *, image_topic: str | None = None,
                 camera_info_topic: str | None = None, K_33: np.ndarray | None = None,
                 gt_topic: str | None = DEFAULT_GT_TOPIC) -> None:
        self.path = Path(path)
        self._requested = (image_topic, camera_info_topic, gt_topic)
        self._K_33 = None if K_33 is None else _checked_K(K_33)
        self._reader: OpenBag | None = None
        self.skipped = 0
        """Selected image messages skipped so far (undecodable, not colour, wrong size)."""
        self._logged_camera: CameraModel | None = None

    def __enter__(self) -> "BagSource":
        self._reader = open_reader(self.path)
        try:
            self._resolve_topics(*self._requested)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    @property
    def capture(self) -> str:
        """ImageSet.capture recorded by `write_bag`, else "unknown"."""
        value = self._open_reader().custom.get(CUSTOM_DATA_CAPTURE, "unknown")
        return value if value in ("360", "forward") else "unknown"

    def frames(self, indices: Collection[int] | None = None) -> Iterator[BagFrame]:
        """Decode the image messages at `indices` (all when None), in time order.

        Each image gets the intrinsics of the last camera_info received before it (for images
        before the first camera_info, the first one after). Stops reading once past the last index.
        """
        wanted = None if indices is None else set(int(i) for i in indices)
        last = None if wanted is None else max(wanted, default=-1)
        info: CameraModel | None = None
        pending: list[tuple[int, int, str, np.ndarray]] = []
        connections = self._image_connections + self._info_connections
        index = -1
        for connection, log_ns, raw in self._messages(connections):
            if connection.msgtype == CAMERA_INFO_TYPE:
                info = self._camera_info(raw) or info
                if info is not None:
                    yield from (self._frame(*p, info) for p in pending)
                    pending.clear()
                continue
            index += 1
            if wanted is not None and index not in wanted:
                if index > last and not pending:
                    return
                continue
            decoded = self._decode(connection, raw, index, log_ns)
            if decoded is None:
                continue
            if self._K_33 is not None:
                height, width = decoded[2].shape[:2]
                yield self._frame(index, *decoded, CameraModel.create(self._K_33, width, height))
            elif info is not None:
                yield self._frame(index, *decoded, info)
            else:
                pending.append((index, *decoded))
        if pending:
            raise BagError(f"{self.path}: no usable camera_info on {self.camera_info_topic} "
                           f"(all zero K?); give the intrinsics instead")

    def image_count(self) -> int:
        """Messages on the image topic (from the bag's index; counted when it has none)."""
        count = sum(c.msgcount for c in self._image_connections)
        if count == 0:  # an .mcap without statistics reports 0
            count = sum(1 for _ in self._messages(self._image_connections))
        return count

    def ground_truth(self, frame_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(stamps_M int64, c2w_M44) of the transforms to `frame_id` on the ground-truth topic,
        sorted by stamp; None when the bag has none."""
        if not self._gt_connections:
            return None
        stamps, poses, parents = [], [], set()
        for _, _, raw in self._messages(self._gt_connections):
            msg, error = _deserialize(raw, TF_TYPE)
            if msg is None:
                log.warning("%s: skipping a ground-truth message on %s: %s", self.path, self.gt_topic, error)
                continue
            for transform in msg.transforms:
                if transform.child_frame_id.lstrip("/") == frame_id.lstrip("/"):
                    stamps.append(_stamp_ns(transform.header.stamp))
                    poses.append(transform_to_matrix(transform.transform))
                    parents.add(transform.header.frame_id)
        if not stamps:
            return None
        if len(parents) > 1:
            log.warning("%s: ground truth for %s has several parent frames %s; ignoring it",
                        self.path, frame_id, sorted(parents))
            return None
        order = np.argsort(stamps, kind="stable")
        return np.asarray(stamps, dtype=np.int64)[order], np.stack(poses)[order]

    # --- topics -------------------------------------------------------------------------

    def _resolve_topics(self, image_topic: str | None, info_topic: str | None,
                        gt_topic: str | None) -> None:
        connections = self._open_reader().connections
        if not connections:
            raise BagError(f"{self.path}: the bag is empty (no topics)")
        self.image_topic = image_topic or _auto_image_topic(self.path, connections)
        self._image_connections = _connections_of(connections, self.image_topic,
                                                  (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE), self.path)
        if self._K_33 is not None:
            self.camera_info_topic, self._info_connections = None, []
        else:
            self.camera_info_topic = info_topic or _auto_info_topic(self.path, connections,
                                                                    self.image_topic)
            self._info_connections = _connections_of(connections, self.camera_info_topic,
                                                     (CAMERA_INFO_TYPE,), self.path)
        self._gt_connections = [c for c in connections if c.topic == gt_topic and c.msgtype == TF_TYPE]
        self.gt_topic = gt_topic if self._gt_connections else None

    # --- messages -----------------------------------------------------------------------

    @property
    def loss(self) -> BagLoss | None:
        """What the bag lost, when damaged (see io.bag_files)."""
        return self._open_reader().loss

    def _open_reader(self) -> OpenBag:
        if self._reader is None:
            raise BagError(f"{self.path}: BagSource is not open (use it in a with statement)")
        return self._reader

    def _messages(self, connections: list[Connection]) -> Iterator[tuple[Connection, int, Any]]:
        return read_messages(self._open_reader(), connections, self.path)

    def _decode(self, connection: Connection, raw: Any, index: int,
                log_ns: int) -> tuple[int, str, np.ndarray] | None:
        """(stamp_ns, frame_id, RGB image) of an image message, None (counted) if unusable."""
        msg, error = _deserialize(raw, connection.msgtype)
        if msg is None:
            self.mark_skipped(index, error)
            return None
        try:
            if connection.msgtype == COMPRESSED_IMAGE_TYPE:
                rgb_HW3 = compressed_msg_to_rgb8(msg)
            else:
                rgb_HW3 = image_msg_to_rgb8(msg)
        except ImageConversionError as err:
            self.mark_skipped(index, str(err))
            return None
        return _stamp_ns(msg.header.stamp) or log_ns, msg.header.frame_id, rgb_HW3

    def mark_skipped(self, index: int, why: str) -> None:
        """Count image message `index` as unusable and log why."""
        self.skipped += 1
        level = logging.WARNING if self.skipped <= _MAX_SKIP_WARNINGS else logging.DEBUG
        log.log(level, "%s: skipping image %d on %s: %s", self.path, index, self.image_topic, why)
        if self.skipped == _MAX_SKIP_WARNINGS:
            log.warning("%s: further skipped images are counted without a warning", self.path)

    def _camera_info(self, raw: Any) -> CameraModel | None:
        """The camera of a camera_info message; None (logged) if it has no usable calibration."""
        msg, error = _deserialize(raw, CAMERA_INFO_TYPE)
        if msg is None:
            log.warning("%s: skipping a camera_info message: %s", self.path, error)
            return None
        try:
            camera = camera_from_info(msg, rectified=is_rectified_topic(self.image_topic))
        except CameraModelError as err:
            log.warning("%s: ignoring camera_info on %s: %s (K = %s)", self.path, self.camera_info_topic,
                        err, np.asarray(msg.k).tolist())
            return None
        if camera != self._logged_camera:
            self._logged_camera = camera
            log.info("%s: camera %s%s", self.path, camera.describe(),
                     "; images are undistorted" if camera.distorted else "")
        return camera

    def _frame(self, index: int, stamp_ns: int, frame_id: str, image_HW3: np.ndarray,
               camera: CameraModel) -> BagFrame:
        height, width = image_HW3.shape[:2]
        if (camera.height, camera.width) != (height, width):
            # camera_info for another resolution (e.g. before a resize node): same camera, scaled.
            camera = camera.resized(height, width)
        to_pinhole = undistorter(camera)
        return BagFrame(index, stamp_ns, frame_id, to_pinhole(image_HW3), to_pinhole.K_33)


def read_bag(path: str | Path, *, image_topic: str | None = None,
             camera_info_topic: str | None = None, K_33: np.ndarray | None = None,
             gt_topic: str | None = DEFAULT_GT_TOPIC, max_frames: int | None = None,
             every_nth: int = 1, max_side: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> BagFrames:
    """One camera of a bag as an ImageSet (names `frame_<message index>.png`).

    Frames: every `every_nth` image message, then `max_frames` of those spread evenly (None:
    all). A selected message that cannot be used is skipped, so fewer may come back.
    max_side: downscale (area filter) so the longer side is at most this, intrinsics kept right.
    K_33: intrinsics of the images as stored, instead of camera_info.
    progress: called with (frames done, frames selected) after each selected message.
    Ground-truth poses fill c2w_N44 when every frame has one within GT_TOLERANCE_NS.
    """
    if every_nth < 1:
        raise BagError(f"every_nth must be >= 1, got {every_nth}")
    with BagSource(path, image_topic=image_topic, camera_info_topic=camera_info_topic,
                   K_33=K_33, gt_topic=gt_topic) as source:
        if source.loss is not None:
            log.warning("%s: damaged bag, reading what is intact: %s", path, source.loss)
        count = source.image_count()
        if count == 0:
            raise BagError(f"{path}: image topic {source.image_topic} has no messages")
        every_N = np.arange(0, count, every_nth)
        try:
            selected_N = every_N[evenly_spaced_indices(len(every_N), max_frames)]
        except ValueError as err:
            raise BagError(str(err)) from err
        frames = _read_frames(source, selected_N, max_side, progress)
        if not frames:
            raise BagError(f"{path}: none of the {len(selected_N)} selected image messages on "
                           f"{source.image_topic} could be used ({source.skipped} skipped; see the log)")
        if source.skipped:
            log.warning("%s: skipped %d of %d selected image messages", path, source.skipped, len(selected_N))
        stamps_N = np.array([f.stamp_ns for f in frames], dtype=np.int64)
        c2w_N44 = _match_ground_truth(source.ground_truth(frames[0].frame_id), stamps_N, path)
        image_set = ImageSet(
            names=[f"frame_{f.index:06d}.png" for f in frames],
            images_NHW3=np.stack([f.image_HW3 for f in frames]),
            K_N33=np.stack([f.K_33 for f in frames]),
            c2w_N44=c2w_N44, capture=source.capture, source=str(path))
        return BagFrames(image_set, stamps_N, np.array([f.index for f in frames]), source.skipped,
                         source.image_topic, source.camera_info_topic, source.loss)


def _read_frames(source: BagSource, selected_N: np.ndarray, max_side: int | None,
                 progress: Callable[[int, int], None] | None) -> list[BagFrame]:
    """The selected frames, downscaled; frames of another size than the first are skipped."""
    frames: list[BagFrame] = []
    first_size = None
    for frame in source.frames(selected_N):
        size = frame.image_HW3.shape[:2]
        first_size = first_size or size
        if size != first_size:
            source.mark_skipped(frame.index, f"{size[1]}x{size[0]} image, the first selected one "
                                f"is {first_size[1]}x{first_size[0]}")
        else:
            image_HW3 = downscale(frame.image_HW3, max_side)
            K_33 = rescale_intrinsics(frame.K_33, size, image_HW3.shape[:2])
            frames.append(replace(frame, image_HW3=image_HW3, K_33=K_33))
        if progress is not None:
            progress(len(frames) + source.skipped, len(selected_N))
    return frames


def _match_ground_truth(ground_truth: tuple[np.ndarray, np.ndarray] | None, stamps_N: np.ndarray,
                        path: str | Path) -> np.ndarray | None:
    """c2w_N44 of the transforms nearest to each stamp; None unless all are within tolerance."""
    if ground_truth is None:
        return None
    gt_stamps_M, c2w_M44 = ground_truth
    after_N = np.searchsorted(gt_stamps_M, stamps_N)
    left_N = np.clip(after_N - 1, 0, len(gt_stamps_M) - 1)
    right_N = np.clip(after_N, 0, len(gt_stamps_M) - 1)
    nearest_N = np.where(np.abs(gt_stamps_M[left_N] - stamps_N) <= np.abs(gt_stamps_M[right_N] - stamps_N),
                         left_N, right_N)
    missing = int((np.abs(gt_stamps_M[nearest_N] - stamps_N) > GT_TOLERANCE_NS).sum())
    if missing:
        log.warning("%s: %d of %d frames have no ground-truth pose within %.1f ms; "
                    "the set has no ground truth", path, missing, len(stamps_N), GT_TOLERANCE_NS / 1e6)
        return None
    return c2w_M44[nearest_N]


# --- topic detection ----------------------------------------------------------------------

def _topics_of(connections: list[Connection], msgtypes: tuple[str, ...]) -> dict[str, str]:
    """topic -> message type, for the topics carrying one of `msgtypes`."""
    return {c.topic: c.msgtype for c in connections if c.msgtype in msgtypes}


def _describe(connections: list[Connection], topics: Collection[str]) -> str:
    counts = {t: sum(c.msgcount for c in connections if c.topic == t) for t in topics}
    types = {c.topic: c.msgtype for c in connections}
    return ", ".join(f"{t} ({types[t]}, {counts[t]} messages)" for t in sorted(topics)) or "none"


def _auto_image_topic(path: Path, connections: list[Connection]) -> str:
    topics = sorted(_topics_of(connections, (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)))
    if len(topics) == 2 and topics[1] == topics[0] + "/compressed":
        log.info("%s: %s and %s are one camera; reading the raw %s", path, *topics, topics[0])
        return topics[0]
    if len(topics) == 1:
        return topics[0]
    if not topics:
        raise BagError(f"{path}: no image topics ({IMAGE_TYPE} or {COMPRESSED_IMAGE_TYPE}); "
                       f"the bag has: {_describe(connections, {c.topic for c in connections})}")
    raise BagError(f"{path}: {len(topics)} image topics, choose one with the image topic option: "
                   f"{_describe(connections, topics)}")


def camera_namespace(image_topic: str) -> str:
    """`/cam/image_raw` and `/cam/image_raw/compressed` -> `/cam` (image_transport layout)."""
    return image_topic.removesuffix("/compressed").rsplit("/", 1)[0]


def _auto_info_topic(path: Path, connections: list[Connection], image_topic: str) -> str:
    infos = _topics_of(connections, (CAMERA_INFO_TYPE,))
    namespace = camera_namespace(image_topic)
    if namespace + "/camera_info" in infos:
        return namespace + "/camera_info"
    same = [t for t in infos if t.rsplit("/", 1)[0] == namespace]
    if len(same) == 1:
        return same[0]
    raise BagError(f"{path}: no camera_info topic in {namespace or '/'} for {image_topic} "
                   f"(camera_info topics in the bag: {_describe(connections, infos)}); choose one "
                   "with the camera_info topic option or give the intrinsics (fx fy cx cy)")


def _connections_of(connections: list[Connection], topic: str, msgtypes: tuple[str, ...],
                    path: Path) -> list[Connection]:
    found = [c for c in connections if c.topic == topic]
    if not found or any(c.msgtype not in msgtypes for c in found):
        candidates = _topics_of(connections, msgtypes)
        what = f"has type {found[0].msgtype}" if found else "is not in the bag"
        raise BagError(f"{path}: topic {topic} {what}; topics of type {' / '.join(msgtypes)}: "
                       f"{_describe(connections, candidates)}")
    return found


# --- small conversions --------------------------------------------------------------------

def _deserialize(raw: Any, msgtype: str) -> tuple[Any | None, str]:
    """(message, "") or (None, why it does not deserialize)."""
    try:
        return TYPESTORE.deserialize_cdr(bytes(raw), msgtype), ""
    except (SerdeError, ValueError, IndexError) as err:
        return None, f"not a valid {msgtype} CDR message: {err}"


def _stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def transform_to_matrix(transform: Any) -> np.ndarray:
    """geometry_msgs/Transform (rosbags or rclpy) -> 4x4 float64 (quaternion normalised)."""
    t, q = transform.translation, transform.rotation
    T_44 = np.eye(4)
    T_44[:3, :3] = rotation_matrix([q.x, q.y, q.z, q.w])
    T_44[:3, 3] = [t.x, t.y, t.z]
    return T_44


def _checked_K(K_33: np.ndarray) -> np.ndarray:
    K_33 = np.asarray(K_33, dtype=np.float64)
    if K_33.shape != (3, 3) or not np.isfinite(K_33).all() or K_33[0, 0] <= 0 or K_33[1, 1] <= 0:
        raise BagError(f"intrinsics must be a 3x3 matrix with fx, fy > 0, got {K_33.tolist()}")
    return K_33
