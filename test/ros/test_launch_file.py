"""launch/nvs.launch.py names what exists: the executable, the params file, the remapped topics."""

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from nvs_ros.ros.params import NodeConfig

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "nvs.launch.py"


def keyword_values(call_name: str) -> list[dict[str, ast.expr]]:
    tree = ast.parse(LAUNCH_FILE.read_text())
    return [{kw.arg: kw.value for kw in node.keywords} for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == call_name]


def launched(executable: str) -> dict[str, ast.expr]:
    (node,) = [n for n in keyword_values("Node") if ast.literal_eval(n["executable"]) == executable]
    return node


def test_launch_file_starts_the_installed_executable_of_this_package():
    node = launched("nvs_node")
    assert ast.literal_eval(node["package"]) == "nvs_ros"
    setup_py = (ROOT / "setup.py").read_text()
    assert '"nvs_node = nvs_ros.ros.node:main"' in setup_py


def test_launch_file_remaps_the_topics_the_params_file_subscribes_to():
    params = yaml.safe_load((ROOT / "config" / "nvs.yaml").read_text())["nvs_node"]["ros__parameters"]
    node = launched("nvs_node")
    remapped = {ast.literal_eval(pair.elts[0]) for pair in node["remappings"].elts}
    assert remapped == {params["image_topic"], params["camera_info_topic"]}


def test_default_params_file_exists_and_sets_only_declared_parameters():
    source = LAUNCH_FILE.read_text()
    assert '"config", "nvs.yaml"' in source
    params = yaml.safe_load((ROOT / "config" / "nvs.yaml").read_text())["nvs_node"]["ros__parameters"]
    declared = set(NodeConfig.__dataclass_fields__)
    assert set(params) <= declared, set(params) - declared
    for name, value in params.items():
        assert isinstance(value, type(getattr(NodeConfig, name))), name


def test_launch_file_can_start_rviz_with_the_shipped_config():
    rviz = launched("rviz2")
    assert "condition" in rviz  # only with rviz:=true
    assert '"config", "nvs.rviz"' in LAUNCH_FILE.read_text() and (ROOT / "config" / "nvs.rviz").is_file()
    assert 'glob("config/*.rviz")' in (ROOT / "setup.py").read_text()  # installed to share/nvs_ros/config


def test_rviz_config_shows_what_nvs_node_publishes(rclpy_context):
    from nvs_ros.ros.node import NvsNode

    rviz = yaml.safe_load((ROOT / "config" / "nvs.rviz").read_text())["Visualization Manager"]
    displays = {d["Class"].split("/")[-1]: d for d in rviz["Displays"]}
    assert {"TF", "PointCloud2", "Path", "MarkerArray", "Image"} <= set(displays)
    assert rviz["Global Options"]["Fixed Frame"] == NodeConfig.map_frame
    assert displays["PointCloud2"]["Color Transformer"] == "RGB8"
    topics = {d["Topic"]["Value"] for d in rviz["Displays"] if "Topic" in d}
    node = NvsNode(context=rclpy_context)
    try:
        published = {publisher.topic_name for publisher in node.publishers}
    finally:
        node.destroy_node()
    assert topics <= published, topics - published
    # Latched topics must be subscribed transient local, or RViz started late shows nothing.
    for name in ("PointCloud2", "Path", "MarkerArray"):
        assert displays[name]["Topic"]["Durability Policy"] == "Transient Local"


def test_launch_description_builds_with_launch_ros():
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip("launch_ros is not installable from PyPI (no ROS install here); "
                    "on a robot: ros2 launch nvs_ros nvs.launch.py")
    spec = importlib.util.spec_from_file_location("nvs_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert any(type(entity).__name__ == "Node" for entity in description.entities)
