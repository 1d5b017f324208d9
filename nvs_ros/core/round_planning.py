"""When a live scene (core.live_scene) runs a full round, and how: what the first round waits for,
when the next is due, where its poses start and the trainer settings it runs with."""

import math
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from nvs_ros.core.image_set import ImageSet
from nvs_ros.core.live_scene_config import MIN_PRIOR_BASELINE, PRIOR_SOURCE, LiveSceneConfig
from nvs_ros.core.trainer_config import TrainerConfig

ChainedPoses = Callable[[ImageSet], np.ndarray | None]
"""Camera-to-world of the keyframes chained by features (NaN rows: not placed), or None where the
chain places too few (baselines.feature_chaining.chained_keyframe_poses)."""


def waiting_for(keyframes: int, ready: bool, last_keyframe_at: float | None, config: LiveSceneConfig,
                chain_placed_too_few: bool = False) -> str:
    """What the first round waits for, in words; empty when it may start (or has).
    `last_keyframe_at`: time.monotonic() when the newest keyframe came; `chain_placed_too_few`:
    the feature chain ran on exactly these keyframes and placed too few of them."""
    count = keyframes
    if ready:
        return ""
    if count >= config.min_keyframes:
        return _waiting_for_the_chain(count, last_keyframe_at, config) if chain_placed_too_few else ""
    wait = f"{config.min_keyframes - count} more keyframe(s) ({config.min_keyframes})"
    if config.idle_round_s is None:
        return wait
    if count < config.min_round_keyframes:
        return f"{wait}, or {config.min_round_keyframes - count} more and {config.idle_round_s:g} s without a new one"
    idle_s = time.monotonic() - last_keyframe_at
    if idle_s >= config.idle_round_s:
        return _waiting_for_the_chain(count, last_keyframe_at, config) if chain_placed_too_few else ""
    return f"{wait}, or {config.idle_round_s - idle_s:.1f} s more without a new one"


def _waiting_for_the_chain(keyframes: int, last_keyframe_at: float, config: LiveSceneConfig) -> str:
    """A first round whose feature chain placed too few of the keyframes would learn the poses
    from the images; while keyframes still come it waits for more instead: until
    `regrow_factor` times `min_keyframes` are in (when a new round would start anyway) or
    `idle_round_s` passes without a new one. Half a ring does not chain where the whole ring
    does (the temple replayed: none of its first 8 keyframes, 15 of 15)."""
    if config.idle_round_s is None:
        return ""
    enough = math.ceil(config.regrow_factor * config.min_keyframes)
    idle_s = time.monotonic() - last_keyframe_at
    if keyframes >= enough or idle_s >= config.idle_round_s:
        return ""
    return (f"{enough - keyframes} more keyframe(s): the feature chain placed too few of {keyframes}; "
            f"or {config.idle_round_s - idle_s:.1f} s more without a new one")


def regrown(keyframes: int, keyframes_at_last_round: int, config: LiveSceneConfig) -> bool:
    """Whether the keyframes have grown by `regrow_factor` since the last full round."""
    return keyframes >= config.regrow_factor * keyframes_at_last_round


def chain_left_too_many(pose_start: str | None, unplaced_since_round: int, keyframes_at_last_round: int,
                        config: LiveSceneConfig) -> bool:
    """Whether, after a round started from chained features, the keyframes registration could not
    place since reach `unplaced_fraction` of the round's (and two)."""
    return pose_start == "features" and \
        unplaced_since_round >= max(2, config.unplaced_fraction * keyframes_at_last_round)


def round_config(config: LiveSceneConfig, rounds: int, pose_start: str) -> TrainerConfig:
    """The trainer settings of a full round (the `rounds`-th so far), by time or by steps; a round
    started from chained features keeps those poses."""
    by_steps = config.round_iterations is not None
    trainer = replace(config.trainer, time_budget_s=None if by_steps else config.round_budget_s,
                      iterations=config.round_iterations, device=config.device, seed=config.seed + rounds)
    return trainer.keeping_initial_poses() if pose_start == "features" else trainer


def round_start_poses(priors_N44: np.ndarray, chain: Callable[[], np.ndarray | None] | None,
                  config: LiveSceneConfig) -> tuple[np.ndarray | None, str]:
    """The poses a full round starts from (None: learn them) and where they come from, given the
    keyframes' priors (N, 4, 4; NaN rows: none) and their feature chain (run only without usable
    priors; None: no chain)."""
    usable_N44 = usable_priors(priors_N44, config)
    if usable_N44 is not None:
        return usable_N44, PRIOR_SOURCE
    chained_N44 = None if chain is None else chain()
    return (chained_N44, "features") if chained_N44 is not None else (None, "learnt")


def usable_priors(priors_N44: np.ndarray, config: LiveSceneConfig) -> np.ndarray | None:
    """The keyframes' priors, or None: too few keyframes have one, or their centres do not
    spread (no scale to start from)."""
    if not config.priors_as_initial_poses:
        return None
    known_N = np.isfinite(priors_N44).all(axis=(1, 2))
    if known_N.sum() < max(2, math.ceil(len(known_N) / 2)):
        return None
    centres_M3 = priors_N44[known_N, :3, 3]
    if np.linalg.norm(centres_M3 - centres_M3.mean(axis=0), axis=1).max() < MIN_PRIOR_BASELINE:
        return None
    return priors_N44
