"""The damped Gauss-Newton step both pose refiners take (render-and-compare in core.refine,
direct alignment in core.direct_alignment)."""

import torch
from torch import Tensor


def damped_gauss_newton_step(residual_BM: Tensor, jacobian_BM6: Tensor, damping_B: Tensor) -> Tensor:
    """(B, 6) twists minimising |r + J x|^2 + damping |diag(J^T J)^(1/2) x|^2 (Marquardt's scaling:
    rotation and translation, in radians and world units, get comparable steps)."""
    normal_B66 = jacobian_BM6.transpose(1, 2) @ jacobian_BM6
    diagonal_B6 = normal_B66.diagonal(dim1=1, dim2=2).clamp_min(1e-9)
    damped_B66 = normal_B66 + torch.diag_embed(damping_B[:, None] * diagonal_B6)
    gradient_B6 = (jacobian_BM6.transpose(1, 2) @ residual_BM[..., None])[..., 0]
    return -torch.linalg.solve(damped_B66, gradient_B6)
