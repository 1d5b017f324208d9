"""TensorRT engines as build outputs: built once per key, kept in `engine_cache_dir`, rebuilt when
any part of the key changes.

An engine is valid only for the ONNX model it was built from, the TensorRT version that built it,
the GPU architecture (compute capability) it was tuned on, its precision and the input shapes of
its optimisation profile; the key holds all five, so a changed one names another file and the old
engine is never loaded by mistake. Files are written atomically (temporary file + rename): a
crash during a build leaves no half engine that a later start would load.
"""

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineKey:
    graph: str
    """The graph's name ("encoder"), for people reading the folder."""
    onnx_sha256: str
    tensorrt_version: str
    compute_capability: str
    """"9.0" (H100)."""
    precision: str
    """"fp16" or "fp32"."""
    input_shapes: tuple[tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...]
    """(name, min, opt, max) of each input of the optimisation profile."""

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def file_name(self) -> str:
        return f"{self.graph}-{self.precision}-sm{self.compute_capability.replace('.', '')}-{self.digest()[:16]}.engine"


def cached_engine(cache_dir: Path, key: EngineKey, build: Callable[[], bytes], force_update: bool = False) -> bytes:
    """The engine for `key`: read from `cache_dir`, or built by `build()` and stored there (with a
    JSON file of its key next to it); `force_update` rebuilds it regardless."""
    cache_dir = Path(cache_dir).expanduser()
    path = cache_dir / key.file_name()
    if path.is_file() and not force_update:
        _log.debug("TensorRT engine from the cache: %s", path)
        return path.read_bytes()
    _log.info("building the TensorRT %s engine (%s, %s, compute capability %s): %s", key.graph, key.precision,
              f"TensorRT {key.tensorrt_version}", key.compute_capability,
              "forced update" if path.is_file() else "none cached for this key")
    engine = build()
    cache_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, engine)
    _write_atomically(path.with_suffix(".json"), json.dumps(asdict(key), indent=1).encode())
    return engine


def _write_atomically(path: Path, data: bytes) -> None:
    # io.output_folder.write_atomic, plus fsync (an engine is large); runtime sits below io
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
