"""Classical pose chaining for ordered, textured streams (a video, a bag): the `features`
initialisation of `nvs-ros reconstruct --init features`, and a fast estimate on its own.

Frame by frame, with the known intrinsics: SIFT features (a low contrast threshold, so that
weak texture such as DTU's cardboard still gives ~1000 per 400 px image); the first two frames
give an essential matrix (RANSAC) and its pose (unit baseline), whose inlier matches are
triangulated. Every later frame is matched to each of the last `partners` registered frames (a
stream that jumps, as a scan row by row does, still finds its neighbours), each pair's matches
kept if one essential matrix explains them, and its pose comes from PnP (RANSAC) on all its
matches that have a 3D point in any partner. Its matches then join existing tracks (where the
point reprojects) or are triangulated into new points. Every `bundle_every` frames and at the
end, a bundle adjustment (Levenberg-Marquardt, Huber weights, points eliminated by the Schur
complement) refines all poses and points, and observations that still reproject badly leave
their tracks. A frame PnP cannot place (too few 3D matches) is tried again after the pass
against every registered frame (the stream may have reached it before its neighbours): those
PnP can place first, sweep after sweep; only when none can is one chained through the essential
matrix with its best partner, its translation scaled to the previous step's length. At the end
every placed frame must be confirmed by its partners (their chained poses explain most of the
matches they share), or it stays unregistered with the frames that could not be placed. Poses
are up to a similarity; the first camera is the world frame.

Measured here (median relative rotation error over all pairs, chaining alone, on 2 shared and
busy cores; before these changes: SIFT's default threshold, one partner, no bundle adjustment):
dtu_scan65 at 400 px, 49 views: 49/49, RRA@5 100%, 0.24 degrees in ~50 s (before: 41/49, 4.3
degrees in 2 s; pycolmap at 800x600: 0.36); llff_fern at 252 px, 20 views: 0.24 degrees in 4 s
(before: 0.56); the bundled room ring, 24 views at 128 px: 24/24, 0.29 degrees in 5 s (before:
4.9, drifting). At 640 px (`--init features` since 2026-12-03, one core): dtu_scan65 49/49, 0.15
degrees in ~185 s; llff_fern (504 px) 0.16 degrees in 20 s; middlebury_temple_ring, 16 views not
in ring order, 16/16, 0.52 degrees, CCA@0.1 100% in 16 s (CCA 6% when the frames left over were
placed in index order, two of them through an essential matrix). nerf_synthetic_chair, 100 views
in no order at 640 px: 99/100 (one left out unconfirmed), RRA@15 98%, CCA@0.1 99%, 0.14 degrees
in ~160-260 s (pycolmap at 800 px: 100%). Wrong but confirmed: the sparse chair rings (8 and 16
views at 640 px: 6 and 14 kept, RRA@15 21% and 43%), whose views share few matches across the
symmetric object.
"""

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.cameras import hat
from nvs_ros.baselines.bundle_adjustment import bundle_adjust, reprojection_errors
from nvs_ros.core.image_set import ImageSet

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChainingConfig:
    max_features: int = 4000
    contrast_threshold: float = 0.01
    """SIFT's; its default 0.04 finds ~200 features on DTU at 400 px, too few to chain 49 views."""
    ratio: float = 0.8
    """Lowe's ratio test."""
    ransac_px: float = 1.0
    """Epipolar / reprojection RANSAC threshold, pixels."""
    min_matches: int = 20
    """A frame with fewer matches to every partner stays unregistered."""
    min_pnp_points: int = 12
    """Also the fewest matches for a partner to lend its 3D points to PnP."""
    partners: int = 20
    """Earlier registered frames a frame is matched against."""
    min_triangulation_angle_deg: float = 1.0
    """Matches seen under a smaller angle are not triangulated (depth too uncertain)."""
    bundle_every: int = 5
    """Registered frames between two bundle adjustments (0: none, not even at the end)."""
    max_reprojection_px: float = 3.0
    """After a bundle adjustment, observations reprojecting farther leave their tracks."""
    min_agreement: float = 0.8
    """Share of a pair's verified matches the chained poses must explain (within 2 RANSAC
    thresholds of their epipolar lines) for the pair to confirm both frames."""
    min_confirming_partners: int = 2
    """A placed frame fewer partners confirm is left unregistered (see `_Chain.confirmed_frames`)."""


