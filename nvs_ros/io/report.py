"""report.html: one self-contained page per run (inline SVG plots, embedded PNG views).

It shows the estimated cameras next to the ground truth after alignment (top and side
views), real and rendered held-out views with their PSNR, the training curves, and the
metrics table. No plotting library is needed: plots are small SVG drawings.
"""

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from nvs_ros.io.metrics_table import POSE_COLUMNS, format_value
from nvs_ros.io.output_folder import write_atomic

_PLOT_SIZE = 320
_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


@dataclass
class ReportContent:
    title: str
    metrics: dict | None = None
    camera_sets: dict[str, np.ndarray] = field(default_factory=dict)
    """Label -> camera centres (N, 3) in one frame (align estimates to ground truth first)."""
    view_pairs: list[tuple[str, np.ndarray, np.ndarray, float | None]] = field(default_factory=list)
    """(name, real RGB uint8, rendered RGB uint8, PSNR dB or None)."""
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """Curve name -> (x, y) points, e.g. loss over training step."""
    notes: list[str] = field(default_factory=list)
    self_check: list[str] = field(default_factory=list)
    """The run's verdict on its own poses (core.self_check), first line first."""


def _png_data_uri(rgb_HW3: np.ndarray) -> str:
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb_HW3), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("cannot encode image as PNG")
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode()


def _scatter_svg(camera_sets: dict[str, np.ndarray], axes: tuple[int, int], title: str) -> str:
    """Camera centres projected on two world axes, all sets on one shared scale."""
    finite = [c[np.isfinite(c).all(axis=1)][:, axes] for c in camera_sets.values()]
    stacked = np.concatenate([f for f in finite if len(f)] or [np.zeros((1, 2))])
    low, high = stacked.min(axis=0), stacked.max(axis=0)
    span = float(max(high - low)) or 1.0
    margin = 16

    def to_px(points_P2: np.ndarray) -> np.ndarray:
        scaled = (points_P2 - (low + high) / 2) / span * (_PLOT_SIZE - 2 * margin)
        return np.c_[_PLOT_SIZE / 2 + scaled[:, 0], _PLOT_SIZE / 2 - scaled[:, 1]]

    marks = []
    for (label, _), points_P2, color in zip(camera_sets.items(), finite, _COLORS):
        for x, y in to_px(points_P2):
            marks.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}" fill-opacity="0.7"/>')
    legend = "".join(f'<text x="6" y="{16 * (i + 1)}" fill="{c}" font-size="12">{html.escape(label)}</text>'
                     for i, (label, c) in enumerate(zip(camera_sets, _COLORS)))
    names = "xyz"
    return (f'<figure><svg width="{_PLOT_SIZE}" height="{_PLOT_SIZE}" style="border:1px solid #ccc">'
            f'{"".join(marks)}{legend}</svg><figcaption>{title} ({names[axes[0]]} right, '
            f'{names[axes[1]]} up)</figcaption></figure>')


def _curve_svg(name: str, points: list[tuple[float, float]]) -> str:
    xy = np.array([p for p in points if np.isfinite(p).all()], dtype=float).reshape(-1, 2)
    if len(xy) < 2:
        return ""
    y = np.log10(np.maximum(xy[:, 1], 1e-12)) if (xy[:, 1] > 0).all() else xy[:, 1]
    x_px = 40 + (xy[:, 0] - xy[0, 0]) / max(xy[-1, 0] - xy[0, 0], 1e-12) * (_PLOT_SIZE * 2 - 50)
    y_px = 10 + (y.max() - y) / max(y.max() - y.min(), 1e-12) * (_PLOT_SIZE - 40)
    path = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x_px, y_px))
    scale = "log10" if (xy[:, 1] > 0).all() else "linear"
    return (f'<figure><svg width="{_PLOT_SIZE * 2}" height="{_PLOT_SIZE}" style="border:1px solid #ccc">'
            f'<polyline points="{path}" fill="none" stroke="#1f77b4"/>'
            f'<text x="40" y="{_PLOT_SIZE - 8}" font-size="12">{xy[0, 0]:g} .. {xy[-1, 0]:g}</text>'
            f'<text x="4" y="14" font-size="12">{y.max():.3g}</text>'
            f'<text x="4" y="{_PLOT_SIZE - 24}" font-size="12">{y.min():.3g}</text></svg>'
            f'<figcaption>{html.escape(name)} ({scale} y; last {xy[-1, 1]:.4g})</figcaption></figure>')


def _metrics_html(metrics: dict) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in POSE_COLUMNS)
    cells = "".join(f"<td>{format_value(metrics.get(key), fmt)}</td>" for key, _, fmt in POSE_COLUMNS)
    return f"<table><tr>{head}</tr><tr>{cells}</tr></table>"


def render_report(content: ReportContent) -> str:
    parts = [f"<h1>{html.escape(content.title)}</h1>"]
    parts += [f"<p>{html.escape(note)}</p>" for note in content.notes]
    if content.self_check:
        parts += ["<h2>Self-check (the run's own evidence, no ground truth)</h2>",
                  f"<p><b>{html.escape(content.self_check[0])}</b></p>"]
        parts += [f"<p>{html.escape(line)}</p>" for line in content.self_check[1:]]
    if content.metrics:
        parts += ["<h2>Pose accuracy</h2>", _metrics_html(content.metrics)]
    if content.camera_sets:
        parts += ["<h2>Cameras</h2><div class=row>", _scatter_svg(content.camera_sets, (0, 1), "top view"),
                  _scatter_svg(content.camera_sets, (0, 2), "side view"), "</div>"]
    if content.view_pairs:
        parts.append("<h2>Views: real | rendered</h2><div class=row>")
        for name, real, rendered, psnr in content.view_pairs:
            caption = html.escape(name) + ("" if psnr is None else f" ({psnr:.1f} dB)")
            parts.append(f'<figure><img src="{_png_data_uri(real)}"><img src="{_png_data_uri(rendered)}">'
                         f"<figcaption>{caption}</figcaption></figure>")
        parts.append("</div>")
    if content.curves:
        parts += ["<h2>Training</h2><div class=row>"] + [_curve_svg(n, p) for n, p in content.curves.items()]
        parts.append("</div>")
    style = ("body{font-family:sans-serif;margin:2em} .row{display:flex;flex-wrap:wrap;gap:1em} "
             "img{image-rendering:pixelated;width:192px} td,th{padding:2px 8px;text-align:right}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(content.title)}"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def write_report(path: Path, content: ReportContent) -> None:
    write_atomic(Path(path), render_report(content))
