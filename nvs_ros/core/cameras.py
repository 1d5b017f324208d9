"""Pinhole intrinsics, SE(3)/so(3) exponential maps, orbit cameras and pixel rays.

Pixel convention (OpenCV): the centre of the top-left pixel is (0, 0), so a pixel
(u, v) covers [u - 0.5, u + 0.5]. Scaling an image by s maps u to (u + 0.5) * s - 0.5.

Camera axes (OpenCV / ROS optical): x right, y down, z forward. A pose is camera-to-world
(c2w): x_world = R x_cam + t. The torch functions below work in the dtype and on the device
of their inputs and are differentiable, so gradients reach pose parameters.
"""

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch import Tensor

# Below this squared angle (rad^2) the exponential maps use Taylor series: sin(x)/x and
# friends lose all precision in float32 near 0, and their gradients become NaN at 0.
_SMALL_ANGLE_SQ = 1e-4


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """3x3 float64 pinhole matrix."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def scale_intrinsics(K_N33: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """Intrinsics of the same cameras after resizing the images by (scale_x, scale_y)."""
    K_N33 = np.array(K_N33, dtype=np.float64, copy=True)
    K_N33[..., 0, 0] *= scale_x
    K_N33[..., 1, 1] *= scale_y
    K_N33[..., 0, 2] = (K_N33[..., 0, 2] + 0.5) * scale_x - 0.5
    K_N33[..., 1, 2] = (K_N33[..., 1, 2] + 0.5) * scale_y - 0.5
    return K_N33


def fit_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(height, width) scaled down so the longer side is at most max_side (never up)."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_views(images_BHW3: Tensor, K_B33: Tensor, max_side: int) -> tuple[Tensor, Tensor]:
    """Images resized (antialiased) to a longer side of max_side, with their intrinsics."""
    _, h, w, _ = images_BHW3.shape
    height, width = fit_size(h, w, max_side)
    if (height, width) == (h, w):
        return images_BHW3, K_B33
    K = scale_intrinsics(K_B33.detach().cpu().numpy(), width / w, height / h)
    return resized_images(images_BHW3, (height, width)), torch.from_numpy(K).to(K_B33)


def resized_images(images_BHW3: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """Images (B, H, W, 3) resized to (height, width), antialiased: how frames, and the renders
    compared with them, are brought to a common size."""
    resized = torch.nn.functional.interpolate(images_BHW3.permute(0, 3, 1, 2), size=size_hw, mode="bilinear",
                                              antialias=True, align_corners=False)
    return resized.permute(0, 2, 3, 1).contiguous()


# ----------------------------------------------------------------------------- Lie groups

def hat(omega_N3: Tensor) -> Tensor:
    """Skew-symmetric matrices (N, 3, 3) with hat(w) @ v = cross(w, v)."""
    x, y, z = omega_N3.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*omega_N3.shape[:-1], 3, 3)


def _exp_coefficients(omega_N3: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """sin(t)/t, (1 - cos t)/t^2, (t - sin t)/t^3 for t = |omega|, each (N, 1, 1), finite with
    finite gradients at t = 0 (Taylor series below _SMALL_ANGLE_SQ)."""
    theta_sq_N = (omega_N3 * omega_N3).sum(-1)
    small_N = theta_sq_N < _SMALL_ANGLE_SQ
    # Keep the closed-form branch away from 0 so that its (discarded) gradient is not NaN.
    theta_sq_safe_N = torch.where(small_N, torch.ones_like(theta_sq_N), theta_sq_N)
    theta_N = theta_sq_safe_N.sqrt()
    sin_N, cos_N = theta_N.sin(), theta_N.cos()
    a_N = torch.where(small_N, 1.0 - theta_sq_N / 6.0 + theta_sq_N**2 / 120.0, sin_N / theta_N)
    b_N = torch.where(small_N, 0.5 - theta_sq_N / 24.0 + theta_sq_N**2 / 720.0,
                      (1.0 - cos_N) / theta_sq_safe_N)
    c_N = torch.where(small_N, 1.0 / 6.0 - theta_sq_N / 120.0 + theta_sq_N**2 / 5040.0,
                      (theta_N - sin_N) / (theta_sq_safe_N * theta_N))
    return a_N[..., None, None], b_N[..., None, None], c_N[..., None, None]


def so3_exp(omega_N3: Tensor) -> Tensor:
    """Rotation matrices (N, 3, 3) from axis-angle vectors (N, 3) (axis * angle in radians),
    Rodrigues' formula R = I + sin(t)/t W + (1 - cos t)/t^2 W^2 with W = hat(omega)."""
    if omega_N3.shape[-1] != 3:
        raise ValueError(f"omega must be (..., 3), got {tuple(omega_N3.shape)}")
    a, b, _ = _exp_coefficients(omega_N3)
    W_N33 = hat(omega_N3)
    eye_33 = torch.eye(3, dtype=omega_N3.dtype, device=omega_N3.device)
    return eye_33 + a * W_N33 + b * (W_N33 @ W_N33)


