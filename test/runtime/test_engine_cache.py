"""The engine cache with a stand-in builder (a function that writes bytes, as TensorRT's
`build_serialized_network` would): one build per key, a rebuild when any part of the key
changes or an update is forced, nothing half-written after a failed build."""

import dataclasses

import pytest

from nvs_ros.runtime.backend import RuntimeConfig
from nvs_ros.runtime.engine_cache import EngineKey, cached_engine
from nvs_ros.runtime.graph import GraphSpec, TensorSpec
from nvs_ros.runtime.tensorrt_backend import engine_key

SPEC = GraphSpec("encoder", (TensorSpec("images", (-1, 3, 32, 32)),), (TensorSpec("logits_BK", (-1, 8)),), 17)


class StandInBuilder:
    """Builds an "engine": bytes naming the key, counting builds."""

    def __init__(self) -> None:
        self.builds = 0

    def __call__(self, key: EngineKey) -> bytes:
        self.builds += 1
        return f"engine {self.builds} for {key.digest()}".encode()


def _key(model: bytes = b"onnx model", config: RuntimeConfig = RuntimeConfig(), version: str = "10.3.0",
         capability: tuple[int, int] = (9, 0)) -> EngineKey:
    return engine_key(model, SPEC, config, version, capability)


def test_the_same_key_builds_once(tmp_path):
    builder = StandInBuilder()
    first = cached_engine(tmp_path, _key(), lambda: builder(_key()))
    again = cached_engine(tmp_path, _key(), lambda: builder(_key()))
    assert builder.builds == 1 and first == again
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [_key().file_name(), _key().file_name().replace(".engine", ".json")]


@pytest.mark.parametrize("changed", [
    _key(model=b"another onnx model"),                              # the ONNX hash
    _key(version="10.4.0"),                                         # the TensorRT version
    _key(capability=(8, 7)),                                        # the GPU (Jetson Orin)
    _key(config=RuntimeConfig(enable_fp16=False)),                  # the precision
    _key(config=RuntimeConfig(max_batch=16)),                       # the input shapes
])
def test_any_change_of_the_key_rebuilds(tmp_path, changed):
    builder = StandInBuilder()
    cached_engine(tmp_path, _key(), lambda: builder(_key()))
    engine = cached_engine(tmp_path, changed, lambda: builder(changed))
    assert builder.builds == 2 and engine == f"engine 2 for {changed.digest()}".encode()
    assert changed.file_name() != _key().file_name()


def test_the_key_ignores_what_does_not_change_the_engine(tmp_path):
    assert _key(config=RuntimeConfig(max_workspace_size=1 << 20, threads=3)) == _key()


def test_a_forced_update_rebuilds_and_replaces(tmp_path):
    builder = StandInBuilder()
    cached_engine(tmp_path, _key(), lambda: builder(_key()))
    engine = cached_engine(tmp_path, _key(), lambda: builder(_key()), force_update=True)
    assert builder.builds == 2 and (tmp_path / _key().file_name()).read_bytes() == engine


def test_a_failed_build_leaves_no_engine(tmp_path):
    def failing() -> bytes:
        raise RuntimeError("builder ran out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        cached_engine(tmp_path, _key(), failing)
    assert not (tmp_path / _key().file_name()).exists()
    builder = StandInBuilder()
    cached_engine(tmp_path, _key(), lambda: builder(_key()))
    assert builder.builds == 1 and not list(tmp_path.glob(".*.tmp"))


def test_key_fields_are_the_documented_five():
    names = {f.name for f in dataclasses.fields(EngineKey)} - {"graph"}
    assert names == {"onnx_sha256", "tensorrt_version", "compute_capability", "precision", "input_shapes"}
