"""A trained scene: the engine with its cameras, what registers new frames and renders views
after training, and what a checkpoint holds (weights, poses, intrinsics, config).

`state_dict()` holds tensors and plain Python values only, so `torch.load(weights_only=True)`
reads it back; `Scene.from_state_dict` rebuilds the engine from the stored config (the field
takes the stored grid's resolution, whatever coarse-to-fine stage it was saved at).
"""

import dataclasses
import typing
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nvs_ros.core import cameras
from nvs_ros.core.appearance import most_alike, thumbnails
from nvs_ros.core.diffusion import GenerativeLifting
from nvs_ros.core.errors import InputError
from nvs_ros.core.sim3 import Sim3
from nvs_ros.core.pose_prior import PriorAlignment
from nvs_ros.core.refine_config import RefineConfig
from nvs_ros.core.registration import EncoderPass, Registration, register_frames
from nvs_ros.core.render_compare import view_residuals
from nvs_ros.core.rendering import RenderOutput
from nvs_ros.core.training_run import build_engine
from nvs_ros.core.trainer_config import TrainerConfig

STATE_VERSION = 1


@dataclass
class Scene:
    """Engine + the cameras it was trained with (OpenCV camera-to-world, the engine's gauge)."""

    engine: GenerativeLifting
    config: TrainerConfig
    """What the engine was built and trained with."""
    names: list[str]
    c2w_N44: np.ndarray
    K_N33: np.ndarray
    """Intrinsics at `image_size`."""
    image_size: tuple[int, int]
    """(width, height) of the training images."""
    reference_psnr: float
    """Median PSNR of the training views rendered from their poses at the registration size:
    what a frame that belongs to the scene reaches."""
    refine: RefineConfig = dataclasses.field(default_factory=RefineConfig)
    """How frames are registered (a checkpoint keeps only the size `reference_psnr` was measured
    at: the rest are settings of the caller, not of the scene)."""
    output_frame: Sim3 | None = None
    """Maps the engine's gauge into the frame of poses the scene was given by a declared source
    (odometry, a poses file: core.pose_prior), in which its products are published; None: the
    gauge itself (monocular, arbitrary scale). `c2w_N44`, `register` and `render` stay in the gauge."""
    scale_source: str | None = None
    """What fixes the output frame's scale ("odometry", "poses file"); None: arbitrary."""
    thumbnails_ND: np.ndarray | None = None
    """The training views as tiny images (core.appearance.thumbnails), rows as `names`: a new
    frame's registration also starts from the poses of those it looks most like (None: scenes
    saved before they were kept)."""
    encoder_pass: EncoderPass | None = None
    """What runs the encoder when frames are registered (nvs_ros.runtime; None: the engine's
    torch module). Not saved: a caller's choice, like `refine`."""

    @classmethod
    def from_training(cls, engine: GenerativeLifting, config: TrainerConfig, names: list[str], images_NHW3: np.ndarray,
                      K_N33: np.ndarray, c2w_N44: np.ndarray, refine: RefineConfig = RefineConfig()) -> "Scene":
        """The scene of a finished training run (images uint8 RGB, all the same size)."""
        h, w = images_NHW3.shape[1:3]
        device = engine.field.grid.device
        images, K = _as_views(images_NHW3, K_N33, refine.size, device)
        residual_N = view_residuals(engine, images, K, torch.as_tensor(c2w_N44, dtype=torch.float32, device=device))
        reference = float(torch.median(-10.0 * torch.log10(residual_N.clamp_min(1e-10))))
        return cls(engine=engine, config=config, names=list(names), c2w_N44=np.asarray(c2w_N44, dtype=np.float64),
                   K_N33=np.asarray(K_N33, dtype=np.float64), image_size=(w, h), reference_psnr=reference,
                   refine=refine, thumbnails_ND=thumbnails(images_NHW3))

    def register(self, images_NHW3: np.ndarray, K_N33: np.ndarray,
                 prior_c2w_N44: np.ndarray | None = None) -> Registration:
        """Poses of new frames (uint8 RGB, one size; intrinsics at that size) with confidences;
        `prior_c2w_N44`: a prior pose per frame in the output frame (NaN rows: none), tried
        next to the encoder's candidates."""
        device = self.engine.field.grid.device
        images = _image_tensor(images_NHW3, device)
        K = torch.as_tensor(K_N33, dtype=torch.float32, device=device)
        prior = None if prior_c2w_N44 is None else torch.as_tensor(self.from_output(prior_c2w_N44),
                                                                    dtype=torch.float32, device=device)
        return register_frames(self.engine, images, K, self.reference_psnr, self.refine, prior,
                               self._retrieved(images_NHW3), self.encoder_pass)

    def _retrieved(self, images_NHW3: np.ndarray) -> torch.Tensor | None:
        """(B, R, 4, 4) gauge poses of the training views each frame looks most like."""
        if self.thumbnails_ND is None or self.refine.retrieved_candidates == 0:
            return None
        nearest_BR = most_alike(self.thumbnails_ND, thumbnails(images_NHW3), self.refine.retrieved_candidates)
        return torch.as_tensor(self.c2w_N44[nearest_BR], dtype=torch.float32, device=self.engine.field.grid.device)

    def render(self, K_33: np.ndarray, c2w_44: np.ndarray, width: int, height: int) -> RenderOutput:
        """Colour, depth and opacity seen from any pose (intrinsics at width x height)."""
        device = self.engine.field.grid.device
        return self.engine.render_full(torch.as_tensor(K_33, dtype=torch.float32, device=device),
                                       torch.as_tensor(c2w_44, dtype=torch.float32, device=device), height, width)

    def use_frame(self, alignment: PriorAlignment | None) -> None:
        """Publish in the frame of a declared source's poses (None: back to the gauge)."""
        self.output_frame = None if alignment is None else alignment.to_prior
        self.scale_source = None if alignment is None else alignment.scale_source

    def points_to_output(self, points_P3: np.ndarray) -> np.ndarray:
        """Gauge points (P, 3) in the output frame."""
        return points_P3 if self.output_frame is None else self.output_frame.apply_points(points_P3)

    def to_output(self, c2w_N44: np.ndarray) -> np.ndarray:
        """Gauge camera-to-world poses (..., 4, 4) in the output frame."""
        return c2w_N44 if self.output_frame is None else self.output_frame.apply_c2w(c2w_N44)

    def from_output(self, c2w_N44: np.ndarray) -> np.ndarray:
        """Output-frame camera-to-world poses (..., 4, 4) in the gauge (to render or compare)."""
        return c2w_N44 if self.output_frame is None else self.output_frame.inverse().apply_c2w(c2w_N44)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        return {"version": STATE_VERSION, "engine": {k: v.cpu() for k, v in self.engine.state_dict().items()},
                "config": dataclasses.asdict(self.config), "reference_size": self.refine.size,
                "radius": getattr(self.engine.refinement, "radius", 0.0), "names": list(self.names),
                "c2w_N44": torch.from_numpy(self.c2w_N44), "K_N33": torch.from_numpy(self.K_N33),
                "image_size": list(self.image_size), "reference_psnr": self.reference_psnr,
                "output_frame": None if self.output_frame is None else {
                    "scale": self.output_frame.scale, "R_33": torch.from_numpy(self.output_frame.R_33),
                    "t_3": torch.from_numpy(self.output_frame.t_3)},
                "scale_source": self.scale_source,
                "thumbnails_ND": None if self.thumbnails_ND is None else torch.from_numpy(self.thumbnails_ND)}

    @classmethod
    def from_state_dict(cls, state: dict, device: str = "cpu") -> "Scene":
        """Rebuild a saved scene on `device`."""
        if state.get("version") != STATE_VERSION:
            raise InputError(f"scene state version {state.get('version')!r}, expected {STATE_VERSION}")
        config = dataclass_from_dict(TrainerConfig, state["config"])
        engine = build_engine(config, len(state["names"]), float(state["radius"]))
        engine.load_state_dict(state["engine"])
        engine = engine.to(device).eval()
        return cls(engine=engine, config=config, names=list(state["names"]),
                   c2w_N44=state["c2w_N44"].double().numpy(), K_N33=state["K_N33"].double().numpy(),
                   image_size=tuple(state["image_size"]), reference_psnr=float(state["reference_psnr"]),
                   refine=RefineConfig(size=int(state["reference_size"])),
                   output_frame=_sim3_from_state(state.get("output_frame")), scale_source=state.get("scale_source"),
                   thumbnails_ND=_array_from_state(state.get("thumbnails_ND")))