def se3_exp(xi_N6: Tensor) -> Tensor:
    """Rigid transforms (N, 4, 4) from twists xi = (rho_3, omega_3): rotation so3_exp(omega),
    translation V rho with V = I + (1 - cos t)/t^2 W + (t - sin t)/t^3 W^2.

    A pose refinement is applied as c2w_refined = se3_exp(xi) @ c2w (left: world frame) or
    c2w @ se3_exp(xi) (right: camera frame); either way xi = 0 is the identity.
    """
    if xi_N6.shape[-1] != 6:
        raise ValueError(f"xi must be (..., 6), got {tuple(xi_N6.shape)}")
    rho_N3, omega_N3 = xi_N6[..., :3], xi_N6[..., 3:]
    a, b, c = _exp_coefficients(omega_N3)
    W_N33 = hat(omega_N3)
    WW_N33 = W_N33 @ W_N33
    eye_33 = torch.eye(3, dtype=xi_N6.dtype, device=xi_N6.device)
    R_N33 = eye_33 + a * W_N33 + b * WW_N33
    V_N33 = eye_33 + b * W_N33 + c * WW_N33
    t_N31 = V_N33 @ rho_N3[..., None]
    bottom_N14 = torch.zeros(*xi_N6.shape[:-1], 1, 4, dtype=xi_N6.dtype, device=xi_N6.device)
    bottom_N14[..., 0, 3] = 1.0
    return torch.cat([torch.cat([R_N33, t_N31], dim=-1), bottom_N14], dim=-2)


def se3_log(T_N44: Tensor) -> Tensor:
    """Twists (N, 6) = (rho_3, omega_3) with se3_exp(se3_log(T)) = T, the inverse of se3_exp for
    rotations below 180 degrees (the rotation vector comes from scipy: robust near 0 and pi)."""
    R_N33, t_N3 = T_N44[..., :3, :3], T_N44[..., :3, 3]
    rotvec = Rotation.from_matrix(R_N33.detach().cpu().double().numpy().reshape(-1, 3, 3)).as_rotvec()
    omega_N3 = torch.from_numpy(rotvec).to(T_N44).reshape(t_N3.shape)
    _, b, c = _exp_coefficients(omega_N3)
    W_N33 = hat(omega_N3)
    V_N33 = torch.eye(3, dtype=T_N44.dtype, device=T_N44.device) + b * W_N33 + c * (W_N33 @ W_N33)
    rho_N3 = torch.linalg.solve(V_N33, t_N3[..., None])[..., 0]
    return torch.cat([rho_N3, omega_N3], dim=-1)


# ----------------------------------------------------------------------------- cameras

