"""The repository is a ROS 2 ament_python package with the layers DESIGN.md describes."""

import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_core_imports_neither_ros_nor_file_formats():
    core_modules = sorted(p.stem for p in (ROOT / "nvs_ros" / "core").glob("*.py") if p.stem != "__init__")
    assert {"trainer", "field", "keyframes", "metrics"} <= set(core_modules)
    modules = imported_modules_after("import " + ", ".join(f"nvs_ros.core.{m}" for m in core_modules))
    forbidden = {"rclpy", "cv2", "rosbags", "open3d", "pycolmap", "onnxruntime", "yaml"}
    assert not forbidden & modules, forbidden & modules


def test_package_xml_declares_the_runtime_dependencies():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "nvs_ros"
    assert root.find("export/build_type").text == "ament_python"
    depends = {e.text for e in root if e.tag in {"depend", "exec_depend"}}
    for needed in ["rclpy", "sensor_msgs", "geometry_msgs", "tf2_msgs", "visualization_msgs",
                   "nav_msgs", "std_srvs", "diagnostic_msgs", "python3-torch"]:
        assert needed in depends, needed


@pytest.mark.slow
def test_wheel_installs_ament_index_launch_config_and_executables(tmp_path):
    # colcon's ament_python build installs what setup.py declares; a wheel shows the same list.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("nvs_ros-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    data = [n.split(".data/data/", 1)[1] for n in names if ".data/data/" in n]
    assert "share/ament_index/resource_index/packages/nvs_ros" in data
    assert "share/nvs_ros/package.xml" in data
    assert any(n.startswith("share/nvs_ros/launch/") and n.endswith(".launch.py") for n in data)
    assert any(n.startswith("share/nvs_ros/config/") and n.endswith(".yaml") for n in data)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "nvs_node = nvs_ros.ros.node:main" in text
    assert "nvs-ros = nvs_ros.cli:main" in text
    assert "nvs_ros/core/metrics.py" in names and "nvs_ros/ros/node.py" in names
