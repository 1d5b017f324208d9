"""The torch backend: the graph's module itself, under no_grad, on the scene's device."""

import torch
from torch import Tensor

from nvs_ros.runtime.graph import Graph


class TorchBackend:
    name = "torch"

    def __init__(self, graph: Graph) -> None:
        self._graph = graph
        device = next(iter(graph.module.parameters())).device
        self.detail = str(device)

    def infer(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        spec = self._graph.spec
        with torch.no_grad():
            outputs = self._graph.module(*(inputs[t.name] for t in spec.inputs))
        return {t.name: out for t, out in zip(spec.outputs, outputs)}
