"""A whole registration with the encoder pass on ONNX Runtime gives torch's verdicts and poses
(within 0.1 degree), on the tiny trained ring scene; `nvs-ros export` writes the ONNX files and
their manifest, and `nvs-ros register --backend` runs on the chosen backend."""

import dataclasses
import hashlib
import json

import numpy as np
import onnx
import pytest
from ring_scene import HELD_OUT, angle_between, training_image

from nvs_ros import cli
from nvs_ros.app.frame_registration import use_backend
from nvs_ros.core.scene import Scene
from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.output_folder import write_png
from nvs_ros.io.scene_checkpoint import save_scene
from nvs_ros.runtime.backend import RuntimeConfig

pytest.importorskip("onnxruntime")


def test_registration_through_onnxruntime_matches_torch(ring_scene: Scene, ring_views) -> None:
    on_ort = dataclasses.replace(ring_scene)  # the shared fixture keeps torch
    assert use_backend(on_ort, RuntimeConfig(backend="onnxruntime", threads=1)) == \
        "onnxruntime (CPUExecutionProvider)"
    foreign = load_image_set("bundled", max_side=32, views=2)  # the textured room: rejected
    frames = [(np.stack([training_image(ring_scene, i) for i in (2, 9)]), ring_scene.K_N33[[2, 9]]),
              (ring_views.images_NHW3[HELD_OUT], ring_views.K_N33[HELD_OUT]),
              (foreign.images_NHW3, foreign.K_N33)]
    for images, K in frames:
        want, got = ring_scene.register(images, K), on_ort.register(images, K)
        assert got.accepted_B.tolist() == want.accepted_B.tolist()
        assert (angle_between(got.c2w_B44, want.c2w_B44) < 0.1).all()
        np.testing.assert_allclose(got.c2w_B44[:, :3, 3].numpy(), want.c2w_B44[:, :3, 3].numpy(), atol=1e-3)
        np.testing.assert_allclose(got.confidence_B.numpy(), want.confidence_B.numpy(), atol=1e-3)
    assert want.accepted_B.sum() == 0 and got.accepted_B.sum() == 0  # the foreign frames, last


def test_export_writes_onnx_files_and_their_manifest(ring_scene: Scene, tmp_path) -> None:
    pytest.importorskip("onnxscript")
    scene_dir = tmp_path / "scene"
    save_scene(scene_dir, ring_scene)
    assert cli.main(["export", str(scene_dir), "--format", "onnx"]) == cli.EXIT_OK
    out = scene_dir / "export" / "onnx"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == hashlib.sha256((scene_dir / "scene.pt").read_bytes()).hexdigest()
    encoder, field = manifest["files"]
    assert (encoder["file"], encoder["opset"], field["file"], field["opset"]) == ("encoder.onnx", 17, "field.onnx", 20)
    assert encoder["inputs"] == [{"name": "images", "shape": [-1, 3, 32, 32], "dtype": "float32"}]
    assert [o["name"] for o in encoder["outputs"]] == ["azimuth_BK", "elevation_BK", "logits_BK"]
    assert encoder["outputs"][2]["shape"] == [-1, 8] and encoder["hypotheses"] == "PoseHypotheses"
    for item in (encoder, field):
        model = onnx.load(out / item["file"])
        onnx.checker.check_model(model)
        assert [i.name for i in model.graph.input] == [t["name"] for t in item["inputs"]]
        assert hashlib.sha256((out / item["file"]).read_bytes()).hexdigest() == item["sha256"]


def test_register_command_runs_on_the_chosen_backend(ring_scene: Scene, ring_views, tmp_path, capsys) -> None:
    scene_dir = tmp_path / "scene"
    save_scene(scene_dir, ring_scene)
    image = tmp_path / "view4.png"
    write_png(image, ring_views.images_NHW3[HELD_OUT[0]])
    out = tmp_path / "poses.json"
    code = cli.main(["register", str(scene_dir), str(image), "--backend", "onnxruntime", "--threads", "1",
                     "--out", str(out)])
    assert code in (cli.EXIT_OK, cli.EXIT_REJECTED)
    assert "encoder pass on onnxruntime (CPUExecutionProvider)" in capsys.readouterr().out
    assert json.loads(out.read_text())["frames"][0]["name"] == "view4.png"
