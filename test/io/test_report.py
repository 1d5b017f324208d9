import base64
import re

import cv2
import numpy as np

from nvs_ros.io.report import ReportContent, write_report


def test_report_embeds_views_cameras_curves_and_metrics(tmp_path):
    real = np.zeros((8, 8, 3), np.uint8)
    real[..., 0] = 200
    rendered = np.full((8, 8, 3), 30, np.uint8)
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    gt = np.c_[np.cos(angles), np.sin(angles), np.zeros(6)]
    content = ReportContent(
        title="run <1>", metrics={"registered": 6, "RRA@15": 0.5, "ATE": None},
        camera_sets={"ground truth": gt, "estimate": gt + 0.1},
        view_pairs=[("view_000.png", real, rendered, 21.3)],
        curves={"loss": [(0, 1.0), (10, 0.1), (20, 0.01)]}, notes=["a note"])
    write_report(tmp_path / "report.html", content)
    page = (tmp_path / "report.html").read_text()
    assert "run &lt;1&gt;" in page and "a note" in page
    assert page.count("<circle") == 24  # 2 sets x 6 cameras x (top + side view)
    assert "view_000.png (21.3 dB)" in page
    assert "<td>50%</td>" in page and "<td>-</td>" in page  # RRA@15 and the missing ATE
    assert "last 0.01" in page and "polyline" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(images[0]), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decoded[..., ::-1], real)  # RGB survives the BGR round trip


def test_unregistered_cameras_are_left_out_of_the_plot(tmp_path):
    estimate = np.array([[0.0, 0, 0], [np.nan, np.nan, np.nan], [1.0, 1, 0]])
    write_report(tmp_path / "r.html", ReportContent(title="t", camera_sets={"estimate": estimate}))
    assert (tmp_path / "r.html").read_text().count("<circle") == 4  # 2 cameras x 2 plots
