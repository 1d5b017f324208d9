"""Every backend runs the same graphs with the same results: ONNX Runtime against torch for the
encoder pass (360 and forward-facing engines, batch 1 and 8) and the field's point query; `auto`
picks, logs and falls back; TensorRT where it is installed (skips here with the reason)."""

import dataclasses
import logging

import numpy as np
import pytest
import torch
from tiny_engine import TINY

from nvs_ros.core.field import FieldConfig
from nvs_ros.core.forward_poses import ForwardConfig, build_forward_engine
from nvs_ros.core.training_run import build_engine
from nvs_ros.runtime import _optional
from nvs_ros.runtime.backend import BackendUnavailable, RuntimeConfig
from nvs_ros.runtime.encoder_pass import encoder_pass
from nvs_ros.runtime.graph import export_onnx, field_graph
from nvs_ros.runtime.selection import open_backend


def _trained_looking(engine):
    """An engine whose weights are random enough that every output differs per image."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in engine.encoder.head.parameters():
            p.normal_(std=0.3)
        engine.field.grid.normal_(std=2.0)
    return engine.eval()


@pytest.fixture(scope="module")
def orbit_engine():
    return _trained_looking(build_engine(TINY, 8, 2.0))


@pytest.fixture(scope="module")
def forward_engine():
    engine = build_forward_engine(4, torch.tensor([[30.0, 0, 16], [0, 30.0, 16], [0, 0, 1]]), 32, 32,
                                  ForwardConfig(), TINY.encoder, FieldConfig(resolution=12), TINY.diffusion)
    return _trained_looking(engine)


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("engine_name", ["orbit_engine", "forward_engine"])
def test_onnxruntime_encoder_pass_matches_torch(engine_name, batch, request):
    pytest.importorskip("onnxruntime")
    engine = request.getfixturevalue(engine_name)
    size = engine.encoder.config.input_size
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
    on_ort = encoder_pass(engine, RuntimeConfig(backend="onnxruntime", threads=1))
    assert on_ort.backend.name == "onnxruntime"
    got, want = on_ort(images), engine.predict(images)
    assert type(got) is type(want)
    for f in dataclasses.fields(want):
        np.testing.assert_allclose(getattr(got, f.name).numpy(), getattr(want, f.name).numpy(), atol=2e-5,
                                   err_msg=f.name)
    assert want.logits_BK.abs().max() > 0.1  # not a zero head: the comparison means something


def test_onnxruntime_field_query_matches_torch(orbit_engine):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    graph = field_graph(orbit_engine)
    backend = open_backend(graph, RuntimeConfig(backend="onnxruntime", threads=1))
    points_P3 = torch.from_numpy(np.random.default_rng(0).uniform(-2.0, 2.0, (333, 3)).astype(np.float32))
    got = backend.infer({"points": points_P3})
    with torch.no_grad():
        density_P, rgb_P3 = orbit_engine.field.query(points_P3)
    np.testing.assert_allclose(got["density"].numpy(), density_P.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["rgb"].numpy(), rgb_P3.numpy(), atol=1e-4)
    assert (density_P == 0).any() and (density_P > 0).any()  # points both in and out of the box


def test_auto_on_the_cpu_picks_onnxruntime_and_says_why(orbit_engine, caplog):
    pytest.importorskip("onnxruntime")
    with caplog.at_level(logging.INFO, logger="nvs_ros.runtime"):
        chosen = encoder_pass(orbit_engine, RuntimeConfig(backend="auto"))
    assert chosen.backend.name == "onnxruntime"
    assert "auto: encoder graph on onnxruntime (CPUExecutionProvider): faster than torch" in caplog.text


def test_auto_falls_back_when_a_backend_is_absent(orbit_engine, caplog, monkeypatch):
    # as on a machine without onnxruntime: the optional import failed
    monkeypatch.setitem(_optional._modules, "onnxruntime", ImportError("No module named 'onnxruntime'"))
    with caplog.at_level(logging.INFO, logger="nvs_ros.runtime"):
        chosen = encoder_pass(orbit_engine, RuntimeConfig(backend="auto"))
    assert chosen.backend.name == "torch"
    unavailable = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert unavailable == ["auto: onnxruntime unavailable (onnxruntime is not installed (No module named "
                           "'onnxruntime')); trying the next"]


def test_a_backend_named_explicitly_that_cannot_run_is_an_error(orbit_engine, monkeypatch):
    monkeypatch.setitem(_optional._modules, "tensorrt", ImportError("No module named 'tensorrt'"))
    with pytest.raises(BackendUnavailable, match="tensorrt is not installed"):
        encoder_pass(orbit_engine, RuntimeConfig(backend="tensorrt"))


def test_tensorrt_encoder_pass_matches_torch(orbit_engine, tmp_path):
    try:
        _optional.tensorrt()
    except BackendUnavailable as err:
        pytest.skip(f"TensorRT absent: {err}")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU; torch sees none")
    engine = orbit_engine.to("cuda")
    try:
        config = RuntimeConfig(backend="tensorrt", device="cuda", engine_cache_dir=tmp_path, enable_fp16=False)
        on_trt = encoder_pass(engine, config)
        images = torch.rand(8, 3, 32, 32, device="cuda")
        got, want = on_trt(images), engine.predict(images)
        torch.testing.assert_close(got.probs_BK, want.probs_BK, atol=1e-3, rtol=1e-3)
        assert len(list(tmp_path.glob("encoder-fp32-*.engine"))) == 1
    finally:
        orbit_engine.to("cpu")
