"""Keyframes the node keeps of a sparse capture and of a 30 Hz video, with and without the
viewpoint cue (core.keyframes; baselines.feature_tracking).

    .venv/bin/python bench/keyframes.py                 # temple ring + bundled room at 30 Hz

Streams, at the node's working size (128 px, as nvs_node hands frames to its selector):
- middlebury_temple_ring (../shared/data): 16 views of an object on black, 22.5 degrees apart
  (one of them the same view as another);
- the bundled room, 360 frames on its ring, 1 degree apart: 12 s of a 30 Hz camera turning at
  30 degrees per second.
For each, the node's keyframe rule (KeyframeConfig defaults, no capacity limit, so the count is
the rule's own) with the cue and without it (min_untracked 0): keyframes kept, the largest gap
between consecutive keyframes (in frames; the room's are degrees) and the selector's time per
frame. Prints a table and writes bench/results/keyframes/keyframes.json.
"""

import json
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np

from nvs_ros.baselines.feature_tracking import CornerTracking
from nvs_ros.core.keyframes import KeyframeConfig, KeyframeSelector
from nvs_ros.io.bundled_scene import render_bundled_scene
from nvs_ros.io.datasets import load_image_set

ROOT = Path(__file__).resolve().parents[1]
TEMPLE = ROOT.parent / "shared" / "data" / "middlebury_temple_ring"
SIZE = 128


def select(frames: np.ndarray, config: KeyframeConfig) -> dict:
    selector = KeyframeSelector(replace(config, capacity=len(frames) + 1), CornerTracking())
    started = time.perf_counter()
    kept = [i for i, frame in enumerate(frames) if selector.consider(i, frame).accepted]
    per_frame_ms = 1e3 * (time.perf_counter() - started) / len(frames)
    gaps = np.diff([*kept, kept[0] + len(frames)])  # a ring: the last gap closes it
    return {"frames": len(frames), "keyframes": len(kept), "kept": kept, "largest_gap": int(gaps.max()),
            "ms_per_frame": round(per_frame_ms, 2)}


def main() -> None:
    streams = {}
    if TEMPLE.is_dir():
        streams["middlebury_temple_ring"] = load_image_set(TEMPLE, max_side=SIZE).images_NHW3
    else:
        print(f"{TEMPLE} is absent: the temple ring is left out")
    streams["bundled room, 30 Hz (1 deg/frame)"] = render_bundled_scene("room", "ring", num_views=360,
                                                                        size=SIZE).images_NHW3
    results = {"date": date.today().isoformat(), "size": SIZE, "streams": {}}
    print(f"{'stream':36s} {'rule':22s} {'keyframes':>10s} {'largest gap':>12s} {'ms/frame':>9s}")
    for name, frames in streams.items():
        for rule, config in [("thumbnails only", KeyframeConfig(min_untracked=0.0)),
                             ("thumbnails + viewpoint", KeyframeConfig())]:
            row = select(frames, config)
            results["streams"].setdefault(name, {})[rule] = row
            print(f"{name:36s} {rule:22s} {row['keyframes']:>4d} / {row['frames']:<4d} {row['largest_gap']:>12d} "
                  f"{row['ms_per_frame']:>9.2f}")
    out = ROOT / "bench" / "results" / "keyframes" / "keyframes.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
