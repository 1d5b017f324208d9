"""Middlebury multi-view stereo sets (temple, dino): `<set>_par.txt` + PNG images.

`<set>_par.txt`: the first line is the number of images; then one line per image,
`name k11 k12 k13 k21 k22 k23 k31 k32 k33 r11 r12 r13 r21 r22 r23 r31 r32 r33 t1 t2 t3`,
with x = K (R X + t): world-to-camera, OpenCV axes, metres, pixels of the stored images.
"""

from pathlib import Path

import numpy as np

from nvs_ros.core.conventions import w2c_to_c2w
from nvs_ros.core.image_set import ImageSet
from nvs_ros.io.errors import DatasetError
from nvs_ros.io.image_files import evenly_spaced_indices, read_images, rescale_intrinsics


def find_par_file(folder: Path) -> Path | None:
    """The folder's `*_par.txt`, None if it has none; a DatasetError if it has several."""
    found = sorted(Path(folder).glob("*_par.txt"))
    if len(found) > 1:
        raise DatasetError(f"{folder} holds several camera files {[p.name for p in found]}; "
                           "load one with load_middlebury(folder, par_file=...)")
    return found[0] if found else None


def load_middlebury(folder: str | Path, max_side: int | None = None, views: int | None = None,
                    par_file: str | Path | None = None) -> ImageSet:
    """Load the views listed in the `_par.txt` file, in its order (or `views` evenly spaced).

    The calibration is for the images as stored; K is scaled if `max_side` shrinks them.
    capture is "360": the ring sets go around the object.
    """
    folder = Path(folder)
    par_path = Path(par_file) if par_file is not None else find_par_file(folder)
    if par_path is None:
        raise DatasetError(f"{folder} has no *_par.txt camera file")
    names, K_N33, R_N33, t_N3 = read_par_file(par_path)
    keep = evenly_spaced_indices(len(names), views)
    images_NHW3, _, stored_size = read_images([par_path.parent / names[i] for i in keep], max_side)
    return ImageSet(
        names=[names[i] for i in keep], images_NHW3=images_NHW3,
        K_N33=rescale_intrinsics(K_N33[keep], stored_size, images_NHW3.shape[1:3]),
        c2w_N44=w2c_to_c2w(R_N33[keep], t_N3[keep]), capture="360", source=str(folder))


def read_par_file(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(names, K_N33, R_N33 world-to-camera, t_N3) from a Middlebury `_par.txt` file."""
    try:
        lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
        count = int(lines[0][0])
        rows = lines[1:]
        if len(rows) != count or any(len(row) != 22 for row in rows):
            raise ValueError(f"expected {count} lines of a name and 21 numbers")
        values_N21 = np.array([row[1:] for row in rows], dtype=np.float64)
    except (OSError, IndexError, ValueError) as err:
        raise DatasetError(f"cannot read Middlebury camera file {path}: {err}") from err
    names = [row[0] for row in rows]
    return (names, values_N21[:, :9].reshape(-1, 3, 3), values_N21[:, 9:18].reshape(-1, 3, 3),
            values_N21[:, 18:21])
