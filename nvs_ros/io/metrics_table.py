"""One table layout for pose metrics, used by the CLI and the benchmarks."""

from rich.table import Table

# (metrics key, column title, format)
POSE_COLUMNS = [
    ("registered", "registered", "{:.0f}"),
    ("RRA@5", "RRA@5", "{:.0%}"),
    ("RRA@15", "RRA@15", "{:.0%}"),
    ("RTA@15", "RTA@15", "{:.0%}"),
    ("mAA@30", "mAA(30)", "{:.3f}"),
    ("CCA@0.1", "CCA@0.1", "{:.0%}"),
    ("ATE", "ATE", "{:.4f}"),
    ("median_rotation_error_deg", "rot. err. [deg]", "{:.2f}"),
    ("verdict", "verdict", "{}"),
]


def format_value(value: object, fmt: str) -> str:
    if value is None:
        return "-"
    return fmt.format(value)


def metrics_table(rows: list[tuple[str, dict]], title: str = "Pose accuracy") -> Table:
    """A rich Table with one row per (label, metrics dict from core.metrics.evaluate_poses)."""
    table = Table(title=title)
    table.add_column("run")
    table.add_column("images", justify="right")
    for _, column_title, _ in POSE_COLUMNS:
        table.add_column(column_title, justify="right")
    for label, metrics in rows:
        cells = [format_value(metrics.get(key), fmt) for key, _, fmt in POSE_COLUMNS]
        table.add_row(label, str(metrics.get("num_images", "-")), *cells)
    return table
