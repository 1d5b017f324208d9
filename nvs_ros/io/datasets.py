"""One entry point for every image source: `load_image_set(source)`.

A source is a folder, whose format is detected from its files, or the bundled synthetic
scene `bundled[:variant[:path]]`. Every loader picks the views and downscales at load time,
so asking for 8 views at 200 px of a 100-view 800 px set reads 8 files and keeps them small.
"""

import re
from collections.abc import Callable
from pathlib import Path

from nvs_ros.core.image_set import ImageSet
from nvs_ros.io.bag_files import is_bag
from nvs_ros.io.bags import read_bag
from nvs_ros.io.colmap_model import is_colmap_folder, load_colmap_folder
from nvs_ros.io.dtu import is_dtu, load_dtu
from nvs_ros.io.errors import DatasetError
from nvs_ros.io.image_files import list_images
from nvs_ros.io.image_folder import load_image_folder
from nvs_ros.io.llff import is_llff, load_llff
from nvs_ros.io.middlebury import find_par_file, load_middlebury
from nvs_ros.io.transforms_json import is_nerf_synthetic, is_transforms_folder, load_transforms

BUNDLED = "bundled"
BUNDLED_VARIANTS = ("room", "object")
BUNDLED_PATHS = ("ring", "sphere", "arc")
BUNDLED_DEFAULT_VIEWS = 24
BUNDLED_DEFAULT_SIZE = 128

FORMATS: dict[str, str] = {
    "nerf_synthetic": "transforms_{train,val,test}.json + RGBA PNGs (NeRF Blender scenes)",
    "transforms_json": "transforms.json + images (nerfstudio, instant-ngp; pinhole cameras)",
    "llff": "poses_bounds.npy + images_<k>/ or images/ (LLFF forward-facing scenes)",
    "dtu": "cameras_sphere.npz + image_half/ or image/, mask_half/ (DTU, IDR/NeuS layout)",
    "middlebury": "<set>_par.txt + PNGs (Middlebury multi-view stereo)",
    "colmap": "a COLMAP model (sparse/0/, text or binary; pinhole cameras) + images/: intrinsics, no ground truth",
    "image_folder": "png/jpg/jpeg files, optional camera.yaml or intrinsics.txt (no ground truth)",
    "ros_bag": "ROS bag: rosbag2 folder (metadata.yaml, or .mcap/.db3 files without it), one .mcap/.db3 "
               "file or a ROS 1 .bag, damaged ones as far as intact (Image or "
               "CompressedImage + CameraInfo; ground truth: TFMessage on /ground_truth/tf)",
}


def describe_formats() -> str:
    """The supported sources in one line, for error messages (FORMATS says more of each)."""
    return ("a NeRF-synthetic (transforms_*.json), nerfstudio (transforms.json), COLMAP (sparse/0), "
            "LLFF (poses_bounds.npy), DTU (cameras_sphere.npz) or "
            "Middlebury (*_par.txt) folder, a folder of png/jpg images, a ROS bag (metadata.yaml, .mcap, "
            f".db3, .bag) or {BUNDLED}[:{'|'.join(BUNDLED_VARIANTS)}[:{'|'.join(BUNDLED_PATHS)}]]")


def detect_format(folder: str | Path) -> str:
    """The key in FORMATS of the dataset in `folder`; a DatasetError if there is none."""
    folder = Path(folder)
    if is_bag(folder):
        return "ros_bag"
    if not folder.is_dir():
        raise DatasetError(f"{folder} is neither a folder nor a bag; give {describe_formats()}")
    if is_nerf_synthetic(folder):
        return "nerf_synthetic"
    if is_transforms_folder(folder):
        return "transforms_json"
    if is_llff(folder):
        return "llff"
    if is_dtu(folder):
        return "dtu"
    if find_par_file(folder) is not None:
        return "middlebury"
    if is_colmap_folder(folder):
        return "colmap"
    if list_images(folder):
        return "image_folder"
    raise DatasetError(f"{folder} holds no dataset and no images; give {describe_formats()}")


