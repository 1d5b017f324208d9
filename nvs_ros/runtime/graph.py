"""What a backend runs: a graph cut from a trained scene, with the spec of its inputs and outputs,
and its export to ONNX (the input of ONNX Runtime and of the TensorRT builder).

- "encoder": the registration's encoder pass, images (B, 3, S, S) in [0, 1] at the encoder's input
  size -> the fields of its hypotheses at t = 0 (core.pose_encoder.PoseHypotheses: azimuth_BK,
  elevation_BK, logits_BK; forward captures core.forward_poses.ForwardHypotheses: twist_BK6,
  logits_BK). Standard operators (conv, GroupNorm, SiLU, resize, tanh), opset 17.
- "field": the radiance field's point query, points (P, 3) -> density (P,), rgb (P, 3). Its 3D
  grid sampling needs GridSample at opset >= 20, which torch's dynamo exporter emits.
"""

import dataclasses
import hashlib
import io
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nvs_ros.core.diffusion import GenerativeLifting

ENCODER_OPSET = 17
FIELD_OPSET = 20


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    """-1 marks the dynamic (batch or point count) dimension."""
    dtype: str = "float32"


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int


@dataclass
class Graph:
    """A torch module with plain-tensor inputs and outputs (in the spec's order), what export needs."""

    module: nn.Module
    spec: GraphSpec
    example: tuple[Tensor, ...]
    """Inputs to trace the export with."""
    dynamo: bool = False
    """Export with torch's dynamo exporter (needed for opset >= 18 operators such as 3D GridSample)."""


class EncoderGraph(nn.Module):
    """The registration's encoder pass (`GenerativeLifting.predict`) with tensors out: the
    hypotheses' fields in their dataclass order."""

    def __init__(self, engine: GenerativeLifting) -> None:
        super().__init__()
        self.encoder = engine.encoder

    def forward(self, images_B3SS: Tensor) -> tuple[Tensor, ...]:
        t_B = torch.zeros(images_B3SS.shape[0], device=images_B3SS.device)
        hyp = self.encoder(2.0 * images_B3SS - 1.0, t_B)  # the DDPM's data range, as predict()
        return tuple(getattr(hyp, f.name) for f in dataclasses.fields(hyp))


class FieldQuery(nn.Module):
    """points (P, 3) world coordinates -> (density (P,), rgb (P, 3)): `RadianceField.query`."""

    def __init__(self, engine: GenerativeLifting) -> None:
        super().__init__()
        self.field = engine.field

    def forward(self, points_P3: Tensor) -> tuple[Tensor, Tensor]:
        return self.field.query(points_P3)


def hypothesis_type(engine: GenerativeLifting) -> type:
    """The dataclass the engine's encoder returns (PoseHypotheses or ForwardHypotheses)."""
    return _encoder_outputs(engine)[0]


def _encoder_outputs(engine: GenerativeLifting) -> tuple[type, tuple[Tensor, ...], Tensor]:
    size = engine.encoder.config.input_size
    device = engine.field.grid.device
    example_13SS = torch.full((1, 3, size, size), 0.5, device=device)
    with torch.no_grad():
        hyp = engine.predict(example_13SS)
    return type(hyp), tuple(getattr(hyp, f.name) for f in dataclasses.fields(hyp)), example_13SS


def encoder_graph(engine: GenerativeLifting) -> Graph:
    kind, outputs, example_13SS = _encoder_outputs(engine)
    size = example_13SS.shape[-1]
    spec = GraphSpec("encoder", (TensorSpec("images", (-1, 3, size, size)),),
                     tuple(TensorSpec(f.name, (-1, *out.shape[1:]))
                           for f, out in zip(dataclasses.fields(kind), outputs)), ENCODER_OPSET)
    return Graph(EncoderGraph(engine).eval(), spec, (example_13SS,))


def field_graph(engine: GenerativeLifting) -> Graph:
    example_P3 = torch.zeros(8, 3, device=engine.field.grid.device)
    spec = GraphSpec("field", (TensorSpec("points", (-1, 3)),),
                     (TensorSpec("density", (-1,)), TensorSpec("rgb", (-1, 3))), FIELD_OPSET)
    return Graph(FieldQuery(engine).eval(), spec, (example_P3,), dynamo=True)


def export_onnx(graph: Graph) -> bytes:
    """The graph as one self-contained ONNX model (weights inside) with a dynamic first dimension."""
    spec = graph.spec
    names_in = [t.name for t in spec.inputs]
    names_out = [t.name for t in spec.outputs]
    buffer = io.BytesIO()
    with torch.no_grad():
        if graph.dynamo:
            dims = tuple({0: torch.export.Dim(f"{t.name}_count")} for t in spec.inputs)
            program = torch.onnx.export(graph.module, graph.example, None, input_names=names_in,
                                        output_names=names_out, opset_version=spec.opset, dynamic_shapes=dims,
                                        dynamo=True, verbose=False)
            program.save(buffer, external_data=False)
        else:
            axes = {name: {0: "batch"} for name in names_in + names_out}
            torch.onnx.export(graph.module, graph.example, buffer, input_names=names_in, output_names=names_out,
                              opset_version=spec.opset, dynamic_axes=axes, dynamo=False)
    return buffer.getvalue()


def onnx_hash(model: bytes) -> str:
    """sha256 of an ONNX model's bytes (what an engine cache and a manifest key it by)."""
    return hashlib.sha256(model).hexdigest()
