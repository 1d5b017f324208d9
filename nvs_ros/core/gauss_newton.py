"""The damped Gauss-Newton step both pose refiners take: the twist x minimising
|r + J x|^2 + damping |diag(J^T J)^(1/2) x|^2 (Marquardt's scaling: rotation and translation, in
radians and world units, get comparable steps). Render-and-compare (core.render_compare) takes it in
batches with torch; the direct alignment (core.direct_alignment) one small problem at a time,
where numpy's per-call cost is a fraction of torch's."""

import numpy as np
import torch
from torch import Tensor


def damped_gauss_newton_step(residual_BM: Tensor, jacobian_BM6: Tensor, damping_B: Tensor) -> Tensor:
    """(B, 6) twists, one per residual (B, M) and Jacobian (B, M, 6)."""
    normal_B66 = jacobian_BM6.transpose(1, 2) @ jacobian_BM6
    diagonal_B6 = normal_B66.diagonal(dim1=1, dim2=2).clamp_min(1e-9)
    damped_B66 = normal_B66 + torch.diag_embed(damping_B[:, None] * diagonal_B6)
    gradient_B6 = (jacobian_BM6.transpose(1, 2) @ residual_BM[..., None])[..., 0]
    return -torch.linalg.solve(damped_B66, gradient_B6)


def damped_gauss_newton_step_array(residual_M: np.ndarray, jacobian_M6: np.ndarray, damping: float) -> np.ndarray:
    """(6,) twist of one residual (M,) and Jacobian (M, 6)."""
    normal_66 = jacobian_M6.T @ jacobian_M6
    damped_66 = normal_66 + np.diag(damping * np.maximum(np.diag(normal_66), 1e-9))
    return -np.linalg.solve(damped_66, jacobian_M6.T @ residual_M)
