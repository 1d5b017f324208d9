"""The bundled procedural scene: deterministic, fast, and its cameras agree with its pixels."""


import numpy as np
import pytest
from geometry_checks import fundamental_from_poses, sampson_errors_px, sift_matches

from nvs_ros.io.bundled_scene import FOV_DEG, render_bundled_depth, render_bundled_scene

ROOM_HALF_XY, ROOM_HEIGHT = 5.0, 4.5  # the room box of the module docstring
INSIDE_MAIN_OBJECT_3 = np.array([0.0, 0.0, 0.15])  # every "object" main object contains it


def _project(image_set, point_3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (N, 2) and camera depths (N,) of a world point in every view."""
    w2c_N44 = np.linalg.inv(image_set.c2w_N44)
    cam_N3 = np.einsum("nij,j->ni", w2c_N44[:, :3, :3], point_3) + w2c_N44[:, :3, 3]
    pix_N3 = np.einsum("nij,nj->ni", image_set.K_N33, cam_N3)
    return pix_N3[:, :2] / pix_N3[:, 2:], cam_N3[:, 2]


def _backproject(depth_HW: np.ndarray, K_33: np.ndarray, c2w_44: np.ndarray) -> np.ndarray:
    """World points (H*W, 3) of every pixel centre at its depth along the optical axis."""
    v_HW, u_HW = np.mgrid[0:depth_HW.shape[0], 0:depth_HW.shape[1]]
    pix_R3 = np.stack([u_HW, v_HW, np.ones_like(u_HW)], axis=-1).reshape(-1, 3).astype(float)
    cam_R3 = pix_R3 @ np.linalg.inv(K_33).T * depth_HW.reshape(-1, 1)
    return cam_R3 @ c2w_44[:3, :3].T + c2w_44[:3, 3]


def test_same_seed_gives_identical_bytes_and_another_seed_another_scene():
    first = render_bundled_scene("object", "ring", num_views=3, size=48, seed=3)
    again = render_bundled_scene("object", "ring", num_views=3, size=48, seed=3)
    other = render_bundled_scene("object", "ring", num_views=3, size=48, seed=4)
    assert first.images_NHW3.tobytes() == again.images_NHW3.tobytes()
    assert np.array_equal(first.masks_NHW, again.masks_NHW)
    assert np.array_equal(first.c2w_N44, again.c2w_N44)
    assert not np.array_equal(first.masks_NHW, other.masks_NHW)
    room_a = render_bundled_scene("room", "ring", num_views=2, size=48, seed=3).images_NHW3
    room_b = render_bundled_scene("room", "ring", num_views=2, size=48, seed=4).images_NHW3
    assert np.abs(room_a.astype(int) - room_b).mean() > 20  # measured ~47: a different scene


@pytest.mark.parametrize("variant", ["room", "object"])
@pytest.mark.parametrize("path", ["ring", "sphere", "arc"])
def test_shapes_types_and_intrinsics(variant, path):
    size, views = 40, 5
    image_set = render_bundled_scene(variant, path, num_views=views, size=size, seed=1)
    assert image_set.names == [f"view_{i:03d}.png" for i in range(views)]
    assert image_set.images_NHW3.shape == (views, size, size, 3)
    assert image_set.images_NHW3.dtype == np.uint8
    assert image_set.K_N33.dtype == np.float64 and image_set.c2w_N44.dtype == np.float64
    focal = 0.5 * size / np.tan(np.radians(FOV_DEG) / 2)
    assert 50.0 <= FOV_DEG <= 60.0
    for K_33 in image_set.K_N33:
        np.testing.assert_allclose(K_33, [[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2], [0, 0, 1]])
    R_N33 = image_set.c2w_N44[:, :3, :3]
    np.testing.assert_allclose(R_N33 @ R_N33.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R_N33.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R_N33), 1.0)
    np.testing.assert_allclose(image_set.c2w_N44[:, 3], np.tile([0, 0, 0, 1.0], (views, 1)))
    assert image_set.capture == ("forward" if path == "arc" else "360")
    if variant == "room":
        assert image_set.masks_NHW is None
    else:
        assert image_set.masks_NHW.dtype == bool and image_set.masks_NHW.shape == (views, size, size)


@pytest.mark.parametrize("kwargs", [dict(variant="kitchen"), dict(path="line"), dict(num_views=0),
                                    dict(size=4)])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        render_bundled_scene(**kwargs)


def _nearest_pairs(image_set, firsts: list[int]) -> list[tuple[int, int]]:
    centres_N3 = image_set.c2w_N44[:, :3, 3]
    distances_NN = np.linalg.norm(centres_N3[:, None] - centres_N3[None], axis=-1)
    np.fill_diagonal(distances_NN, np.inf)
    return [(i, int(distances_NN[i].argmin())) for i in firsts]


@pytest.mark.slow  # 1-4 s each: SIFT needs views of ~192 px, and close neighbours
@pytest.mark.parametrize("path, views, min_matches", [("ring", 16, 100), ("sphere", 16, 15), ("arc", 6, 100)])
def test_sift_matches_follow_the_epipolar_geometry_of_the_poses(path, views, min_matches):
    image_set = render_bundled_scene("room", path, num_views=views, size=192, seed=0)
    K_N33, c2w_N44 = image_set.K_N33, image_set.c2w_N44
    # A common convention bug, poses given as world-to-camera, is what the check must catch.
    w2c_N44 = np.linalg.inv(c2w_N44)
    for i, j in _nearest_pairs(image_set, [0, views // 3, 2 * views // 3, views - 1]):
        pts_i, pts_j = sift_matches(image_set.images_NHW3[i], image_set.images_NHW3[j])
        # measured 180-220 (ring), 25-120 (sphere), 350-400 (arc)
        assert len(pts_i) >= min_matches, (i, j, len(pts_i))
        F_33 = fundamental_from_poses(K_N33[i], K_N33[j], c2w_N44[i], c2w_N44[j])
        error_px = np.median(sampson_errors_px(F_33, pts_i, pts_j))
        assert error_px < 1.0, (i, j, error_px)  # measured 0.07-0.18
        wrong_F_33 = fundamental_from_poses(K_N33[i], K_N33[j], w2c_N44[i], w2c_N44[j])
        assert np.median(sampson_errors_px(wrong_F_33, pts_i, pts_j)) > 2.0  # measured 3-50


@pytest.mark.parametrize("variant", ["room", "object"])
@pytest.mark.parametrize("path", ["ring", "sphere", "arc"])
def test_scene_centre_is_in_front_of_every_camera_and_inside_its_image(variant, path):
    image_set = render_bundled_scene(variant, path, num_views=24, size=16, seed=2)
    for point_3 in (np.zeros(3), INSIDE_MAIN_OBJECT_3, np.array([0.0, 0.0, 0.4])):
        uv_N2, z_N = _project(image_set, point_3)
        assert (z_N > 0).all()
        assert ((uv_N2 > 0) & (uv_N2 < 15)).all(), uv_N2


def test_object_variant_masks_cover_the_object_on_white():
    args = dict(variant="object", path="sphere", num_views=6, size=96, seed=1)
    image_set = render_bundled_scene(**args)
    masks_NHW, images_NHW3 = image_set.masks_NHW, image_set.images_NHW3
    assert ((masks_NHW.mean(axis=(1, 2)) > 0.03) & (masks_NHW.mean(axis=(1, 2)) < 0.8)).all()
    # Pixels more than one pixel away from the mask are pure white background ...
    padded_NHW = np.pad(masks_NHW, ((0, 0), (1, 1), (1, 1)))
    near_NHW = np.zeros_like(masks_NHW)
    for dy in range(3):
        for dx in range(3):
            near_NHW |= padded_NHW[:, dy:dy + 96, dx:dx + 96]
    assert (images_NHW3[~near_NHW] == 255).all()
    # ... masked pixels are object, not white ...
    assert (images_NHW3[masks_NHW] == 255).all(axis=-1).mean() < 0.01
    # ... the mask is where the ground-truth depth hits a surface ...
    hit_NHW = np.isfinite(render_bundled_depth(**args))
    assert (hit_NHW & masks_NHW).sum() / (hit_NHW | masks_NHW).sum() > 0.95  # measured 0.98
    # ... and a point inside the main object projects into the mask in every view.
    uv_N2, _ = _project(image_set, INSIDE_MAIN_OBJECT_3)
    u_N, v_N = np.round(uv_N2).astype(int).T
    assert masks_NHW[np.arange(len(image_set)), v_N, u_N].all()


def test_depth_backprojects_onto_the_room_and_reprojects_colours():
    args = dict(variant="room", path="ring", num_views=6, size=96, seed=0)
    image_set, depth_NHW = render_bundled_scene(**args), render_bundled_depth(**args)
    assert np.isfinite(depth_NHW).all() and (depth_NHW > 0).all()
    for i in range(len(image_set)):
        points_R3 = _backproject(depth_NHW[i], image_set.K_N33[i], image_set.c2w_N44[i])
        # Away from the objects every pixel sees the room box: floor, walls or ceiling. Wrong
        # intrinsics, pose or depth conventions put these points in mid-air.
        far_R = np.hypot(points_R3[:, 0], points_R3[:, 1]) > 2.0
        off_box_R = np.minimum.reduce([np.abs(points_R3[:, 2]), np.abs(points_R3[:, 2] - ROOM_HEIGHT),
                                       np.abs(np.abs(points_R3[:, 0]) - ROOM_HALF_XY),
                                       np.abs(np.abs(points_R3[:, 1]) - ROOM_HALF_XY)])
        assert far_R.mean() > 0.2 and off_box_R[far_R].max() < 1e-6
        # Image up is world up: the top row (2.5 degrees above the horizon) never sees the floor,
        # the bottom rows mostly do.
        on_floor_HW = (np.abs(points_R3[:, 2]) < 1e-6).reshape(96, 96)
        assert not on_floor_HW[0].any() and on_floor_HW[-24:].mean() > 0.3
    # Colours seen by view 0 reappear where its depth and the poses send them in view 1.
    points_R3 = _backproject(depth_NHW[0], image_set.K_N33[0], image_set.c2w_N44[0])
    w2c_44 = np.linalg.inv(image_set.c2w_N44[1])
    cam_R3 = points_R3 @ w2c_44[:3, :3].T + w2c_44[:3, 3]
    pix_R3 = cam_R3 @ image_set.K_N33[1].T
    u_R, v_R = np.round(pix_R3[:, :2] / pix_R3[:, 2:]).astype(int).T
    inside_R = (u_R >= 0) & (u_R < 96) & (v_R >= 0) & (v_R < 96)
    visible_R = inside_R.copy()
    depth_seen_I = depth_NHW[1][v_R[inside_R], u_R[inside_R]]  # not occluded in view 1:
    visible_R[inside_R] = np.abs(depth_seen_I - cam_R3[inside_R, 2]) < 0.01 * cam_R3[inside_R, 2]
    assert visible_R.mean() > 0.3
    colours_a_V3 = image_set.images_NHW3[0].reshape(-1, 3)[visible_R].astype(int)
    colours_b_V3 = image_set.images_NHW3[1][v_R[visible_R], u_R[visible_R]].astype(int)
    unwarped_V3 = image_set.images_NHW3[1].reshape(-1, 3)[visible_R].astype(int)
    assert np.median(np.abs(colours_a_V3 - colours_b_V3).max(axis=1)) < 10  # measured 0
    assert np.median(np.abs(colours_a_V3 - unwarped_V3).max(axis=1)) > 30


def test_arc_views_face_one_way():
    arc = render_bundled_scene("room", "arc", num_views=9, size=16)
    axes_N3 = arc.c2w_N44[:, :3, 2]
    angles_deg = np.degrees(np.arccos(np.clip(axes_N3 @ axes_N3.T, -1.0, 1.0)))
    assert angles_deg.max() < 25.0  # measured 18
    centres_N3 = arc.c2w_N44[:, :3, 3]
    azimuths_deg = np.degrees(np.arctan2(centres_N3[:, 1], centres_N3[:, 0]))
    assert 30.0 <= np.ptp(azimuths_deg) <= 40.0


@pytest.mark.parametrize("path, max_gap_deg, pitch_range_deg",
                         [("ring", 30.0, (25.0, 25.0)), ("sphere", 90.0, (10.0, 70.0))])
def test_ring_and_sphere_views_go_all_around_looking_down(path, max_gap_deg, pitch_range_deg):
    image_set = render_bundled_scene("room", path, num_views=12, size=16)
    c2w_N44 = image_set.c2w_N44
    azimuths_deg = np.sort(np.degrees(np.arctan2(c2w_N44[:, 1, 3], c2w_N44[:, 0, 3])))
    gaps_deg = np.diff(np.r_[azimuths_deg, azimuths_deg[0] + 360.0])
    assert gaps_deg.max() <= max_gap_deg + 1e-9, gaps_deg
    # Image x is horizontal, image y points down: world +z is "up" in every image.
    np.testing.assert_allclose(c2w_N44[:, 2, 0], 0.0, atol=1e-12)
    assert (c2w_N44[:, 2, 1] < 0).all()
    pitch_deg = np.degrees(np.arcsin(-c2w_N44[:, 2, 2]))  # how far each camera looks down
    low, high = pitch_range_deg
    assert low - 1.0 <= pitch_deg.min() and pitch_deg.max() <= high + 1.0
    assert pitch_deg.max() - pitch_deg.min() >= 0.6 * (high - low)
