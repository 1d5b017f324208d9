"""nvs_ros.ros.params: the documented parameter table is the descriptors' own."""

from dataclasses import fields
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
from nvs_ros.ros.params import DOC_BEGIN, DOC_END, NodeConfig, parameter_table, with_parameter_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_docs_hold_the_table_the_descriptors_give():
    document = (ROOT / "docs" / "ros2.md").read_text()
    block = document.split(DOC_BEGIN, 1)[1].split(DOC_END, 1)[0].strip()
    assert block == parameter_table(), "docs/ros2.md is stale: run python -m nvs_ros.ros.params docs/ros2.md"


def test_every_parameter_is_a_row_with_its_default_and_constraint():
    rows = parameter_table().splitlines()[2:]
    assert [row.split("`")[1] for row in rows] == [spec.name for spec in fields(NodeConfig)]
    by_name = {row.split("`")[1]: row for row in rows}
    assert "| `min_keyframes` | `8` | 2 .. 10000 |" in by_name["min_keyframes"]
    assert "| `reliable_qos` | `false` |" in by_name["reliable_qos"]
    assert '| `camera_frame` | `""` |' in by_name["camera_frame"]
    assert "raw \\| compressed" in by_name["image_transport"]


def test_rewriting_replaces_only_the_block():
    document = f"before\n{DOC_BEGIN}\nold table\n{DOC_END}\nafter\n"
    rewritten = with_parameter_table(document)
    assert rewritten.startswith("before\n") and rewritten.endswith(f"{DOC_END}\nafter\n")
    assert "old table" not in rewritten and parameter_table() in rewritten
    with pytest.raises(ValueError, match="no"):
        with_parameter_table("no block here")
