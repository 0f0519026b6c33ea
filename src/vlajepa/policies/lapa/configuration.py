"""Configurations of the LAPA baseline (Ye et al., ICLR 2025, arXiv 2410.11758): the latent action model
(:class:`LAMConfig`, its training :class:`LAMTrainConfig`) and the policy (:class:`LAPAConfig`, type ``lapa``).

The policy is VLA-JEPA's student and flow-matching action head (the same config classes, so the same sizes) with a
code head instead of a world model: ``stage: latent`` trains the student to predict the frozen latent action
model's codes of ``(o_t, o_{t+H})`` from ``o_t`` and the instruction; ``stage: action`` trains the action head (and
the student) on robot actions, starting from a latent-stage checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vlajepa.config import ConfigError, JsonConfig, PolicyConfig
from vlajepa.nn.config import ActionHeadConfig, LanguageConfig, VisionConfig
from vlajepa.policies.vla_jepa.configuration import StudentConfig, _vision_problems

LAM_CONFIG_FILE = "lam_config.json"
LAM_WEIGHTS_FILE = "lam.safetensors"
LAM_TRAIN_CONFIG_FILE = "lam_train_config.json"


@dataclass(frozen=True)
class LAMConfig(JsonConfig):
    """The latent action model: a spatio-temporal encoder of ``(o_t, o_{t+H})``, NSVQ codes of the difference of
    the two frames' encodings, and a decoder that reconstructs ``o_{t+H}`` from ``o_t`` and the codes.

    LAPA's defaults are 4 latent tokens and a codebook of 8; its model is 1024 wide with 8 + 8 encoder layers at
    256 px. These defaults are CPU-sized (96 px, width 128, 2 + 2 layers) and train in minutes.
    """

    YAML_SECTION = "lam"

    image_size: int = 96  # square input resolution (must equal the policy's image_size)
    camera: str = "workspace_oblique"  # the view whose frame pairs the model encodes
    horizon: int = 8  # H: frames between o_t and o_{t+H} (the policy's frame_stride; LAPA's robot data use H ~ 1 s)
    patch_size: int = 12  # pixels per patch side
    dim: int = 128  # token width of encoder and decoder
    heads: int = 4  # attention heads; must divide dim
    mlp_ratio: float = 4.0  # MLP hidden width as a multiple of dim
    spatial_depth: int = 2  # encoder blocks attending within each frame
    temporal_depth: int = 2  # encoder blocks attending across the two frames (causal: o_t does not see o_{t+H})
    decoder_depth: int = 2  # decoder blocks (self-attention over o_t's patches, cross-attention to the codes)
    num_tokens: int = 4  # latent action tokens per frame pair (LAPA: 4)
    codebook_size: int = 8  # NSVQ codebook entries (LAPA: 8)
    code_dim: int = 32  # width of a codebook entry (LAPA: 32)
    # True: the decoder predicts o_{t+H} - o_t (starts at the copy-o_t baseline); False: pixels directly, as LAPA
    residual: bool = True

    def problems(self) -> list[str]:
        found = []
        for name in ("image_size", "horizon", "patch_size", "dim", "heads", "spatial_depth", "temporal_depth",
                     "decoder_depth", "num_tokens", "codebook_size", "code_dim"):  # fmt: skip
            if getattr(self, name) < 1:
                found.append(f"{name}={getattr(self, name)} must be >= 1")
        if not found:
            if self.image_size % self.patch_size:
                found.append(f"patch_size={self.patch_size} does not divide image_size={self.image_size}")
            if self.dim % self.heads:
                found.append(f"heads={self.heads} does not divide dim={self.dim}")
            rows, cols = self.token_grid
            grid = self.image_size // self.patch_size
            if rows > grid or cols > grid:
                found.append(f"num_tokens={self.num_tokens} needs a {rows}x{cols} grid, more than the {grid}x{grid} "
                             "patches")  # fmt: skip
        return found

    def __post_init__(self) -> None:
        found = self.problems()
        if found:
            raise ConfigError("invalid LAMConfig: " + "; ".join(found))

    @property
    def token_grid(self) -> tuple[int, int]:
        """``(rows, cols)`` of the latent tokens, pooled from the patch grid: the most square factorization."""
        rows = max(r for r in range(1, int(self.num_tokens**0.5) + 1) if self.num_tokens % r == 0)
        return rows, self.num_tokens // rows


@dataclass(frozen=True)
class LAMTrainConfig(JsonConfig):
    """Training of the latent action model (``vlajepa train-lam``)."""

    YAML_SECTION = "lam_train"

    steps: int = 1000  # optimizer steps
    batch_size: int = 32  # frame pairs per step
    robot_weight: float = 1.0  # mixture robot:video (in batches) when both are given
    video_weight: float = 1.0
    lr: float = 3e-4  # peak AdamW learning rate (linear warmup, cosine decay to 10 %)
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    replace_every: int = 50  # steps between dead-code replacements, and one after step 1 (LAPA: 100, then 500)
    replace_until: float = 0.5  # replace dead codes during this share of the steps only, so the last ones settle
    dead_threshold: float = 0.01  # a code chosen by less than this share of the vectors since the last check is dead
    seed: int = 0
    log_every: int = 25  # steps between lines of metrics.jsonl
    checkpoint_every: int = 500  # steps between (atomic) saves; the end always saves
    num_workers: int = 0  # DataLoader worker processes

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "replace_every", "log_every", "checkpoint_every")
        found = [f"{n}={getattr(self, n)} must be >= 1" for n in positive if getattr(self, n) < 1]
        if self.lr <= 0:
            found.append(f"lr={self.lr} must be > 0")
        if not 0 <= self.replace_until <= 1:
            found.append(f"replace_until={self.replace_until} must be in [0, 1]")
        if self.robot_weight < 0 or self.video_weight < 0:
            found.append("robot_weight and video_weight must be >= 0")
        if found:
            raise ConfigError("invalid LAMTrainConfig: " + "; ".join(found))


@dataclass(frozen=True)
class LAPAConfig(PolicyConfig):
    """The LAPA policy: VLA-JEPA's student (``vision``, ``language``, ``student``: the same classes and sizes) and
    flow-matching action head, plus a code head on the student's latent-action tokens.

    The clip is one frame pair, ``t`` and ``t + frame_stride``: ``frame_stride`` is the latent action model's
    horizon H, and the student has ``num_latent_action_tokens`` latent-action queries (the model's tokens).
    """

    type = "lapa"

    clip_length: int = 2  # o_t and o_{t+H}: the pair the latent action model encodes
    frame_stride: int = 8  # H (the latent action model's horizon)
    # latent: predict the latent action model's codes (cross-entropy); action: flow matching on robot actions
    stage: Literal["latent", "action"] = "action"
    lam: str | None = None  # folder of the frozen latent action model (`vlajepa train-lam`); the latent stage's labels
    num_latent_action_tokens: int = 4  # = the latent action model's num_tokens
    codebook_size: int = 8  # = the latent action model's codebook_size
    num_embodied_tokens: int = 4  # M: embodied-action queries read by the action head
    vision: VisionConfig = field(default_factory=VisionConfig)  # student vision encoder
    language: LanguageConfig = field(default_factory=LanguageConfig)  # instruction encoder
    student: StudentConfig = field(default_factory=StudentConfig)  # fusion transformer (backbone: native)
    action_head: ActionHeadConfig = field(default_factory=ActionHeadConfig)  # flow-matching action head

    @property
    def uses_state(self) -> bool:
        return self.student.use_state or self.action_head.use_state

    @property
    def uses_future_frames(self) -> bool:
        """The latent stage reads ``o_{t+H}``, as the latent action model's input (never the student's)."""
        return self.stage == "latent"

    def problems(self) -> list[str]:
        found = super().problems()
        if self.clip_length != 2:
            found.append(f"clip_length={self.clip_length}: LAPA's latent action spans one frame pair (2)")
        if self.student.backbone != "native":
            found.append(f"student.backbone={self.student.backbone!r}: LAPA supports the native student only")
        found += _vision_problems("vision", self.vision, self.image_size)
        for name in ("student", "action_head"):
            sub = getattr(self, name)
            if sub.dim % sub.heads:
                found.append(f"{name}.heads={sub.heads} does not divide {name}.dim={sub.dim}")
        if self.language.kind == "tiny" and self.language.dim % self.language.heads:
            found.append(f"language.heads={self.language.heads} does not divide language.dim")
        for name in ("num_latent_action_tokens", "codebook_size", "num_embodied_tokens"):
            if getattr(self, name) < 1:
                found.append(f"{name}={getattr(self, name)} must be >= 1")
        if self.action_head.loss_samples < 1:
            found.append(f"action_head.loss_samples={self.action_head.loss_samples} must be >= 1")
        if self.stage == "latent" and not self.lam:
            found.append("lam: the latent stage needs the latent action model's folder (vlajepa train-lam --out)")
        return found

    def check_lam(self, lam: LAMConfig, where: str) -> None:
        """ConfigError naming the first field in which the latent action model ``lam`` (from ``where``) does not
        fit this policy."""
        pairs = {
            "num_latent_action_tokens": ("num_tokens", lam.num_tokens),
            "codebook_size": ("codebook_size", lam.codebook_size),
            "frame_stride": ("horizon", lam.horizon),
            "image_size": ("image_size", lam.image_size),
        }
        for mine, (theirs, value) in pairs.items():
            if getattr(self, mine) != value:
                raise ConfigError(f"{where}: {theirs}={value} does not match the policy's {mine}={getattr(self, mine)}")
        if lam.camera not in self.cameras:
            raise ConfigError(f"{where}: camera={lam.camera!r} is not one of the policy's cameras {self.cameras}")


SHARED_FIELDS = ("cameras", "image_size", "state_dim", "action_dim", "chunk_size", "n_action_steps", "vision",
                 "language", "student", "action_head", "num_embodied_tokens")  # fmt: skip


def lapa_from_student_config(model: dict[str, Any], lam: LAMConfig | None, *, stage: str,
                             lam_dir: str | None) -> dict[str, Any]:  # fmt: skip
    """A full ``LAPAConfig`` dict whose student, action head and observation interface are those of ``model`` (a
    VLA-JEPA config dict, e.g. a preset's), so LAPA and VLA-JEPA compare at the same sizes; the latent action
    model ``lam`` (when given) sets the tokens, codebook and horizon."""
    out = LAPAConfig().to_dict()
    out |= {key: model[key] for key in SHARED_FIELDS if key in model}
    out |= {"stage": stage, "lam": lam_dir}
    if lam is not None:
        out |= {"num_latent_action_tokens": lam.num_tokens, "codebook_size": lam.codebook_size,
                "frame_stride": lam.horizon}  # fmt: skip
    return out
