"""Inference backends (torch, ONNX Runtime, TensorRT) behind one `infer()` protocol, the graphs
they run (exported from a trained scene), and the TensorRT engine cache.

    graph.py           what is exported: the encoder pass, the field's point query; ONNX export
    backend.py         the protocol, RuntimeConfig, BackendUnavailable
    torch_backend.py / onnxruntime_backend.py / tensorrt_backend.py
    engine_cache.py    TensorRT engines as build outputs, keyed and written atomically
    selection.py       `auto` and explicit choices: which backend runs, and why
    encoder_pass.py    the registration's encoder pass on any backend (core.registration.EncoderPass)
"""