@dataclass
class _Frame:
    keypoints_P2: np.ndarray
    descriptors_PD: np.ndarray
    point_ids_P: np.ndarray
    """Index into the map of each keypoint's 3D point, -1 where none."""


def chain_poses(image_set: ImageSet, config: ChainingConfig = ChainingConfig()) -> CameraEstimates:
    """Camera-to-world of every image of an ordered stream (OpenCV axes, arbitrary scale); frames
    that could not be placed, or whose partners do not confirm their pose, are unregistered."""
    n = len(image_set)
    chain = _build_chain(image_set, config)
    placed = np.isfinite(chain.w2c_N44[:, 0, 0])
    registered = placed & chain.confirmed_frames()
    if (placed & ~registered).any():
        _log.info("feature chaining: %d placed frames left out, their partners do not confirm them: %s",
                  int((placed & ~registered).sum()), np.flatnonzero(placed & ~registered).tolist())
    c2w_N44 = np.full((n, 4, 4), np.nan)
    c2w_N44[registered] = np.linalg.inv(chain.w2c_N44[registered])
    sizes = np.tile([image_set.width, image_set.height], (n, 1))
    return CameraEstimates(names=list(image_set.names), c2w_N44=c2w_N44, registered_N=registered,
                           K_N33=image_set.K_N33, sizes_N2=sizes)


