"""Typed model configuration, saved as JSON with every checkpoint and loaded from YAML presets
(:mod:`vlajepa.presets`).

Every config is a frozen dataclass, so a model built from a config cannot drift from what is written next to
its weights. ``to_dict``/``from_dict`` round-trip through plain JSON types; ``from_dict`` rejects unknown
fields (a typo in a preset must not be silently ignored) and, unless ``partial=True``, missing ones (a
checkpoint's config must be complete). YAML presets hold the model config under a top-level ``model:`` key
(other sections belong to other parts of the program) and may be partial: absent fields take the defaults
below.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# Field metadata of a field added after configs were first saved: a saved config without it predates it and
# behaved as its default does, so it loads with the default (any other missing field is an error).
ADDED_LATER = {"added_later": True}


class ConfigError(ValueError):
    """A config file or dict does not describe a valid config; the message names the field at fault."""


class JsonConfig:
    """JSON/YAML (de)serialization shared by the top-level configs (mixed into frozen dataclasses).

    ``YAML_SECTION`` names the preset section a subclass reads; ``YAML_SECTION_REQUIRED`` says whether a preset
    without that section is an error or means "all defaults". Every error names the file and the dotted field.
    """

    YAML_SECTION: typing.ClassVar[str]
    YAML_SECTION_REQUIRED: typing.ClassVar[bool] = True

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, partial: bool = False) -> typing.Self:
        """Build from ``to_dict`` output; ``partial`` lets absent fields take their defaults."""
        return _build(cls, data, "", partial)

    def save_json(self, path: str | Path) -> None:
        from vlajepa.io_utils import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load_json(cls, path: str | Path) -> typing.Self:
        path = Path(path)
        try:
            return cls.from_dict(read_json_file(path))
        except ConfigError as err:
            message = str(err)
            raise ConfigError(message if message.startswith(str(path)) else f"{path}: {message}") from err

    @classmethod
    def from_yaml(cls, path: str | Path) -> typing.Self:
        """Load this config's section of a YAML preset (partial: absent fields take the defaults)."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ConfigError(f"{path}: config file not found") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from err
        section = data.get(cls.YAML_SECTION) if isinstance(data, dict) else None
        if section is None and not cls.YAML_SECTION_REQUIRED:
            return cls()
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: expected a mapping with a '{cls.YAML_SECTION}:' section")
        try:
            return cls.from_dict(section, partial=True)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from err

    def replace(self, **changes: Any) -> typing.Self:
        """A copy with some top-level fields changed (sub-configs are replaced whole)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class VisionConfig:
    """Small ViT that turns one RGB frame into patch tokens."""

    patch_size: int = 12  # side of a square patch in pixels; the image size must be a multiple of it
    dim: int = 128  # token width
    # patch: one linear projection per patch (plain ViT); conv: a stack of non-overlapping convolutions (kernel =
    # stride, the prime factors of patch_size) that still sees each patch alone but trains better from little data;
    # cnn: overlapping strided convolutions with residual blocks (the same token grid, but each token also sees its
    # neighbours' pixels: translation-equivariant features for small objects on patch borders). Not for masked
    # pretraining (`pretrain-encoder`), where overlap would leak dropped patches into kept tokens.
    stem: Literal["patch", "conv", "cnn"] = "patch"
    depth: int = 4  # transformer blocks
    heads: int = 4  # attention heads; must divide dim
    mlp_ratio: float = 4.0  # MLP hidden width as a multiple of dim


@dataclass(frozen=True)
class LanguageConfig:
    """Instruction encoder: a trainable toy encoder for tests or the frozen all-MiniLM-L6-v2."""

    kind: Literal["tiny", "minilm"] = "minilm"  # tiny: trainable hashed-word encoder; minilm: frozen MiniLM
    dim: int = 64  # tiny only: token width (minilm's width is fixed by the checkpoint, 384)
    depth: int = 1  # tiny only: transformer blocks
    heads: int = 4  # tiny only: attention heads; must divide dim
    vocab_size: int = 4096  # tiny only: hash buckets for words (collisions are harmless at this size)
    max_tokens: int = 32  # tokens kept per instruction (words for tiny, word pieces for minilm)
    model_dir: str | None = None  # minilm only: local transformers BERT folder; None = the PyPI package


@dataclass(frozen=True)
class StudentConfig:
    """Fusion transformer over instruction, current-image and state tokens plus the learned action queries."""

    dim: int = 128  # token width
    depth: int = 4  # transformer blocks
    heads: int = 4  # attention heads; must divide dim
    mlp_ratio: float = 4.0  # MLP hidden width as a multiple of dim
    use_state: bool = True  # add a state token (a learned placeholder stands in when a batch has none)
    # spatial-softmax keypoint tokens per view (vlajepa.models.keypoints), read from the current image beside the
    # patch tokens; 0 turns them off. Student only: the target encoder and masked pretraining never see them.
    keypoints: int = field(default=0, metadata=ADDED_LATER)
    # one more instruction token: the masked mean of the instruction's token features, L2-normalized (the
    # sentence embedding MiniLM was trained to produce; paraphrases land close together), beside the token features
    sentence_token: bool = field(default=False, metadata=ADDED_LATER)


@dataclass(frozen=True)
class TargetConfig:
    """Target encoder that turns each future frame into the latents the world model predicts (no gradient)."""

    kind: Literal["ema", "frozen"] = "ema"  # ema: moving average of the student's vision encoder; frozen
    ema_momentum: float = 0.996  # ema only: target <- m * target + (1 - m) * student vision after each step
    # frozen only: safetensors file of the encoder's weights, a reference never copied into the policy
    # checkpoint; None: random weights drawn from `seed` (a random-feature baseline)
    checkpoint: str | None = None
    seed: int = 0  # frozen without checkpoint: seed of the random weights, so the reference reproduces them
    vision: VisionConfig | None = None  # frozen only: the encoder's architecture; None = the student's


@dataclass(frozen=True)
class PredictorConfig:
    """Block-causal latent world model: predicts frame t+1 latents from [conditions_t, frame-t latents]."""

    dim: int = 128  # token width
    depth: int = 3  # transformer blocks
    heads: int = 4  # attention heads; must divide dim
    mlp_ratio: float = 4.0  # MLP hidden width as a multiple of dim
    loss: Literal["l1", "mse"] = "l1"  # distance between predicted and target latents (V-JEPA uses L1)
    rollout_steps: int = 0  # also imagine this many steps from frame 0 (feeding predictions back); 0: off
    rollout_weight: float = 1.0  # weight of the rollout loss relative to the teacher-forcing loss
    # average-pool each view's target latents over latent_pool x latent_pool patch squares before the predictor
    # (inputs and targets alike): latent_pool**2 times fewer predictor tokens; 1: every patch token
    latent_pool: int = field(default=1, metadata=ADDED_LATER)
    # predict frame t+1 as frame t's latents plus a learned change (the output layer starts at zero, so an untrained
    # predictor copies the frame): consecutive latents differ little, and an absolute predictor spends
    # its loss re-drawing the static scene, not the motion the latent-action tokens could explain
    # (benchmarks/results/mt10_wm_probe.md); False: predict the latents themselves
    residual: bool = field(default=False, metadata=ADDED_LATER)
    # share of training windows whose context latents the predictor does not see (a learned mask token stands in),
    # so their future must come through the student's latent-action tokens: with a deterministic demonstrator the
    # future is a function of the current frame, and a predictor that sees it has no use for the tokens; 0: off
    context_dropout: float = field(default=0.0, metadata=ADDED_LATER)


@dataclass(frozen=True)
class ActionHeadConfig:
    """Flow-matching DiT that denoises an action chunk while cross-attending the embodied-action tokens."""

    dim: int = 128  # token width
    depth: int = 3  # DiT blocks
    heads: int = 4  # attention heads; must divide dim
    mlp_ratio: float = 4.0  # MLP hidden width as a multiple of dim
    use_state: bool = True  # add the proprioceptive state as one more token
    num_inference_steps: int = 10  # Euler steps from noise (t=1) to actions (t=0)
    time_beta_alpha: float = 1.5  # training time t ~ Beta(alpha, beta), as in pi0 (more weight on noisy t)
    time_beta_beta: float = 1.0  # second Beta parameter
    time_min: float = 0.001  # t is rescaled to [time_min, 1] so the velocity target stays informative
    # (noise, time) draws per training sample: the student's encoding is shared by all of them, so k > 1 gives
    # the action head k flow-matching pairs per image for the cost of the head alone (a lower-variance loss)
    loss_samples: int = field(default=1, metadata=ADDED_LATER)


@dataclass(frozen=True)
class RegularizerConfig:
    """Anti-collapse term R applied to the student's vision tokens (what an EMA target follows)."""

    kind: Literal["none", "vicreg", "sigreg"] = "sigreg"  # vicreg: variance + covariance; sigreg: LeJEPA
    num_slices: int = 64  # sigreg only: random 1-D projections per call
    num_points: int = 17  # sigreg only: quadrature points of the Epps-Pulley integral on [0, 5]