def _array_from_state(value: Tensor | None) -> np.ndarray | None:
    return None if value is None else value.numpy()


def _sim3_from_state(state: dict | None) -> Sim3 | None:
    if state is None:
        return None
    return Sim3(float(state["scale"]), state["R_33"].double().numpy(), state["t_3"].double().numpy())


def dataclass_from_dict(cls: type, values: dict) -> typing.Any:
    """Inverse of dataclasses.asdict for nested frozen configs (lists back to tuples)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        kwargs[f.name] = _typed(hints[f.name], values[f.name])
    return cls(**kwargs)


def _typed(hint: typing.Any, value: typing.Any) -> typing.Any:
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return dataclass_from_dict(hint, value)
    if isinstance(value, list):
        return tuple(_typed(typing.Any, v) for v in value)
    return value


def _as_views(images_NHW3: np.ndarray, K_N33: np.ndarray, size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    return cameras.resize_views(_image_tensor(images_NHW3, device),
                                torch.as_tensor(K_N33, dtype=torch.float32, device=device), size)


def _image_tensor(images_NHW3: np.ndarray, device: torch.device) -> Tensor:
    """uint8 RGB images as float (N, H, W, 3) in [0, 1] on `device`."""
    return torch.from_numpy(np.ascontiguousarray(images_NHW3)).float().div(255.0).to(device)
