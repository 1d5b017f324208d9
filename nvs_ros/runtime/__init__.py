"""Inference backends (torch, onnxruntime, TensorRT) and export to them."""
