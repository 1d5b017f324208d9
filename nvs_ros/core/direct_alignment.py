"""Direct alignment of a frame to the scene's rendered RGB-D view (as RGB-D odometry aligns two
frames): the field renders colour and depth from the current pose; every opaque pixel of that
view becomes a coloured 3D point; Gauss-Newton then moves the camera until the frame, sampled
where those points project, shows their colours. Only the render touches the field: the steps
project a few hundred points and sample an image (numpy, on the CPU), so many of them cost
less than one step of `core.render_compare.refine_poses`, which renders the field seven times per step.

The steps go coarse to fine over the frame's levels (smaller sizes first): a pose 10 degrees
off moves the points several pixels at 64 px, beyond the reach of a pixel's gradient. At a level
coarser than the render the points take their colours from the render shrunk the same way as the
frame (both blurred alike); registration renders at its coarsest level, as a 16 px level below
it made chair's frames worse (79% within 5 degrees instead of 95%). The Jacobian is analytic:
the frame's image gradient (central differences) times the projection's derivative w.r.t. a
world-frame twist, c2w <- exp(twist) @ c2w, as in core.render_compare.

A round renders the current pose (at the level the residuals are measured at: the render is also
the pose's residual) and aligns; after the last round the final pose is rendered for its
residual, and the pose with the lowest residual of all those rendered is kept: a blurry field's
depth can mislead an alignment, and a round that makes the frame fit worse is undone.

A frame with several starting poses (registration's candidates, core.registration) has each
aligned, and the one that then explains it best wins (`align_the_best`); training views are
aligned from where they are, each kept where it then fits better (`align_views`).
"""

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch import Tensor

from nvs_ros.core import cameras
from nvs_ros.core.diffusion import GenerativeLifting
from nvs_ros.core.gauss_newton import damped_gauss_newton_step_array
from nvs_ros.core.refine_config import RefineConfig
from nvs_ros.core.render_compare import view_residuals

MIN_OPACITY = 0.9
"""Pixels of the rendered view more transparent than this give no point: the background, and the
silhouette's half-transparent rim, whose expected depth lies between the object and what is
behind it (measured with the first, single-render version of this alignment: at 0.5 the tests'
tiny scene aligned 4-degree offsets to a 2.1 degree median, at 0.9 to 1.4; chair unchanged)."""
MIN_POINTS = 6
"""Fewer opaque pixels than this (nothing of the scene in sight): no step is taken."""


@torch.no_grad()
def align_views(engine: GenerativeLifting, images_BHW3: Tensor, K_B33: Tensor, c2w_B44: Tensor,
                config: RefineConfig = RefineConfig()) -> tuple[Tensor, Tensor]:
    """Training views aligned to the field from where they are (as a new frame is,
    core.registration), each kept where it then explains its view better: (B, 4, 4) poses and their
    residuals at `size` (B,). Joint refinement moves every pose by a small gradient step on a few
    random pixels per step, and stops short of the field's photometric optimum; the alignment's
    Gauss-Newton steps on whole coarse-to-fine images reach it."""
    small_BHW3, small_K_B33 = cameras.resize_views(images_BHW3, K_B33, config.size)
    c2w_B44 = c2w_B44.detach().float()
    before_B = view_residuals(engine, small_BHW3, small_K_B33, c2w_B44)
    aligned_B44, after_B, _ = align_the_best(engine, images_BHW3, K_B33, [[c2w_44] for c2w_44 in c2w_B44], config)
    better_B = after_B < before_B
    return torch.where(better_B[:, None, None], aligned_B44, c2w_B44), torch.where(better_B, after_B, before_B)


