"""Output files are written atomically: text, bytes and PNG views leave no temporary file and
read back as written."""

import cv2
import numpy as np

from nvs_ros.io.output_folder import write_atomic, write_png


def test_a_png_reads_back_as_the_rgb_image_written(tmp_path) -> None:
    rgb_HW3 = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    write_png(tmp_path / "views" / "a_real.png", rgb_HW3)
    bgr_HW3 = cv2.imread(str(tmp_path / "views" / "a_real.png"), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(bgr_HW3[..., ::-1], rgb_HW3)
    assert [p.name for p in (tmp_path / "views").iterdir()] == ["a_real.png"]


def test_text_and_bytes_replace_the_file_whole(tmp_path) -> None:
    write_atomic(tmp_path / "f", "text")
    write_atomic(tmp_path / "f", b"\x00bytes")
    assert (tmp_path / "f").read_bytes() == b"\x00bytes" and len(list(tmp_path.iterdir())) == 1
