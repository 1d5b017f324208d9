"""Export of the radiance field to ONNX (standard operators; GridSample needs opset >= 20 for
3D grids, which torch's dynamo exporter emits)."""

from pathlib import Path

import torch
from torch import Tensor

from nvs_ros.core.field import RadianceField


class FieldQuery(torch.nn.Module):
    """points (P, 3) world coordinates -> (density (P,), rgb (P, 3)): `RadianceField.query`."""

    def __init__(self, field: RadianceField) -> None:
        super().__init__()
        self.field = field

    def forward(self, points_P3: Tensor) -> tuple[Tensor, Tensor]:
        return self.field.query(points_P3)


def export_field_onnx(field: RadianceField, path: str | Path, opset: int = 20) -> Path:
    """Write `field.query` as one self-contained ONNX file with a dynamic number of points.

    Inputs: "points" float32 (P, 3). Outputs: "density" (P,), "rgb" (P, 3).
    """
    path = Path(path)
    module = FieldQuery(field).eval()
    example_P3 = torch.zeros(8, 3, device=field.grid.device)
    with torch.no_grad():
        torch.onnx.export(module, (example_P3,), str(path), input_names=["points"],
                          output_names=["density", "rgb"], opset_version=opset,
                          dynamic_shapes=({0: torch.export.Dim("num_points")},),
                          external_data=False, dynamo=True, verbose=False)
    return path
