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


def test_launch_file_starts_the_installed_executable_of_this_package():
    (node,) = keyword_values("Node")
    assert ast.literal_eval(node["package"]) == "nvs_ros"
    assert ast.literal_eval(node["executable"]) == "nvs_node"
    setup_py = (ROOT / "setup.py").read_text()
    assert '"nvs_node = nvs_ros.ros.node:main"' in setup_py


def test_launch_file_remaps_the_topics_the_params_file_subscribes_to():
    params = yaml.safe_load((ROOT / "config" / "nvs.yaml").read_text())["nvs_node"]["ros__parameters"]
    (node,) = keyword_values("Node")
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


def test_launch_description_builds_with_launch_ros():
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip("launch_ros is not installable from PyPI (no ROS install here); "
                    "on a robot: ros2 launch nvs_ros nvs.launch.py")
    spec = importlib.util.spec_from_file_location("nvs_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert any(type(entity).__name__ == "Node" for entity in description.entities)
