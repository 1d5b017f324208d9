"""Camera poses of a 360-degree capture as points on a viewing sphere, plus per-image refinements.

Scene gauge (ours to choose, not ground truth): the cameras sit on a sphere of radius R around
the world origin and look at it, world +Z is "up", roll is 0. These are priors from the capture
type ("360": the photographer walked around the object, holding the camera upright). Azimuth is
measured about +Z from +X, elevation from the XY plane, radians (as core.cameras.orbit_c2w).

Radius from the field of view: the object is assumed to roughly fill the image. If the scene
is a ball of radius r (the field's box, r = its half size) and it just fills the narrower field
of view 2*alpha of a camera at distance R, then r = R sin(alpha), so R = r / sin(alpha). The
absolute scale is a gauge too; what this fixes is that the content fits the field's box.

Per-image refinements (as ACE0's pose refiner): deltas of azimuth, elevation (in the sigmoid's
logit space, so it stays inside the range smoothly), roll and log-radius, plus an optional
small se(3) twist in the camera frame; all zero at the start.
"""

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from nvs_ros.core import cameras

if TYPE_CHECKING:  # the encoder imports this module
    from nvs_ros.core.pose_encoder import PoseHypotheses


@dataclass(frozen=True)
class OrbitConfig:
    """Anchors on the viewing sphere and the elevation range."""

    num_azimuths: int = 8
    """Anchors per elevation ring, evenly spaced in azimuth."""
    ring_elevations_deg: tuple[float, ...] = (20.0, 50.0)
    """Elevation of each anchor ring, degrees. K = num_azimuths * len(ring_elevations_deg)."""
    stagger_rings: bool = True
    """Turn every other ring by half an azimuth spacing (16 distinct azimuths for K = 16)."""
    elevation_range_deg: tuple[float, float] = (-15.0, 85.0)
    """Elevations are a sigmoid over this range (clamping killed gradients at the limit);
    staying below 90 keeps "up" defined."""


def anchor_angles(config: OrbitConfig) -> tuple[Tensor, Tensor]:
    """(azimuth_K, elevation_K) of the anchors, radians, float32, ring by ring."""
    step = 2.0 * math.pi / config.num_azimuths
    azimuths, elevations = [], []
    for ring, elevation_deg in enumerate(config.ring_elevations_deg):
        offset = 0.5 * step if (config.stagger_rings and ring % 2 == 1) else 0.0
        azimuths += [j * step + offset for j in range(config.num_azimuths)]
        elevations += [math.radians(elevation_deg)] * config.num_azimuths
    return torch.tensor(azimuths), torch.tensor(elevations)


def elevation_from_logit(logit: Tensor, config: OrbitConfig) -> Tensor:
    """Smooth map R -> elevation range (radians)."""
    lo, hi = (math.radians(d) for d in config.elevation_range_deg)
    return lo + (hi - lo) * torch.sigmoid(logit)


def elevation_logit(elevation: Tensor, config: OrbitConfig) -> Tensor:
    """Inverse of elevation_from_logit (elevations are clipped just inside the range)."""
    lo, hi = (math.radians(d) for d in config.elevation_range_deg)
    frac = ((elevation - lo) / (hi - lo)).clamp(1e-4, 1.0 - 1e-4)
    return torch.log(frac) - torch.log1p(-frac)


def orbit_radius_for_fov(K_33: Tensor, height: int, width: int, scene_radius: float) -> float:
    """Camera distance at which a ball of `scene_radius` just fills the narrower field of view
    (pinhole K at height x width pixels, OpenCV pixel centres)."""
    K = torch.as_tensor(K_33, dtype=torch.float64)
    half_x = math.atan(max(float(K[0, 2]) + 0.5, width - 0.5 - float(K[0, 2])) / float(K[0, 0]))
    half_y = math.atan(max(float(K[1, 2]) + 0.5, height - 0.5 - float(K[1, 2])) / float(K[1, 1]))
    return scene_radius / math.sin(min(half_x, half_y))