def orbit_c2w(azimuth_N: Tensor, elevation_N: Tensor, radius_N: Tensor | float,
              roll_N: Tensor | None = None) -> Tensor:
    """Cameras (N, 4, 4) on a sphere around the world origin, each looking at the origin.

    World +Z is up. The camera centre is radius * (cos e cos a, cos e sin a, sin e): azimuth a
    about +Z from +X towards +Y, elevation e above the XY plane (radians). At roll 0 the
    image x axis is horizontal (right = (-sin a, cos a, 0)) and world +Z points up in the
    image (towards negative v); this stays defined at the poles, where it follows azimuth.
    A positive roll turns the camera about its optical axis from its x axis towards its y
    axis (c2w rotation = R_roll0 @ Rz(roll)), so the image content turns the other way.
    """
    azimuth_N = torch.as_tensor(azimuth_N)
    elevation_N = torch.as_tensor(elevation_N, dtype=azimuth_N.dtype, device=azimuth_N.device)
    radius_N = torch.as_tensor(radius_N, dtype=azimuth_N.dtype, device=azimuth_N.device)
    radius_N = radius_N.expand_as(azimuth_N)
    ca, sa = azimuth_N.cos(), azimuth_N.sin()
    ce, se = elevation_N.cos(), elevation_N.sin()
    zero = torch.zeros_like(azimuth_N)
    outward_N3 = torch.stack([ce * ca, ce * sa, se], dim=-1)
    forward_N3 = -outward_N3
    right_N3 = torch.stack([-sa, ca, zero], dim=-1)
    down_N3 = torch.linalg.cross(forward_N3, right_N3)
    R_N33 = torch.stack([right_N3, down_N3, forward_N3], dim=-1)
    if roll_N is not None:
        roll_N = torch.as_tensor(roll_N, dtype=azimuth_N.dtype, device=azimuth_N.device).expand_as(azimuth_N)
        axis_N3 = torch.stack([zero, zero, torch.ones_like(azimuth_N)], dim=-1)
        R_N33 = R_N33 @ so3_exp(axis_N3 * roll_N[..., None])
    t_N31 = (radius_N[..., None] * outward_N3)[..., None]
    bottom_N14 = torch.zeros(*azimuth_N.shape, 1, 4, dtype=azimuth_N.dtype, device=azimuth_N.device)
    bottom_N14[..., 0, 3] = 1.0
    return torch.cat([torch.cat([R_N33, t_N31], dim=-1), bottom_N14], dim=-2)


def rays_from_pixels(K_N33: Tensor, c2w_N44: Tensor, uv_NR2: Tensor) -> tuple[Tensor, Tensor]:
    """World rays through pixels: origins (N, R, 3) and unit directions (N, R, 3).

    uv_NR2: pixel coordinates (u right, v down) with pixel centres at integers (OpenCV), so
    the full image is the grid u = 0..W-1, v = 0..H-1. Differentiable w.r.t. K and c2w.
    A point at distance s along the ray is at z-depth s * dirs[..., 2-in-camera]; see
    `ray_z_scale`.
    """
    if K_N33.shape[-2:] != (3, 3) or c2w_N44.shape[-2:] != (4, 4) or uv_NR2.shape[-1] != 2:
        raise ValueError(f"need K (N,3,3), c2w (N,4,4), uv (N,R,2); got {tuple(K_N33.shape)}, "
                         f"{tuple(c2w_N44.shape)}, {tuple(uv_NR2.shape)}")
    dirs_cam_NR3 = camera_directions(K_N33, uv_NR2)
    dirs_NR3 = dirs_cam_NR3 @ c2w_N44[..., :3, :3].transpose(-1, -2)
    dirs_NR3 = dirs_NR3 / dirs_NR3.norm(dim=-1, keepdim=True)
    origins_NR3 = c2w_N44[..., None, :3, 3].expand_as(dirs_NR3)
    return origins_NR3, dirs_NR3


def camera_directions(K_N33: Tensor, uv_NR2: Tensor) -> Tensor:
    """Directions in camera axes (N, R, 3) with z = 1 (not unit length) through pixels uv."""
    fx, fy = K_N33[..., 0, 0, None], K_N33[..., 1, 1, None]
    cx, cy = K_N33[..., 0, 2, None], K_N33[..., 1, 2, None]
    x_NR = (uv_NR2[..., 0] - cx) / fx
    y_NR = (uv_NR2[..., 1] - cy) / fy
    return torch.stack([x_NR, y_NR, torch.ones_like(x_NR)], dim=-1)


def ray_z_scale(K_N33: Tensor, uv_NR2: Tensor) -> Tensor:
    """(N, R) factor turning distance along the unit ray into z-depth (along the optical axis)."""
    return 1.0 / camera_directions(K_N33, uv_NR2).norm(dim=-1)


def pixel_grid(height: int, width: int, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """All pixel centres (H*W, 2) as (u, v), row-major (v slowest), OpenCV convention."""
    v_H = torch.arange(height, device=device, dtype=dtype)
    u_W = torch.arange(width, device=device, dtype=dtype)
    vv_HW, uu_HW = torch.meshgrid(v_H, u_W, indexing="ij")
    return torch.stack([uu_HW.reshape(-1), vv_HW.reshape(-1)], dim=-1)
