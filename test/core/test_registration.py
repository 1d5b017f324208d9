"""Registration on the tiny trained scene: a training view registers where the scene put it, a
prior pose races with the candidates, new frames of the scene are registered and a foreign one
is rejected."""

import numpy as np
import torch
from ring_scene import HELD_OUT, angle_between, training_image, turned_about_the_centre

from nvs_ros.core.metrics import rotation_angle_deg
from nvs_ros.core.scene import Scene
from nvs_ros.core.sim3 import umeyama_sim3
from nvs_ros.io.datasets import load_image_set


def test_a_training_view_registers_where_the_scene_put_it(ring_scene: Scene, ring_views) -> None:
    """Encoder pass + anchor search + refinement find a view's own pose again (the scene's
    estimate, so this does not depend on how well the tiny scene matches the ground truth)."""
    index = [2, 9]
    registration = ring_scene.register(np.stack([training_image(ring_scene, i) for i in index]), ring_scene.K_N33[index])
    errors = angle_between(registration.c2w_B44, torch.from_numpy(ring_scene.c2w_N44[index]).float())
    assert (errors < 5.0).all(), errors
    # confidences measured above 0.9 (torch's and MKL's default kernels; ATEN_CPU_CAPABILITY=default
    # with MKL's AVX kernels: 1.0 and 0.895); accepted takes 0.5
    assert registration.accepted_B.all() and (registration.confidence_B > 0.8).all()


def test_a_prior_pose_races_with_the_candidates_and_wins_only_where_it_fits(ring_scene: Scene) -> None:
    """Priors (odometry) join the refined candidates: the right one is kept (it is no encoder
    hypothesis: probability 0), one turned 90 degrees along the ring loses to the images, and
    a NaN row means no prior."""
    index = [2, 9, 5]
    truth = torch.from_numpy(ring_scene.c2w_N44[index]).float()
    priors = truth.clone().double().numpy()
    priors[1] = turned_about_the_centre(truth[1:2], 90.0, (0.0, 0.0, 1.0))[0].double().numpy()
    priors[2] = np.nan
    registration = ring_scene.register(np.stack([training_image(ring_scene, i) for i in index]), ring_scene.K_N33[index],
                                  prior_c2w_N44=priors)
    errors = angle_between(registration.c2w_B44, truth)
    # Measured (degrees, views 2, 9, 5): 0, 0, 0 with torch's and MKL's default kernels; 0, 1.3,
    # 5.8 with MKL_ENABLE_INSTRUCTIONS=AVX ATEN_CPU_CAPABILITY=default. 10 is twice the worst
    # seen and far from the 90 degrees of the wrong prior.
    assert (errors < 10.0).all() and registration.accepted_B.all(), errors
    assert float(registration.probability_B[0]) == 0.0  # the prior won
    assert angle_between(registration.c2w_B44[1:2], torch.from_numpy(priors[1:2]).float())[0] > 45.0


def test_new_frames_are_registered_and_a_foreign_one_rejected(ring_scene: Scene, ring_views) -> None:
    """Measured: held-out view 4 registers at ~26 dB (training views 30 dB), contrast 0.84-0.85,
    ~5 degrees from the ground truth after aligning the scene's cameras to it (the tiny scene's
    own poses are 2-13 degrees off); view 13, halfway between two training views of this
    16-view, 32 px scene, at 18-20 dB, contrast 0.34-0.63 and 18-21 degrees: accepted or not
    depending on the run. Frames of the room: 7-8 dB, contrast < 0.1."""
    registration = ring_scene.register(ring_views.images_NHW3[HELD_OUT], ring_views.K_N33[HELD_OUT])
    accepted = registration.accepted_B.numpy()
    assert accepted.any(), registration.confidence_B
    train = [i for i in range(len(ring_views)) if i not in HELD_OUT]
    sim3 = umeyama_sim3(ring_scene.c2w_N44[:, :3, 3], ring_views.c2w_N44[train, :3, 3])
    aligned = sim3.apply_c2w(registration.c2w_B44.double().numpy())
    errors = rotation_angle_deg(np.swapaxes(aligned[:, :3, :3], 1, 2) @ ring_views.c2w_N44[HELD_OUT, :3, :3])
    assert (errors[accepted] < 35.0).all(), errors  # a wrong anchor or a flip would be 45-180 degrees off

    foreign = load_image_set("bundled", max_side=32, views=2)  # the textured room
    rejected = ring_scene.register(foreign.images_NHW3, foreign.K_N33)
    assert not rejected.accepted_B.any(), rejected.confidence_B
    assert float(rejected.confidence_B.max()) < float(registration.confidence_B[accepted].min())
