"""`--mode auto`: the loader's capture hint first, else image overlap decides forward vs 360."""

import dataclasses
import subprocess
import sys

from nvs_ros.io.capture_type import choose_mode, looks_forward
from nvs_ros.io.datasets import load_image_set

NVS_ROS = [sys.executable, "-m", "nvs_ros.cli"]


def _unhinted(source: str, views: int):
    return dataclasses.replace(load_image_set(source, max_side=64, views=views), capture="unknown")


def test_auto_picks_forward_for_a_forward_capture_without_a_hint() -> None:
    # the bundled arc: near-parallel views of a room, like an LLFF capture
    assert looks_forward(_unhinted("bundled:room:arc", 8))


def test_auto_picks_360_for_a_ring_without_a_hint() -> None:
    assert not looks_forward(_unhinted("bundled:room:ring", 8))


def test_the_hint_comes_first_and_an_explicit_mode_wins() -> None:
    arc = load_image_set("bundled:room:arc", max_side=16, views=3)
    assert arc.capture == "forward" and choose_mode(arc) == "forward"
    assert choose_mode(arc, "360") == "360"
    ring = load_image_set("bundled:room:ring", max_side=16, views=3)
    assert choose_mode(ring) == "360" and choose_mode(ring, "forward") == "forward"


def test_reconstruct_accepts_the_mode_flag() -> None:
    result = subprocess.run([*NVS_ROS, "reconstruct", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--mode {360,forward,auto}" in result.stdout