def load_image_set(source: str | Path, max_side: int | None = None, views: int | None = None,
                   split: str = "train") -> ImageSet:
    """Load `source` (folder or `bundled[:variant[:path]]`) as an ImageSet.

    max_side: downscale so the longer side is at most this many pixels (None: as stored;
        for the bundled scene, the render size, default 128).
    views: keep this many views, evenly spaced over the capture order (None: all; for the
        bundled scene, the number rendered, default 24).
    split: "train", "val" or "test" for NeRF synthetic scenes; other formats have one split,
        "train", and refuse others rather than hand back training views as test views.
    """
    if _is_bundled(source):
        return _load_bundled(source, max_side, views)
    folder = Path(source)
    kind = detect_format(folder)
    if kind in ("nerf_synthetic", "transforms_json"):
        return load_transforms(folder, split=split, max_side=max_side, views=views)
    if split != "train":
        raise DatasetError(f"{folder} ({kind}) has no {split!r} split; only 'train' (all views)")
    if kind == "ros_bag":  # topics auto-detected; the CLI's bag options call read_bag directly
        return read_bag(folder, max_side=max_side, max_frames=views).image_set
    loaders: dict[str, Callable[..., ImageSet]] = {
        "llff": load_llff, "dtu": load_dtu, "middlebury": load_middlebury,
        "colmap": load_colmap_folder, "image_folder": load_image_folder}
    return loaders[kind](folder, max_side=max_side, views=views)


FEATURE_MAX_SIDE = 640
"""Longer side at which `--init features` chains the images (loaded a second time for it: the
field trains at a fraction of this, and features need the resolution). Measured on
middlebury_temple_ring, 16 views: at 640 px all 16 chained, RRA@5 100% (median rotation error
0.5 degrees); at 320 px 12 of 16; at 128 px (its training size) none, nor does pycolmap there."""


def load_for_features(source: str | Path, image_set: ImageSet, views: int | None = None,
                      split: str = "train") -> ImageSet:
    """`image_set`'s views (loaded from `source` with `views` and `split`) at up to
    FEATURE_MAX_SIDE, as stored where that is smaller. The bundled scene has no stored resolution
    (it is rendered on demand, 24 views at 640 px in ~2 minutes): it is chained as it was asked for."""
    if _is_bundled(source):
        return image_set
    larger = load_image_set(source, max_side=max(FEATURE_MAX_SIDE, image_set.width, image_set.height),
                            views=views, split=split)
    if larger.names != image_set.names:
        raise DatasetError(f"{source} gave other views at {FEATURE_MAX_SIDE} px than at "
                           f"{image_set.width}x{image_set.height}: {larger.names[:3]}... vs {image_set.names[:3]}...")
    return larger


def reload_image_set(source: str, views: int | None = None, split: str = "train") -> ImageSet:
    """The set recorded as `source` (an ImageSet's `source`, run.json's "dataset") loaded again,
    `views` evenly spaced, at the size it is stored at: the bundled scene at the size it was
    rendered at (its source names it), anything else as stored, whatever size it was run at."""
    bundled = re.fullmatch(r"bundled:(\w+)/(\w+)/views=(\d+)/size=(\d+)/seed=(\d+)", source)
    if bundled is None:
        return load_image_set(source, views=views, split=split)
    from nvs_ros.io.bundled_scene import render_bundled_scene
    variant, path, num_views, size, seed = bundled.groups()
    return render_bundled_scene(variant=variant, path=path, num_views=int(num_views), size=int(size), seed=int(seed))


def _is_bundled(source: str | Path) -> bool:
    return isinstance(source, str) and (source == BUNDLED or source.startswith(BUNDLED + ":"))


def _load_bundled(source: str, max_side: int | None, views: int | None) -> ImageSet:
    parts = source.split(":")
    if len(parts) > 3:
        raise DatasetError(f"bundled source {source!r}: use bundled[:variant[:path]]")
    variant = parts[1] if len(parts) > 1 and parts[1] else BUNDLED_VARIANTS[0]
    path = parts[2] if len(parts) > 2 and parts[2] else BUNDLED_PATHS[0]
    if variant not in BUNDLED_VARIANTS or path not in BUNDLED_PATHS:
        raise DatasetError(f"bundled source {source!r}: variant must be one of {BUNDLED_VARIANTS}, "
                           f"path one of {BUNDLED_PATHS}")
    if views is not None and views < 1:
        raise DatasetError(f"need at least one view, got views={views}")
    # Imported here: rendering pulls in the field code, which plain dataset loading never needs.
    from nvs_ros.io.bundled_scene import render_bundled_scene
    return render_bundled_scene(variant=variant, path=path,
                                num_views=views or BUNDLED_DEFAULT_VIEWS,
                                size=max_side or BUNDLED_DEFAULT_SIZE)