class PoseRefinement(nn.Module):
    """Per-image learnable pose deltas on top of an orbit pose (zero at the start).

    delta_N4: (azimuth, elevation logit, roll, log radius); twist_N6: se(3) (rho, omega) applied
    in the camera frame, c2w <- c2w @ exp(twist). `base_N2` holds a fixed (azimuth, elevation)
    per image, set once the encoder's hypotheses have been resolved (re-assignment).
    """

    def __init__(self, num_images: int, orbit: OrbitConfig, radius: float) -> None:
        super().__init__()
        self.orbit = orbit
        self.radius = float(radius)
        self.delta_N4 = nn.Parameter(torch.zeros(num_images, 4))
        self.twist_N6 = nn.Parameter(torch.zeros(num_images, 6))
        self.register_buffer("base_N2", torch.zeros(num_images, 2))
        self.register_buffer("correction_N44", torch.eye(4).repeat(num_images, 1, 1))
        """Fixed left factor of each refined base pose: identity, until `set_poses` puts a view
        where no orbit pose is (a pose from outside, or one moved by the outlier search)."""

    def c2w(self, azimuth_BK: Tensor, elevation_BK: Tensor, index_B: Tensor) -> Tensor:
        """(B, K, 4, 4) camera-to-world (OpenCV axes) of hypotheses of images `index_B`,
        refinements applied (the same per-image deltas for every hypothesis of an image)."""
        b, k = azimuth_BK.shape
        delta_B4 = self.delta_N4[index_B]
        azimuth = azimuth_BK + delta_B4[:, None, 0]
        elevation = elevation_from_logit(elevation_logit(elevation_BK, self.orbit) + delta_B4[:, None, 1],
                                         self.orbit)
        roll = delta_B4[:, None, 2].expand(b, k)
        radius = self.radius * torch.exp(delta_B4[:, None, 3]).expand(b, k)
        c2w_M44 = cameras.orbit_c2w(azimuth.reshape(-1), elevation.reshape(-1), radius.reshape(-1),
                                    roll.reshape(-1))
        twist_M6 = self.twist_N6[index_B][:, None].expand(b, k, 6).reshape(-1, 6)
        return (c2w_M44 @ cameras.se3_exp(twist_M6)).reshape(b, k, 4, 4)

    def hypotheses_c2w(self, hyp: "PoseHypotheses", index_B: Tensor) -> Tensor:
        """(B, K, 4, 4) poses of the encoder's hypotheses of images `index_B`, refined."""
        return self.c2w(hyp.azimuth_BK, hyp.elevation_BK, index_B)

    def free_c2w(self, hyp: "PoseHypotheses") -> Tensor:
        """(B, K, 4, 4) poses of the hypotheses alone (no per-image refinement)."""
        b, k = hyp.azimuth_BK.shape
        return cameras.orbit_c2w(hyp.azimuth_BK.reshape(-1), hyp.elevation_BK.reshape(-1),
                                 self.radius).reshape(b, k, 4, 4)

    def set_base_to_top(self, hyp: "PoseHypotheses") -> Tensor:
        """Fix every image's base at its most likely hypothesis (refinements restart from zero);
        returns that hypothesis' probability."""
        azimuth_N, elevation_N, probability_N = hyp.top()
        self.set_base(azimuth_N, elevation_N)
        return probability_N

    def refinement_parameters(self) -> list[nn.Parameter]:
        return [self.delta_N4, self.twist_N6]

    def base_c2w(self, index_B: Tensor) -> Tensor:
        """(B, 4, 4) refined poses of images `index_B` around their fixed base orbit pose."""
        base_B2 = self.base_N2[index_B]
        return self.correction_N44[index_B] @ self.c2w(base_B2[:, :1], base_B2[:, 1:], index_B)[:, 0]

    @torch.no_grad()
    def set_poses(self, index_B: Tensor, c2w_B44: Tensor) -> None:
        """Make `base_c2w(index_B)` equal `c2w_B44` now; the refinements go on from there."""
        without_B44 = torch.linalg.inv(self.correction_N44[index_B]) @ self.base_c2w(index_B)
        self.correction_N44[index_B] = c2w_B44.to(without_B44) @ torch.linalg.inv(without_B44)

    @torch.no_grad()
    def start_at(self, c2w_N44: Tensor) -> None:
        """Every image starts at a given pose: the base at its camera centre's azimuth and
        elevation (in the elevation range), refinements zero, the rest in the correction."""
        centre_N3 = c2w_N44[:, :3, 3]
        azimuth_N = torch.atan2(centre_N3[:, 1], centre_N3[:, 0])
        lo, hi = (math.radians(d) for d in self.orbit.elevation_range_deg)
        elevation_N = torch.asin((centre_N3[:, 2] / centre_N3.norm(dim=1).clamp_min(1e-9)).clamp(-1, 1))
        self.set_base(azimuth_N, elevation_N.clamp(lo + 1e-3, hi - 1e-3))
        self.correction_N44.copy_(torch.eye(4).to(self.correction_N44).expand_as(self.correction_N44))
        self.set_poses(torch.arange(len(c2w_N44), device=c2w_N44.device), c2w_N44)

    def set_base(self, azimuth_N: Tensor, elevation_N: Tensor) -> None:
        """Fix the base pose of every image and restart the refinements from zero."""
        with torch.no_grad():
            self.base_N2.copy_(torch.stack([azimuth_N, elevation_N], dim=1))
            self.delta_N4.zero_()
            self.twist_N6.zero_()
