"""Camera axis conventions. The only module that flips camera axes.

Internally every camera is OpenCV / ROS optical: x right, y down, z forward, and a pose
is camera-to-world (c2w) as a 4x4 float64 matrix. Datasets are converted at load time.
"""

import numpy as np

# Right-multiplying a c2w by this swaps between OpenGL/Blender cameras (x right, y up,
# z back) and OpenCV cameras (x right, y down, z forward). It is its own inverse.
_FLIP_YZ_44 = np.diag([1.0, -1.0, -1.0, 1.0])


def c2w_gl_to_cv(c2w_gl_N44: np.ndarray) -> np.ndarray:
    """OpenGL/Blender camera-to-world (..., 4, 4) -> OpenCV camera-to-world."""
    return np.asarray(c2w_gl_N44, dtype=np.float64) @ _FLIP_YZ_44


def c2w_cv_to_gl(c2w_cv_N44: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world (..., 4, 4) -> OpenGL/Blender camera-to-world."""
    return np.asarray(c2w_cv_N44, dtype=np.float64) @ _FLIP_YZ_44


def llff_to_cv(poses_N34: np.ndarray) -> np.ndarray:
    """LLFF `poses_bounds.npy` rotations (columns down, right, back) -> OpenCV c2w (N, 4, 4).

    LLFF stores [down, right, back | t]; OpenGL is [right, up, back] = [c1, -c0, c2].
    """
    poses_N34 = np.asarray(poses_N34, dtype=np.float64)
    c2w_gl_N44 = np.tile(np.eye(4), (len(poses_N34), 1, 1))
    c2w_gl_N44[:, :3, 0] = poses_N34[:, :, 1]
    c2w_gl_N44[:, :3, 1] = -poses_N34[:, :, 0]
    c2w_gl_N44[:, :3, 2] = poses_N34[:, :, 2]
    c2w_gl_N44[:, :3, 3] = poses_N34[:, :, 3]
    return c2w_gl_to_cv(c2w_gl_N44)


def w2c_to_c2w(R_w2c_N33: np.ndarray, t_w2c_N3: np.ndarray) -> np.ndarray:
    """World-to-camera x_cam = R x_world + t (OpenCV) -> camera-to-world (N, 4, 4)."""
    R_w2c_N33 = np.asarray(R_w2c_N33, dtype=np.float64)
    t_w2c_N3 = np.asarray(t_w2c_N3, dtype=np.float64)
    c2w_N44 = np.tile(np.eye(4), (len(R_w2c_N33), 1, 1))
    R_c2w_N33 = np.transpose(R_w2c_N33, (0, 2, 1))
    c2w_N44[:, :3, :3] = R_c2w_N33
    c2w_N44[:, :3, 3] = -np.einsum("nij,nj->ni", R_c2w_N33, t_w2c_N3)
    return c2w_N44