def chained_start(image_set: ImageSet, config: ChainingConfig = ChainingConfig()) -> tuple[np.ndarray | None, int]:
    """(Initial poses from the chain, how many views it placed): camera-to-world, NaN rows where a
    view is not placed, where the chain places and confirms at least half of the views (and two);
    None where it does not (too little texture, resolution or overlap: learn the poses instead)."""
    estimates = chain_poses(image_set, config)
    placed, n = int(estimates.registered_N.sum()), len(image_set)
    _log.info("feature chaining at %dx%d placed %d of %d images", image_set.width, image_set.height, placed, n)
    return (estimates.c2w_N44 if placed >= max(2, n // 2) else None), placed


def chained_keyframe_poses(keyframes: ImageSet) -> np.ndarray | None:
    """`chained_start`'s poses alone: what core.live_scene.LiveScene starts a round from."""
    return chained_start(keyframes)[0]


def _build_chain(image_set: ImageSet, config: ChainingConfig) -> "_Chain":
    """The ordered pass, the frames it left over, bundle adjustments: every frame placed that can be.
    Only the second frame placed comes from an essential matrix in the ordered pass; a frame PnP
    cannot place waits for the leftover sweeps, where PnP is tried first again. Measured on
    nerf_synthetic_chair (views in no order, 100 at 640 px): chaining every such frame at once
    through an essential matrix (12 did) gave 100 placed, RRA@15 52%, CCA@0.1 3%; waiting, 99 of
    100 right (RRA@15 98%, CCA 99%)."""
    sift = cv2.SIFT_create(nfeatures=config.max_features, contrastThreshold=config.contrast_threshold)
    chain = _Chain([_features(sift, image) for image in image_set.images_NHW3], image_set.K_N33, config)
    since_bundle = 0
    for i in range(1, len(image_set)):
        placed_so_far = [j for j in range(i - 1, -1, -1) if chain.registered(j)]
        if chain.register(i, placed_so_far[: config.partners], essential=len(placed_so_far) < 2):
            since_bundle += 1
        if config.bundle_every and since_bundle >= config.bundle_every:
            chain.bundle_adjust()
            since_bundle = 0
    since_bundle += _place_the_rest(chain)
    if config.bundle_every and since_bundle:
        chain.bundle_adjust()
    return chain


def _place_the_rest(chain: "_Chain") -> int:
    """Frames the stream passed too early (a scan's row change, a ring not taken in order),
    placed from every registered frame; returns how many. By PnP first, sweep after sweep, as
    each placed frame brings more points; only when no frame left can be placed that way is one
    chained through an essential matrix, whose translation has no scale of its own (on the
    temple ring, taken in index order, two frames were chained that way and the views built on
    them drifted along the ring)."""
    placed = 0
    while (newly := _sweep(chain, essential=False)) or (newly := _sweep(chain, essential=True, first_only=True)):
        placed += newly
    return placed


def _sweep(chain: "_Chain", essential: bool, first_only: bool = False) -> int:
    """Tries every frame not yet placed against every placed one; returns how many it placed."""
    placed = 0
    for i in chain.unregistered_frames():
        if chain.register(i, chain.registered_frames(), essential):
            placed += 1
            if first_only:
                break
    return placed


class _Chain:
    """The growing reconstruction: frames with their tracks, poses (NaN: not yet placed), points."""

    def __init__(self, frames: list[_Frame], K_N33: np.ndarray, config: ChainingConfig) -> None:
        self.frames, self.K_N33, self.config = frames, K_N33, config
        self.w2c_N44 = np.full((len(frames), 4, 4), np.nan)
        self.w2c_N44[0] = np.eye(4)
        self.points_M3 = np.zeros((0, 3))
        self.step_length = 1.0
        self._verified_pairs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        """(partner, frame) -> their epipolar-consistent matches: a frame left over is matched again."""

    def registered(self, i: int) -> bool:
        return bool(np.isfinite(self.w2c_N44[i, 0, 0]))

    def registered_frames(self) -> list[int]:
        return [j for j in range(len(self.frames)) if self.registered(j)]

    def unregistered_frames(self) -> list[int]:
        return [j for j in range(len(self.frames)) if not self.registered(j)]

    def register(self, i: int, candidates: list[int], essential: bool = True) -> bool:
        """Places frame i from its matches with the registered `candidates` and grows the map with
        them; False (and nothing changed) where it cannot be placed (by PnP alone where not
        `essential`)."""
        frames, K_N33, config = self.frames, self.K_N33, self.config
        partners = self._partner_matches(i, candidates)
        if not partners or len(partners[0][2]) < config.min_matches:
            return False
        pose = _pnp(frames, i, partners, self.points_M3, K_N33[i], config)
        j, prev_idx, idx = partners[0]
        if pose is None and essential:
            pose = _relative(frames[j], frames[i], prev_idx, idx, K_N33[j], K_N33[i], self.w2c_N44[j],
                             self.step_length, config)
        if pose is None:
            return False
        self.step_length = max(float(np.linalg.norm(_centre(pose) - _centre(self.w2c_N44[j]))), 1e-6)
        self.w2c_N44[i] = pose
        for j, prev_idx, idx in partners:
            _extend_tracks(frames[i], frames[j], idx, prev_idx, self.points_M3, self.w2c_N44[j], K_N33[j], config)
            self.points_M3 = _triangulate(frames[j], frames[i], prev_idx, idx, K_N33[j], K_N33[i], self.w2c_N44[j],
                                          pose, self.points_M3, config)
        return True

    def confirmed_frames(self) -> np.ndarray:
        """Per frame, whether at least `min_confirming_partners` of the frames it shares verified
        matches with confirm its pose: the chained poses of the two explain most of their matches.
        A frame placed from wrong matches (a symmetric object seen from the other side) fits the
        few it was placed from, not its other partners. Measured on nerf_synthetic_chair, 100
        views at 640 px: the one wrong frame (80 degrees off) explains at most 64% of any pair's
        matches; every right frame 100% of several pairs of hundreds of matches."""
        confirmations_N = np.zeros(len(self.frames), dtype=np.int64)
        for (j, i), (j_idx, i_idx) in self._verified_pairs.items():
            if len(i_idx) >= self.config.min_matches and self.registered(i) and self.registered(j):
                if self._explained_share(j, i, j_idx, i_idx) >= self.config.min_agreement:
                    confirmations_N[[i, j]] += 1
        return confirmations_N >= self.config.min_confirming_partners

    def _explained_share(self, j: int, i: int, j_idx: np.ndarray, i_idx: np.ndarray) -> float:
        """Share of the matches within 2 RANSAC thresholds (Sampson distance, frame i's pixels) of
        the epipolar geometry the chained poses of j and i give."""
        relative = self.w2c_N44[i] @ np.linalg.inv(self.w2c_N44[j])
        t_3 = relative[:3, 3] / max(float(np.linalg.norm(relative[:3, 3])), 1e-12)
        E_33 = hat(torch.from_numpy(t_3)[None])[0].numpy() @ relative[:3, :3]
        a = _normalised(self.frames[j], j_idx, self.K_N33[j])
        b = _normalised(self.frames[i], i_idx, self.K_N33[i])
        a_P3, b_P3 = np.c_[a, np.ones(len(a))], np.c_[b, np.ones(len(b))]
        line_b_P3, line_a_P3 = a_P3 @ E_33.T, b_P3 @ E_33
        squared = (b_P3 * line_b_P3).sum(1) ** 2 / np.maximum(
            (line_b_P3[:, :2] ** 2).sum(1) + (line_a_P3[:, :2] ** 2).sum(1), 1e-18)
        return float((np.sqrt(squared) * self.K_N33[i][0, 0] < 2 * self.config.ransac_px).mean())

    def bundle_adjust(self) -> None:
        self.points_M3 = _bundle_and_filter(self.frames, self.w2c_N44, self.points_M3, self.K_N33, self.config)

    def _partner_matches(self, i: int, candidates: list[int]) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(partner, its keypoint indices, frame i's) for each candidate sharing at least
        `min_pnp_points` epipolar-consistent matches with frame i, most matches first."""
        found = [(j, *self._verified(j, i)) for j in candidates]
        return sorted([m for m in found if len(m[2]) >= self.config.min_pnp_points], key=lambda m: -len(m[2]))

    def _verified(self, j: int, i: int) -> tuple[np.ndarray, np.ndarray]:
        if (j, i) not in self._verified_pairs:
            a, b = self.frames[j], self.frames[i]
            self._verified_pairs[(j, i)] = _verified(a, b, *_match(a, b, self.config), self.K_N33[j], self.K_N33[i],
                                                     self.config)
        return self._verified_pairs[(j, i)]


def _features(sift: cv2.SIFT, image_HW3: np.ndarray) -> _Frame:
    keypoints, descriptors = sift.detectAndCompute(cv2.cvtColor(image_HW3, cv2.COLOR_RGB2GRAY), None)
    if descriptors is None:
        return _Frame(np.zeros((0, 2)), np.zeros((0, 128), np.float32), np.zeros(0, np.int64))
    points = np.array([k.pt for k in keypoints], dtype=np.float64)
    return _Frame(points, descriptors, np.full(len(points), -1, dtype=np.int64))


def _match(a: _Frame, b: _Frame, config: ChainingConfig) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ratio-test matches a -> b, none of b's keypoints taken twice."""
    if len(a.descriptors_PD) < 2 or len(b.descriptors_PD) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    pairs = matcher.knnMatch(a.descriptors_PD, b.descriptors_PD, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < config.ratio * p[1].distance]
    a_idx = np.array([m.queryIdx for m in good], dtype=np.int64)
    b_idx = np.array([m.trainIdx for m in good], dtype=np.int64)
    unique = np.bincount(b_idx, minlength=len(b.keypoints_P2))[b_idx] == 1  # an ambiguous keypoint is dropped
    return a_idx[unique], b_idx[unique]


def _verified(a: _Frame, b: _Frame, a_idx: np.ndarray, b_idx: np.ndarray, K_a: np.ndarray, K_b: np.ndarray,
              config: ChainingConfig) -> tuple[np.ndarray, np.ndarray]:
    """The matches consistent with one essential matrix (RANSAC): on weak texture most ratio-test
    survivors between distant views are wrong, and would drown PnP's inliers."""
    if len(a_idx) < config.min_pnp_points:
        return a_idx[:0], b_idx[:0]
    a_n, b_n = _normalised(a, a_idx, K_a), _normalised(b, b_idx, K_b)
    threshold = 2 * config.ransac_px / float(K_b[0, 0])
    # OpenCV's USAC: the same inliers as plain RANSAC here, in a ninth of the time
    E, mask = cv2.findEssentialMat(a_n, b_n, np.eye(3), method=cv2.USAC_DEFAULT, prob=0.999, threshold=threshold)
    if E is None or mask is None:
        return a_idx[:0], b_idx[:0]
    inlier = mask[:, 0].astype(bool)
    return a_idx[inlier], b_idx[inlier]


def _pnp(frames: list[_Frame], i: int, partners: list[tuple[int, np.ndarray, np.ndarray]], points_M3: np.ndarray,
         K: np.ndarray, config: ChainingConfig) -> np.ndarray | None:
    """World-to-camera of frame i from all its matches that have a 3D point in a partner, or None;
    the inliers join their tracks."""
    pairs = [np.stack([idx, frames[j].point_ids_P[prev_idx]], axis=1) for j, prev_idx, idx in partners]
    pairs_C2 = np.unique(np.concatenate(pairs), axis=0)
    pairs_C2 = pairs_C2[pairs_C2[:, 1] >= 0]
    if len(pairs_C2) < config.min_pnp_points:
        return None
    keypoint_C, point_C = pairs_C2[:, 0], pairs_C2[:, 1]
    object_C3, image_C2 = points_M3[point_C], frames[i].keypoints_P2[keypoint_C]
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(object_C3, image_C2, K, None, reprojectionError=2 * config.ransac_px,
                                                 iterationsCount=1000, flags=cv2.SOLVEPNP_EPNP)
    if not ok or inliers is None or len(inliers) < config.min_pnp_points:
        return None
    inliers = inliers[:, 0]
    rvec, tvec = cv2.solvePnPRefineLM(object_C3[inliers], image_C2[inliers], K, None, rvec, tvec)
    # a keypoint voted for by two points keeps the first inlier
    keypoints, first = np.unique(keypoint_C[inliers], return_index=True)
    frames[i].point_ids_P[keypoints] = point_C[inliers][first]
    return _w2c(cv2.Rodrigues(rvec)[0], tvec[:, 0])


def _relative(prev: _Frame, frame: _Frame, prev_idx: np.ndarray, idx: np.ndarray, K_prev: np.ndarray,
              K: np.ndarray, w2c_prev: np.ndarray, step_length: float, config: ChainingConfig) -> np.ndarray | None:
    """World-to-camera of `frame` from the essential matrix with its partner frame."""
    # both in normalised coordinates, so the two frames may have different intrinsics
    a, b = _normalised(prev, prev_idx, K_prev), _normalised(frame, idx, K)
    threshold = config.ransac_px / float(K[0, 0])
    E, mask = cv2.findEssentialMat(a, b, np.eye(3), method=cv2.RANSAC, prob=0.999, threshold=threshold)
    if E is None or E.shape != (3, 3) or int(mask.sum()) < config.min_matches:
        return None
    inliers, R, t, _ = cv2.recoverPose(E, a, b, np.eye(3), mask=mask)
    if inliers < config.min_matches:
        return None
    relative = _w2c(R, t[:, 0] * step_length)
    return relative @ w2c_prev


def _extend_tracks(frame: _Frame, partner: _Frame, idx: np.ndarray, partner_idx: np.ndarray, points_M3: np.ndarray,
                   w2c_partner: np.ndarray, K_partner: np.ndarray, config: ChainingConfig) -> None:
    """A partner keypoint without a point, matched to one of `frame`'s with a point that reprojects
    onto it, joins that point's track."""
    point_ids = frame.point_ids_P[idx]
    open_ = (point_ids >= 0) & (partner.point_ids_P[partner_idx] < 0)
    if not open_.any():
        return
    uv_hat, depth = _project(points_M3[point_ids[open_]], w2c_partner, K_partner)
    close = (depth > 0) & (np.linalg.norm(uv_hat - partner.keypoints_P2[partner_idx[open_]], axis=1)
                           < 2 * config.ransac_px)
    partner.point_ids_P[partner_idx[open_][close]] = point_ids[open_][close]


def _triangulate(prev: _Frame, frame: _Frame, prev_idx: np.ndarray, idx: np.ndarray, K_prev: np.ndarray,
                 K: np.ndarray, w2c_prev: np.ndarray, w2c: np.ndarray, points_M3: np.ndarray,
                 config: ChainingConfig) -> np.ndarray:
    """Adds the 3D points of matches that have none yet; returns the grown map."""
    new = (prev.point_ids_P[prev_idx] < 0) & (frame.point_ids_P[idx] < 0)
    if not new.any():
        return points_M3
    a, b = prev.keypoints_P2[prev_idx[new]], frame.keypoints_P2[idx[new]]
    X_4P = cv2.triangulatePoints(K_prev @ w2c_prev[:3], K @ w2c[:3], a.T, b.T)
    X_P3 = (X_4P[:3] / X_4P[3]).T
    keep = _well_conditioned(X_P3, w2c_prev, w2c, a, b, K_prev, K, config)
    ids = len(points_M3) + np.arange(int(keep.sum()))
    prev.point_ids_P[prev_idx[new][keep]] = ids
    frame.point_ids_P[idx[new][keep]] = ids
    return np.concatenate([points_M3, X_P3[keep]])


def _well_conditioned(X_P3: np.ndarray, w2c_a: np.ndarray, w2c_b: np.ndarray, a_P2: np.ndarray, b_P2: np.ndarray,
                      K_a: np.ndarray, K_b: np.ndarray, config: ChainingConfig) -> np.ndarray:
    """In front of both cameras, reprojecting within 2 RANSAC thresholds, seen under enough angle."""
    finite = np.isfinite(X_P3).all(axis=1)
    X_P3 = np.where(finite[:, None], X_P3, 0.0)
    keep = finite
    rays = []
    for w2c, K, uv in ((w2c_a, K_a, a_P2), (w2c_b, K_b, b_P2)):
        uv_hat, depth = _project(X_P3, w2c, K)
        keep = keep & (depth > 0) & (np.linalg.norm(uv_hat - uv, axis=1) < 2 * config.ransac_px)
        rays.append(X_P3 - _centre(w2c))
    cosine = (rays[0] * rays[1]).sum(1) / np.maximum(np.linalg.norm(rays[0], axis=1) * np.linalg.norm(rays[1], axis=1),
                                                     1e-12)
    return keep & (cosine < np.cos(np.radians(config.min_triangulation_angle_deg)))


def _normalised(frame: _Frame, idx: np.ndarray, K: np.ndarray) -> np.ndarray:
    """The keypoints `idx` of `frame` in normalised image coordinates (K undone)."""
    return cv2.undistortPoints(frame.keypoints_P2[idx][:, None], K, None)[:, 0]


def _project(X_P3: np.ndarray, w2c_44: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions and depths of world points in one camera."""
    cam_P3 = X_P3 @ w2c_44[:3, :3].T + w2c_44[:3, 3]
    projected = cam_P3 @ K.T
    uv_hat = projected[:, :2] / np.where(np.abs(projected[:, 2:]) > 1e-12, projected[:, 2:], 1e-12)
    return uv_hat, cam_P3[:, 2]


def _bundle_and_filter(frames: list[_Frame], w2c_N44: np.ndarray, points_M3: np.ndarray, K_N33: np.ndarray,
                       config: ChainingConfig) -> np.ndarray:
    """Bundle adjustment of every registered pose (in place) and tracked point, after which the
    observations reprojecting farther than `max_reprojection_px` leave their tracks."""
    frame_O, keypoint_O, point_O, uv_O2 = _observations(frames, w2c_N44)
    if len(frame_O) == 0:
        return points_M3
    w2c_N44[:], points_M3 = bundle_adjust(w2c_N44, points_M3, K_N33, frame_O, point_O, uv_O2,
                                          huber_px=config.ransac_px)
    bad = reprojection_errors(w2c_N44, points_M3, K_N33, frame_O, point_O, uv_O2) > config.max_reprojection_px
    for f, k in zip(frame_O[bad], keypoint_O[bad]):
        frames[f].point_ids_P[k] = -1
    return points_M3


def _observations(frames: list[_Frame], w2c_N44: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(frame, keypoint, point, pixel) of every observation, in a registered frame, of a point
    seen at least twice."""
    tracked = [(f, np.flatnonzero(frame.point_ids_P >= 0)) for f, frame in enumerate(frames)
               if np.isfinite(w2c_N44[f, 0, 0])]
    frame_O = np.concatenate([np.full(len(k), f) for f, k in tracked]).astype(np.int64)
    keypoint_O = np.concatenate([k for _, k in tracked]).astype(np.int64)
    point_O = np.concatenate([frames[f].point_ids_P[k] for f, k in tracked]).astype(np.int64)
    uv_O2 = np.concatenate([frames[f].keypoints_P2[k] for f, k in tracked]).reshape(-1, 2)
    seen_twice = np.bincount(point_O)[point_O] >= 2 if len(point_O) else np.zeros(0, bool)
    return frame_O[seen_twice], keypoint_O[seen_twice], point_O[seen_twice], uv_O2[seen_twice]


def _w2c(R_33: np.ndarray, t_3: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = R_33, t_3
    return out


def _centre(w2c_44: np.ndarray) -> np.ndarray:
    return -w2c_44[:3, :3].T @ w2c_44[:3, 3]
