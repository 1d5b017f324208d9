"""User mistakes end in one ERROR line and exit code 1, never a traceback: the real command,
run as a user runs it, on each mistake."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from nvs_ros.cli import EXIT_ERROR
from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.image_folder import write_image_folder
from nvs_ros.io.output_folder import write_output_folder

ROOT = Path(__file__).resolve().parents[2]
# this checkout's package, whatever the interpreter's editable install points at
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def nvs_ros(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nvs_ros.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=ENV, timeout=300)


def _poses_file(folder: Path, views, names: list[str]) -> None:
    write_output_folder(folder, CameraEstimates(
        names=names, c2w_N44=views.c2w_N44, registered_N=np.ones(len(views), dtype=bool), K_N33=views.K_N33,
        sizes_N2=np.tile([views.width, views.height], (len(views), 1))), {"source": "test"})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Eight good views, and one folder or file per mistake, side by side."""
    root = tmp_path_factory.mktemp("mistakes")
    views = load_image_set("bundled:object", max_side=32, views=8)
    write_image_folder(root / "eight", views)
    write_image_folder(root / "one", views.subset([0]))
    write_image_folder(root / "mixed", views.subset([0, 1, 2]))
    cv2.imwrite(str(root / "mixed" / "view_009.png"), np.zeros((20, 40, 3), np.uint8))
    (root / "empty").mkdir()
    (root / "malformed.json").write_text("{not json")
    _poses_file(root / "places_one", views.subset([1]), ["view_001.png"])
    _poses_file(root / "places_none", views.subset([1, 2]), ["other_1.png", "other_2.png"])
    return root


MISTAKES = {
    "an empty folder": (["reconstruct", "empty"], "empty holds no dataset and no images; give "),
    "a missing input": (["reconstruct", "missing"], "missing is neither a folder nor a bag; give "),
    "too few images": (["reconstruct", "one"], "one holds 1 image(s); a reconstruction needs at least 2"),
    "images of different sizes": (["reconstruct", "mixed"], "is 40x20 but"),
    "a poses file placing one training image": (
        ["reconstruct", "eight", "--init", "places_one"], "the initial poses place 1 of the 7 training images"),
    "a poses file naming none of the images": (
        ["reconstruct", "eight", "--init", "places_none/poses.json"], "places none of the 8 images"),
    "a malformed poses file": (["reconstruct", "eight", "--init", "malformed.json"], "malformed.json is malformed"),
    "a missing poses file": (["reconstruct", "eight", "--init", "nothere"], "nothere is not an nvs_ros output folder"),
    "a missing poses.json": (["reconstruct", "eight", "--init", "nothere.json"], "nothere.json: no such poses file"),
    "views=0": (["reconstruct", "eight", "--views", "0"], "need at least one view"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_mistake_is_one_error_line_and_exit_code_1(inputs, mistake, tmp_path) -> None:
    args, message = MISTAKES[mistake]
    result = nvs_ros(*args, "--out", str(tmp_path / "out"), "--iters", "5", "--threads", "1", cwd=inputs)
    assert result.returncode == EXIT_ERROR, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert result.stderr.splitlines()[-1] == errors[0]  # the message ends there: one line
    assert not (tmp_path / "out").exists()  # nothing written before the mistake was found


def test_help_documents_the_exit_codes(inputs) -> None:
    result = nvs_ros("--help", cwd=inputs)
    assert result.returncode == 0
    epilog = result.stdout[result.stdout.index("exit codes:"):]
    for code in ("0", "1", "2", "3", "130"):
        assert f"\n  {code} " in epilog, code