def align_the_best(engine: GenerativeLifting, images_BHW3: Tensor, K_B33: Tensor, starts: list[list[Tensor]],
                   config: RefineConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Each frame's starting poses (4, 4) aligned to the field (`align_to_rendered_view`); the one
    that then explains the frame best wins. Returns the (B, 4, 4) poses, their residuals at
    `size` (B,) and the index of each frame's winning start (B,)."""
    levels, rendered = _frame_levels(images_BHW3, K_B33, config)
    poses, residuals, winners = [], [], []
    for b, starts_of_frame in enumerate(starts):
        frame_levels = [(level_BHW3[b], level_K_B33[b]) for level_BHW3, level_K_B33 in levels]
        aligned = [align_to_rendered_view(engine, frame_levels, rendered, c2w_44, config.alignment_rounds,
                                          config.alignment_steps, config.damping) for c2w_44 in starts_of_frame]
        winner = min(range(len(aligned)), key=lambda j: float(aligned[j][1]))
        poses.append(aligned[winner][0])
        residuals.append(aligned[winner][1])
        winners.append(winner)
    return torch.stack(poses), torch.stack(residuals), torch.tensor(winners, device=images_BHW3.device)


def _frame_levels(images_BHW3: Tensor, K_B33: Tensor, config: RefineConfig) -> tuple[list[tuple[Tensor, Tensor]], int]:
    """The frames at `alignment_sizes` and `size` (capped at their own, each size once), coarse
    to fine, and the index of the one at `size`."""
    levels = {}
    for side in sorted({*config.alignment_sizes, config.size}):
        level_BHW3, level_K_B33 = cameras.resize_views(images_BHW3, K_B33, side)
        levels.setdefault(tuple(level_BHW3.shape[1:3]), (level_BHW3, level_K_B33))
    rendered = list(levels).index(cameras.fit_size(*images_BHW3.shape[1:3], config.size))
    return list(levels.values()), rendered


@torch.no_grad()
def align_to_rendered_view(engine, levels: list[tuple[Tensor, Tensor]], rendered: int, c2w_44: Tensor,
                           rounds: int, steps: int, damping: float = 0.1) -> tuple[Tensor, Tensor]:
    """The pose (4, 4) of a frame after `rounds` of alignment from `c2w_44`, and its residual ().

    levels: the frame (H, W, 3) in [0, 1] with its intrinsics (3, 3) at each size, coarse to
        fine; `rendered` indexes the one the field renders and the residual (full-image MSE) is
        measured at. `steps` Gauss-Newton steps per level and round.
    """
    image_HW3, K_33 = levels[rendered]
    with_gradients = [_with_gradients(level_HW3.double().cpu().numpy()) for level_HW3, _ in levels]
    intrinsics = [level_K_33.double().cpu().numpy() for _, level_K_33 in levels]
    pose_44, best_pose_44, best_residual = c2w_44, c2w_44, None
    for round_ in range(rounds + 1):
        view = engine.render_full(K_33, pose_44, *image_HW3.shape[:2], num_samples=engine.config.samples_per_ray)
        residual = ((view.rgb_R3 - image_HW3) ** 2).mean()
        if best_residual is None or residual < best_residual:
            best_pose_44, best_residual = pose_44, residual
        if round_ == rounds:
            break
        points_P3, colours_P3 = (x.double().cpu().numpy() for x in _opaque_points(view, K_33, pose_44))
        if len(points_P3) < MIN_POINTS:
            break
        rendered_from_44 = pose = pose_44.double().cpu().numpy()
        for level, (level_HW9, level_K_33) in enumerate(zip(with_gradients, intrinsics)):
            if level < rendered:
                shrunk_HW3 = cameras.resized_images(view.rgb_R3[None], level_HW9.shape[:2])[0].double().cpu().numpy()
                colours_P3 = _bilinear(shrunk_HW3, _project(level_K_33, rendered_from_44, points_P3))
            pose = _gauss_newton(level_HW9, level_K_33, points_P3, colours_P3, pose, steps, damping)
        pose_44 = torch.from_numpy(pose).to(c2w_44)
    return best_pose_44, best_residual


def _opaque_points(view, K_33: Tensor, c2w_44: Tensor) -> tuple[Tensor, Tensor]:
    """World points (P, 3) of the view's opaque pixels (depth along each pixel's ray) and their
    colours (P, 3)."""
    h, w = view.opacity_R.shape
    uv_P2 = cameras.pixel_grid(h, w, device=c2w_44.device)
    origins_1P3, dirs_1P3 = cameras.rays_from_pixels(K_33[None], c2w_44[None], uv_P2[None])
    opaque_P = view.opacity_R.reshape(-1) > MIN_OPACITY
    points_P3 = (origins_1P3[0] + dirs_1P3[0] * view.depth_R.reshape(-1, 1))[opaque_P]
    return points_P3, view.rgb_R3.reshape(-1, 3)[opaque_P]


def _with_gradients(image_HW3: np.ndarray) -> np.ndarray:
    """(H, W, 9): the image, then its derivatives along u and v (central differences, one-sided
    at the border)."""
    gradient_v_HW3, gradient_u_HW3 = np.gradient(image_HW3, axis=(0, 1))
    return np.concatenate([image_HW3, gradient_u_HW3, gradient_v_HW3], axis=2)


def _gauss_newton(frame_HW9: np.ndarray, K_33: np.ndarray, points_P3: np.ndarray, colours_P3: np.ndarray,
                  c2w_44: np.ndarray, steps: int, damping: float) -> np.ndarray:
    """The pose after `steps` damped Gauss-Newton steps on |frame(project(points)) - colours|^2;
    points that leave the frame or go behind the camera drop out of a step."""
    h, w = frame_HW9.shape[:2]
    pose_44 = c2w_44
    for _ in range(steps):
        rotation_33 = pose_44[:3, :3].T  # world to camera
        turned_P3 = points_P3 @ rotation_33.T
        camera_P3 = turned_P3 - rotation_33 @ pose_44[:3, 3]
        inverse_depth_P = 1.0 / np.maximum(camera_P3[:, 2], 1e-6)
        uv_P2 = camera_P3[:, :2] * inverse_depth_P[:, None] * K_33[[0, 1], [0, 1]] + K_33[:2, 2]
        inside_P1 = ((camera_P3[:, 2] > 1e-6) & (uv_P2[:, 0] > -0.5) & (uv_P2[:, 0] < w - 0.5)
                     & (uv_P2[:, 1] > -0.5) & (uv_P2[:, 1] < h - 0.5))[:, None]
        sampled_P9 = _bilinear(frame_HW9, uv_P2)
        residual_P3 = (sampled_P9[:, :3] - colours_P3) * inside_P1
        motion_u_P6, motion_v_P6 = _pixel_motion(K_33, camera_P3, turned_P3, inverse_depth_P)
        jacobian_P36 = (sampled_P9[:, 3:6, None] * motion_u_P6[:, None] + sampled_P9[:, 6:9, None] * motion_v_P6[:, None]
                        ) * inside_P1[:, :, None]
        turned_twist_6 = damped_gauss_newton_step_array(residual_P3.reshape(-1), jacobian_P36.reshape(-1, 6), damping)
        pose_44 = _moved(pose_44, turned_twist_6.reshape(2, 3) @ rotation_33)  # R^T on each half
    return pose_44


def _pixel_motion(K_33: np.ndarray, camera_P3: np.ndarray, turned_P3: np.ndarray,
                  inverse_depth_P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, 6) derivatives of the points' u and of their v w.r.t. (R rho, R omega), where
    (rho, omega) is the world-frame twist of c2w <- exp(twist) @ c2w and R the world-to-camera
    rotation. With Y = RX the turned world point X, the camera coordinates move by
    -R rho - (R omega) x Y: in pixels by -A (R rho) and (a x Y) . (R omega), A the projection's
    derivative and a its rows."""
    x_P, y_P = camera_P3[:, 0] * inverse_depth_P, camera_P3[:, 1] * inverse_depth_P
    zero_P = np.zeros_like(x_P)
    du_P3 = K_33[0, 0] * np.stack([inverse_depth_P, zero_P, -x_P * inverse_depth_P], axis=1)
    dv_P3 = K_33[1, 1] * np.stack([zero_P, inverse_depth_P, -y_P * inverse_depth_P], axis=1)
    return (np.concatenate([-du_P3, _cross(du_P3, turned_P3)], axis=1),
            np.concatenate([-dv_P3, _cross(dv_P3, turned_P3)], axis=1))


def _cross(a_P3: np.ndarray, b_P3: np.ndarray) -> np.ndarray:
    """Row-wise cross products (np.cross costs several times more on small arrays)."""
    return np.stack([a_P3[:, 1] * b_P3[:, 2] - a_P3[:, 2] * b_P3[:, 1],
                     a_P3[:, 2] * b_P3[:, 0] - a_P3[:, 0] * b_P3[:, 2],
                     a_P3[:, 0] * b_P3[:, 1] - a_P3[:, 1] * b_P3[:, 0]], axis=1)


def _moved(c2w_44: np.ndarray, twist_23: np.ndarray) -> np.ndarray:
    """The pose turned by exp(omega) and shifted by rho, twist_23 = (rho, omega) in the world
    frame: to first order the same as cameras.se3_exp, so the same Gauss-Newton step."""
    step_44 = np.eye(4)
    step_44[:3, :3] = Rotation.from_rotvec(twist_23[1]).as_matrix()
    step_44[:3, 3] = twist_23[0]
    return step_44 @ c2w_44


def _project(K_33: np.ndarray, c2w_44: np.ndarray, points_P3: np.ndarray) -> np.ndarray:
    """(P, 2) pixel coordinates of the points in the camera (OpenCV, pixel centres integer)."""
    camera_P3 = (points_P3 - c2w_44[:3, 3]) @ c2w_44[:3, :3]
    return camera_P3[:, :2] / np.maximum(camera_P3[:, 2:], 1e-6) @ K_33[:2, :2].T + K_33[:2, 2]


def _bilinear(image_HWC: np.ndarray, uv_P2: np.ndarray) -> np.ndarray:
    """(P, C) bilinear values at the pixel coordinates (pixel centres integer; the border's values
    beyond it)."""
    h, w, c = image_HWC.shape
    u_P = np.clip(uv_P2[:, 0], 0.0, w - 1.0)
    v_P = np.clip(uv_P2[:, 1], 0.0, h - 1.0)
    u0_P = np.minimum(u_P.astype(np.int64), max(w - 2, 0))
    v0_P = np.minimum(v_P.astype(np.int64), max(h - 2, 0))
    fu_P1, fv_P1 = (u_P - u0_P)[:, None], (v_P - v0_P)[:, None]
    flat_NC = image_HWC.reshape(-1, c)
    corner_P = v0_P * w + u0_P
    right, down = min(1, w - 1), min(1, h - 1) * w
    top_PC = flat_NC.take(corner_P, axis=0) * (1.0 - fu_P1) + flat_NC.take(corner_P + right, axis=0) * fu_P1
    bottom_PC = flat_NC.take(corner_P + down, axis=0) * (1.0 - fu_P1) + flat_NC.take(corner_P + down + right, axis=0) * fu_P1
    return top_PC * (1.0 - fv_P1) + bottom_PC * fv_P1
