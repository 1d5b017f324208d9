"""The one type every image source returns: images, intrinsics, optional masks and poses."""

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from nvs_ros.core.cameras import fit_size, resized_images, scale_intrinsics
from nvs_ros.core.errors import InputError

Capture = Literal["360", "forward", "unknown"]


def evenly_spaced_indices(count_all: int, count: int | None) -> np.ndarray:
    """Indices of `count` items spread evenly over `count_all` (all of them if None or more)."""
    if count is None or count >= count_all:
        return np.arange(count_all)
    if count < 1:
        raise InputError(f"need at least one view, got {count}")
    return np.linspace(0, count_all - 1, count).round().astype(int)


def _repeated(names: list[str]) -> set[str]:
    seen: set[str] = set()
    return {name for name in names if name in seen or seen.add(name)}


def resize_images(images_NHW3: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 RGB images resized to (height, width) by `cameras.resized_images` (antialiased bilinear)."""
    images = torch.from_numpy(np.ascontiguousarray(images_NHW3)).float()
    return resized_images(images, (height, width)).round().clamp(0, 255).byte().numpy()


def plain_border_level(images_NHW3: np.ndarray, tolerance: float = 0.1, share: float = 0.8) -> float | None:
    """Grey level in [0, 1] of a plain background around the images (an object on black or
    white cloth), read off their outermost pixels: their median, when at least `share` of them
    lie within `tolerance` of it in every channel; None for textured borders (a room). Measured
    at 64 px: temple 93% of the border within 0.1 of black, chair and the bundled object 100%
    of white; fern, DTU and the bundled room 20-32%."""
    border_M3 = np.concatenate([images_NHW3[:, 0], images_NHW3[:, -1], images_NHW3[:, :, 0], images_NHW3[:, :, -1]],
                               axis=1).reshape(-1, 3).astype(np.float32) / 255.0  # the border only: sets are large
    median_3 = np.median(border_M3, axis=0)
    plain = (np.abs(border_M3 - median_3) <= tolerance).all(axis=1).mean() >= share
    return float(median_3.mean()) if plain else None


@dataclass(frozen=True)
class ImageSet:
    """A set of views of one scene, all the same size.

    Poses, when present, are ground truth for evaluation only: an estimator receives
    `without_ground_truth()` and must never read `c2w_N44`.
    """

    names: list[str]
    """Image names, unique, in capture order."""
    images_NHW3: np.ndarray
    """RGB, uint8."""
    K_N33: np.ndarray
    """Pinhole intrinsics per image, float64, OpenCV pixel convention (see core.cameras)."""
    masks_NHW: np.ndarray | None = None
    """Foreground masks (bool), when the dataset has them."""
    c2w_N44: np.ndarray | None = None
    """Ground-truth camera-to-world, OpenCV camera axes (x right, y down, z forward)."""
    capture: Capture = "unknown"
    """How the views were taken: around the scene (360) or facing one way (forward)."""
    source: str = ""
    """Where the set came from (path or generator), for run records."""

    def __post_init__(self) -> None:
        n = len(self.names)
        if self.images_NHW3.ndim != 4 or self.images_NHW3.shape[-1] != 3:
            raise ValueError(f"images must be (N, H, W, 3), got {self.images_NHW3.shape}")
        if self.images_NHW3.dtype != np.uint8:
            raise ValueError(f"images must be uint8, got {self.images_NHW3.dtype}")
        if len(self.images_NHW3) != n or self.K_N33.shape != (n, 3, 3):
            raise ValueError(
                f"{n} names, {len(self.images_NHW3)} images, intrinsics {self.K_N33.shape}")
        if self.masks_NHW is not None and self.masks_NHW.shape != self.images_NHW3.shape[:3]:
            raise InputError(f"masks {self.masks_NHW.shape} != images {self.images_NHW3.shape[:3]}")
        if self.c2w_N44 is not None and self.c2w_N44.shape != (n, 4, 4):
            raise ValueError(f"poses must be ({n}, 4, 4), got {self.c2w_N44.shape}")
        if len(set(self.names)) != n:
            raise InputError(f"image names must be unique: {sorted(_repeated(self.names))[:3]} appear twice or more")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def height(self) -> int:
        return self.images_NHW3.shape[1]

    @property
    def width(self) -> int:
        return self.images_NHW3.shape[2]

    @property
    def has_ground_truth(self) -> bool:
        return self.c2w_N44 is not None

    def subset(self, indices: list[int] | np.ndarray) -> "ImageSet":
        """The views at `indices`, in that order."""
        idx = np.asarray(indices, dtype=int)
        return replace(
            self,
            names=[self.names[i] for i in idx],
            images_NHW3=self.images_NHW3[idx],
            K_N33=self.K_N33[idx],
            masks_NHW=None if self.masks_NHW is None else self.masks_NHW[idx],
            c2w_N44=None if self.c2w_N44 is None else self.c2w_N44[idx],
        )

    def evenly_spaced(self, count: int) -> "ImageSet":
        """`count` views spread evenly over the capture order (all of them if fewer)."""
        if count >= len(self):
            return self
        return self.subset(evenly_spaced_indices(len(self), count))

    def resized(self, max_side: int) -> "ImageSet":
        """Images downscaled (antialiased, `resize_images`) so the longer side is <= max_side, intrinsics kept right."""
        height, width = fit_size(self.height, self.width, max_side)
        if (height, width) == (self.height, self.width):
            return self
        images_NHW3 = resize_images(self.images_NHW3, height, width)
        masks_NHW = None
        if self.masks_NHW is not None:
            masks_N1HW = torch.from_numpy(self.masks_NHW[:, None].astype(np.float32))
            masks_NHW = F.interpolate(masks_N1HW, size=(height, width), mode="area")[:, 0].numpy() > 0.5
        K_N33 = scale_intrinsics(self.K_N33, width / self.width, height / self.height)
        return replace(self, images_NHW3=images_NHW3, K_N33=K_N33,
                       masks_NHW=masks_NHW)

    def without_ground_truth(self) -> "ImageSet":
        """The same views with the ground-truth poses removed: what an estimator may see."""
        return replace(self, c2w_N44=None)