@dataclass(frozen=True)
class VLAJEPAConfig(JsonConfig):
    """The whole VLA-JEPA model: the student, the action head and (optionally) the latent world model."""

    YAML_SECTION = "model"

    cameras: tuple[str, ...] = ("workspace_oblique",)  # vlajepa.envs.CAMERAS names; keys observation.images.<cam>
    image_size: int = 96  # square input resolution of every camera, in pixels
    state_dim: int = 4  # proprioceptive state width (normalized)
    action_dim: int = 4  # action width (normalized)
    chunk_size: int = 8  # H: actions predicted per chunk
    n_action_steps: int = 8  # actions of each chunk executed before predicting again (<= chunk_size)
    clip_length: int = 4  # T: future clip frames t, t+s, ..., t+(T-1)s (the first is the current one)
    frame_stride: int = 4  # s: environment steps between consecutive clip frames
    num_latent_action_tokens: int = 2  # K: latent-action tokens per future step (K * (T-1) queries in all)
    num_embodied_tokens: int = 4  # M: embodied-action queries read by the action head
    use_world_model: bool = True  # False: plain behaviour cloning (student + action head only)
    wm_weight: float = 1.0  # beta: weight of the world-model loss on robot batches (video batches: weight 1)
    reg_weight: float = 0.0  # lambda: weight of the anti-collapse regularizer (0: off)
    # Auxiliary read-out of observation.environment_state (the simulator's object and goal xyz) from the embodied
    # tokens on robot batches: a training-time label only, never an input. 0: off (no head, no label needed).
    environment_state_dim: int = field(default=0, metadata=ADDED_LATER)
    environment_state_weight: float = field(default=1.0, metadata=ADDED_LATER)
    # What the read-out reads: "embodied" (the tokens the action head reads, so the actor's input must carry the
    # positions), "vision" (the student's current-frame patch tokens, so only the vision encoder is taught where
    # things are; the read-out then serves as a scene estimator for `vlajepa eval --scene-from`) or "keypoints" (the
    # student's spatial-softmax keypoint tokens, student.keypoints > 0: image coordinates of learned detectors).
    environment_state_source: Literal["embodied", "vision", "keypoints"] = field(
        default="embodied", metadata=ADDED_LATER
    )
    # The read-out's form (vlajepa.models.readout): "flat" (an MLP over all tokens) or "attention" (one learned
    # query per coordinate pooling the tokens, weights shared across token positions).
    environment_state_head: Literal["flat", "attention"] = field(default="flat", metadata=ADDED_LATER)
    # Act on the read-out (needs a vision or keypoints read-out): the student and the action head read the state
    # joined with the scene state, the label plus Gaussian noise of std environment_state_noise (normalized units)
    # on training robot batches and the read-out's own estimate when acting. One network, an explicit position
    # interface: the label still only trains the read-out and the vision encoder, never replaces the image.
    act_on_environment_state: bool = field(default=False, metadata=ADDED_LATER)
    environment_state_noise: float = field(default=0.0, metadata=ADDED_LATER)
    vision: VisionConfig = field(default_factory=VisionConfig)  # student vision encoder (and EMA target)
    language: LanguageConfig = field(default_factory=LanguageConfig)  # instruction encoder
    student: StudentConfig = field(default_factory=StudentConfig)  # fusion transformer
    target: TargetConfig = field(default_factory=TargetConfig)  # target encoder of the world model
    predictor: PredictorConfig = field(default_factory=PredictorConfig)  # latent world model
    action_head: ActionHeadConfig = field(default_factory=ActionHeadConfig)  # flow-matching action head
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)  # anti-collapse term

    @property
    def actor_state_dim(self) -> int:
        """Width of the state the student and the action head read: ``observation.state``, joined with the scene
        state when ``act_on_environment_state``."""
        return self.state_dim + (self.environment_state_dim if self.act_on_environment_state else 0)

    def __post_init__(self) -> None:
        problems = []
        if not self.cameras:
            problems.append("cameras: at least one camera is required")
        if len(set(self.cameras)) != len(self.cameras):
            problems.append(f"cameras: duplicates in {self.cameras}")
        for name, sub in (("vision", self.vision), ("target.vision", self.target.vision)):
            if sub is not None and self.image_size % sub.patch_size:
                problems.append(
                    f"{name}.patch_size={sub.patch_size} does not divide image_size={self.image_size}"
                )
        for name in ("vision", "student", "predictor", "action_head"):
            sub = getattr(self, name)
            if sub.dim % sub.heads:
                problems.append(f"{name}.heads={sub.heads} does not divide {name}.dim={sub.dim}")
        if self.language.kind == "tiny" and self.language.dim % self.language.heads:
            problems.append(f"language.heads={self.language.heads} does not divide language.dim")
        if not 1 <= self.n_action_steps <= self.chunk_size:
            problems.append(
                f"n_action_steps={self.n_action_steps} must be in [1, chunk_size={self.chunk_size}]"
            )
        if self.use_world_model and self.clip_length < 2:
            problems.append(f"clip_length={self.clip_length}: the world model needs at least 2 frames")
        if self.predictor.rollout_steps > self.clip_length - 1:
            problems.append(f"predictor.rollout_steps={self.predictor.rollout_steps} > clip_length - 1")
        if not 0.0 <= self.predictor.context_dropout <= 1.0:
            problems.append(f"predictor.context_dropout={self.predictor.context_dropout} must be in [0, 1]")
        target_patch = (self.target.vision or self.vision).patch_size
        if self.predictor.latent_pool < 1 or (self.image_size // target_patch) % self.predictor.latent_pool:
            problems.append(
                f"predictor.latent_pool={self.predictor.latent_pool} must be >= 1 and divide the target's patch "
                f"grid side {self.image_size // target_patch}"
            )
        if self.target.kind == "ema" and self.target.vision is not None:
            problems.append("target.vision must be null for an EMA target (it copies the student's encoder)")
        for name in (
            "chunk_size",
            "state_dim",
            "action_dim",
            "frame_stride",
            "num_latent_action_tokens",
            "num_embodied_tokens",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1")
        if self.action_head.loss_samples < 1:
            problems.append(f"action_head.loss_samples={self.action_head.loss_samples} must be >= 1")
        if self.wm_weight < 0 or self.reg_weight < 0 or self.environment_state_weight < 0:
            problems.append("wm_weight, reg_weight and environment_state_weight must be >= 0")
        if self.environment_state_dim < 0:
            problems.append(f"environment_state_dim={self.environment_state_dim} must be >= 0 (0: off)")
        if self.environment_state_source not in ("embodied", "vision", "keypoints"):
            problems.append(
                f"environment_state_source={self.environment_state_source!r} must be embodied, vision or keypoints"
            )
        if self.environment_state_head not in ("flat", "attention"):
            problems.append(f"environment_state_head={self.environment_state_head!r} must be flat or attention")
        if self.environment_state_source == "keypoints" and self.student.keypoints < 1:
            problems.append("environment_state_source='keypoints' needs student.keypoints > 0")
        view_read_out = self.environment_state_dim > 0 and self.environment_state_source != "embodied"
        if self.act_on_environment_state and not view_read_out:
            problems.append(
                "act_on_environment_state needs a read-out of the current frame (environment_state_dim > 0 and "
                "environment_state_source 'vision' or 'keypoints'): the scene estimate must exist before the student "
                "fuses the state"
            )
        if self.environment_state_noise < 0:
            problems.append(f"environment_state_noise={self.environment_state_noise} must be >= 0")
        if problems:
            raise ConfigError("invalid VLAJEPAConfig: " + "; ".join(problems))


def read_json_file(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path``; errors name the file."""
    from vlajepa.io_utils import read_json

    data = read_json(path, ConfigError, "config file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def _build(cls: type, data: Any, prefix: str, partial: bool) -> Any:
    """Build dataclass ``cls`` from ``data``, checking names and types; errors name the dotted field path."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{prefix.rstrip('.') or cls.__name__}: expected a mapping, got {type(data).__name__}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown field '{prefix}{unknown[0]}' in {cls.__name__}; known fields: {', '.join(fields)}"
        )
    missing = [name for name, f in fields.items() if name not in data and not f.metadata.get("added_later")]
    if missing and not partial:
        raise ConfigError(f"missing field '{prefix}{missing[0]}' in {cls.__name__}")
    values = {
        name: _coerce(data[name], hints[name], f"{prefix}{name}", partial) for name in fields if name in data
    }
    return cls(**values)


def _coerce(value: Any, hint: Any, path: str, partial: bool) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, path, partial)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{path}.", partial)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"field {path!r}: {value!r} is not one of {list(args)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"field {path!r}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], f"{path}[{i}]", partial) for i, v in enumerate(value))
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"field {path!r}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
