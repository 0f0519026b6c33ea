"""A Hugging Face vision-language model (Qwen3-VL, Qwen2.5-VL, or SmolVLM as the small option, through
``transformers``) read out through added query tokens: the student backbone of the paper-scale configuration.

The prompt of one sample is the model's own chat template over one user turn, ``[image of each camera | the
instruction | latent-action queries | embodied-action queries]``. The queries are added special tokens: one token
per future step of the world model, repeated ``K`` times (``<|latent_action_i|>``), then one embodied-action token
repeated ``M`` times (``<|embodied_action|>``). They come last, so under the language model's causal attention
they read the whole observation, the embodied queries also read the latent-action queries, and nothing of the
observation reads them. Their last hidden states are the outputs.

Images go through the model's own image processor (resize to the patch grid, normalization, patchification) and
the text through its tokenizer's chat template. The one step done here rather than by the model's ``Processor``
class is expanding each image placeholder to the model's image tokens (Qwen-VL: ``grid_t * grid_h * grid_w /
merge_size**2`` pads, their positions marked in ``mm_token_type_ids``; SmolVLM: its crop layout through
transformers' own ``get_image_prompt_string``): those processors also build a video processor, which needs
torchvision, and this path never sees video.

Where weights come from:

- ``model_dir``: a local transformers checkpoint folder (config, weights, tokenizer with its chat template, image
  processor); nothing is ever downloaded;
- no ``model_dir``: a randomly initialised model of ``size`` with a small byte-level tokenizer and an image
  processor built here (``tiny`` for tests and smoke runs; the published sizes only on the meta device, to count
  parameters without weights).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vlajepa.nn.config import HFVLMConfig

logger = logging.getLogger(__name__)

LATENT_TOKEN = "<|latent_action_{}|>"  # one per future step, repeated K times
EMBODIED_TOKEN = "<|embodied_action|>"  # repeated M times
IMAGE_TOKEN = "<|image_pad|>"  # the Qwen-VL image placeholder of the chat template
SMOL_IMAGE_TOKEN = "<image>"  # SmolVLM's image placeholder and image token
SMOL_FAKE_TOKEN, SMOL_GLOBAL_TOKEN = "<fake_token_around_image>", "<global-img>"
# The special tokens of the built-in byte-level tokenizer, per family (the models' own names).
_BASE_SPECIAL = {
    "qwen": ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", IMAGE_TOKEN,
             "<|video_pad|>"),
    "smolvlm": ("<|endoftext|>", "<|im_start|>", "<end_of_utterance>", SMOL_IMAGE_TOKEN, SMOL_FAKE_TOKEN,
                SMOL_GLOBAL_TOKEN),
}  # fmt: skip
# Chat templates for the built-in tokenizer: one line per turn, images as the family's placeholders.
_CHAT_TEMPLATE = {
    "qwen": "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}",
    "smolvlm": "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}",
}
# Patch side of each Qwen family's vision tower (the image processor must agree with the model).
_PATCH = {"qwen3_vl": 16, "qwen2_5_vl": 14}


def _kind(family: str) -> str:
    return "smolvlm" if family == "smolvlm" else "qwen"


class HFVLMError(RuntimeError):
    """The VLM folder is missing or incomplete, or the configuration cannot be built; the message names it."""


def _architecture(family: str, size: str, vocab_size: int, token_ids: dict[str, int]) -> Any:
    """A transformers config of ``family`` at ``size`` (random weights: tests, or parameter counts on meta)."""
    import transformers

    if family == "smolvlm":
        if size != "tiny":
            raise HFVLMError(f"student.hf_vlm.size={size!r}: only 'tiny' is built in for smolvlm; give model_dir")
        text = {"model_type": "llama", "vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                "tie_word_embeddings": True}  # fmt: skip
        vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "image_size": 64, "patch_size": 16}  # fmt: skip
        return transformers.SmolVLMConfig(text_config=text, vision_config=vision, scale_factor=2,
                                          image_token_id=token_ids[SMOL_IMAGE_TOKEN])  # fmt: skip
    ids = {
        "image_token_id": token_ids[IMAGE_TOKEN],
        "video_token_id": token_ids["<|video_pad|>"],
        "vision_start_token_id": token_ids["<|vision_start|>"],
        "vision_end_token_id": token_ids["<|vision_end|>"],
    }
    if family == "qwen3_vl":
        if size == "2b":  # Qwen3-VL-2B-Instruct as published
            text = {"vocab_size": vocab_size, "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
                    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": True,
                    "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0,
                                        "mrope_section": [24, 20, 20], "mrope_interleaved": True}}  # fmt: skip
            vision = {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16,
                      "out_hidden_size": 2048, "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                      "num_position_embeddings": 2304, "deepstack_visual_indexes": [5, 11, 17]}  # fmt: skip
        else:
            text = {"vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "tie_word_embeddings": True,
                    "rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0, "mrope_section": [2, 3, 3],
                                        "mrope_interleaved": True}}  # fmt: skip
            vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                      "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                      "num_position_embeddings": 64, "deepstack_visual_indexes": [0]}  # fmt: skip
        return transformers.Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)
    if size != "tiny":
        raise HFVLMError(f"student.hf_vlm.size={size!r}: only 'tiny' is built in for {family}; give model_dir")
    text = {"vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0, "mrope_section": [2, 3, 3]}}
    vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
              "fullatt_block_indexes": [1]}  # fmt: skip
    return transformers.Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)


def build_tiny_tokenizer(family: str = "qwen3_vl") -> Any:
    """A byte-level BPE tokenizer with no merges (every byte is a token, so any text encodes), the family's special
    tokens and a chat template: built offline, for randomly initialised models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}  # a fixed order
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=_BASE_SPECIAL[_kind(family)][2],
        pad_token="<|endoftext|>",
        additional_special_tokens=list(_BASE_SPECIAL[_kind(family)]),
    )
    tokenizer.chat_template = _CHAT_TEMPLATE[_kind(family)]
    return tokenizer


def build_image_processor(family: str) -> Any:
    """The family's image processor, for randomly initialised models."""
    if family == "smolvlm":  # one crop per image (no splitting) at the tiny vision tower's 64 px
        from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

        return SmolVLMImageProcessorPil(
            do_image_splitting=False,
            size={"longest_edge": 64},
            max_image_size={"longest_edge": 64},
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
        )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    patch = _PATCH[family]
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    if family == "qwen2_5_vl":  # Qwen2.5-VL normalizes with CLIP's statistics
        mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    return Qwen2VLImageProcessorPil(
        patch_size=patch,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=(2 * patch) ** 2,
        max_pixels=(2 * patch * 32) ** 2,
        image_mean=list(mean),
        image_std=list(std),
    )


def write_tiny_vlm(directory: str | Path, family: str = "qwen3_vl", seed: int = 0) -> Path:
    """Write a tiny random VLM as a transformers checkpoint folder (config, weights, tokenizer, image processor):
    what a real ``model_dir`` looks like, for tests and smoke runs without a download."""
    import transformers

    directory = Path(directory)
    tokenizer = build_tiny_tokenizer(family)
    config = _architecture(family, "tiny", len(tokenizer), tokenizer.get_vocab())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModelForImageTextToText.from_config(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    build_image_processor(family).save_pretrained(directory)
    return directory


@dataclass
class VLMOutput:
    """Last hidden states of the queries and of the image tokens, at the language model's width."""

    latent: Tensor  # (b, steps, K, d)
    embodied: Tensor  # (b, M, d)
    image_tokens: Tensor  # (b, v, n, d): the image positions (for the anti-collapse regularizer)


class HFVLMBackbone(nn.Module):
    """A transformers VLM with added query tokens; ``forward(images, instructions)`` -> :class:`VLMOutput`.

    ``images``: one ``(b, 3, H, W)`` tensor in ``[0, 1]`` per camera. ``load_weights=False`` builds the architecture
    of ``model_dir`` without reading its weights (a policy checkpoint brings them).
    """

    def __init__(
        self, config: HFVLMConfig, num_steps: int, num_latent: int, num_embodied: int, *, load_weights: bool = True
    ) -> None:
        super().__init__()
        import transformers

        self.config = config
        self.num_steps, self.num_latent, self.num_embodied = num_steps, num_latent, num_embodied
        on_meta = torch.empty(0).device.type == "meta"
        self.tokenizer: Any = None
        self.image_processor: Any = None
        if config.model_dir is not None:
            folder = Path(config.model_dir).expanduser()
            if not (folder / "config.json").is_file():
                raise HFVLMError(f"{folder}: not a transformers model folder (no config.json) for student.hf_vlm")
            model_config = transformers.AutoConfig.from_pretrained(folder)
            if not on_meta:
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
                self.image_processor = transformers.AutoImageProcessor.from_pretrained(folder)
                if self.tokenizer.chat_template is None:
                    raise HFVLMError(f"{folder}: the tokenizer has no chat template")
        else:
            if config.size != "tiny" and not on_meta:
                raise HFVLMError(
                    f"student.hf_vlm.size={config.size!r} without model_dir: random weights of a published VLM are of "
                    "no use; set student.hf_vlm.model_dir to a local checkpoint folder"
                )
            tokenizer = build_tiny_tokenizer(config.family)
            if config.size == "tiny":
                self.tokenizer, self.image_processor = tokenizer, build_image_processor(config.family)
                model_config = _architecture(config.family, config.size, len(tokenizer), tokenizer.get_vocab())
            else:  # published vocabulary and token ids (meta-device counting only)
                ids = {IMAGE_TOKEN: 151655, "<|video_pad|>": 151656, "<|vision_start|>": 151652,
                       "<|vision_end|>": 151653}  # fmt: skip
                model_config = _architecture(config.family, config.size, 151936, ids)
        if model_config.model_type != config.family:
            raise HFVLMError(
                f"{config.model_dir}: a {model_config.model_type!r} model; student.hf_vlm.family is {config.family!r}"
            )
        model_config._attn_implementation = config.attn_implementation
        if config.model_dir is not None and load_weights and not on_meta:
            model = transformers.AutoModelForImageTextToText.from_pretrained(
                folder, config=model_config, dtype=torch.float32
            )
        else:
            model = transformers.AutoModelForImageTextToText.from_config(model_config, dtype=torch.float32)
        self.model = model.model  # the VLM without its language-model head (only hidden states are read)
        self._add_query_tokens(num_steps)
        if config.gradient_checkpointing:
            enable = getattr(self.model, "activation_checkpointing_enable", None)  # the name since transformers 5.x
            enable = enable or self.model.gradient_checkpointing_enable
            enable({"use_reentrant": False})  # the checkpoint kwargs, the first argument of both names
        if config.freeze_vision:
            for module in self.vision_modules:
                module.requires_grad_(False)
        if config.lora_rank > 0:
            self._add_lora(config)

    # ------------------------------------------------------------------ setup

    @property
    def hidden_size(self) -> int:
        return self.model.config.text_config.hidden_size

    @property
    def language(self) -> nn.Module:
        """The language model (its layers, embeddings and final norm)."""
        return self.model.text_model if self.config.family == "smolvlm" else self.model.language_model

    @property
    def vision_modules(self) -> list[nn.Module]:
        """The vision tower and what projects it into the language model (Qwen-VL's merger is inside ``visual``)."""
        if self.config.family == "smolvlm":
            return [self.model.vision_model, self.model.connector]
        return [self.model.visual]

    def _add_query_tokens(self, num_steps: int) -> None:
        """Register the query tokens; grow the embedding table only where the vocabulary has no spare rows (the
        published Qwen-VL tables do), new rows starting at the mean embedding."""
        if self.tokenizer is None:  # meta-device counting of a published model: its table has spare rows
            self.latent_ids: list[int] = []
            self.embodied_id = -1
            return
        tokens = [LATENT_TOKEN.format(i) for i in range(num_steps)] + [EMBODIED_TOKEN]
        self.tokenizer.add_tokens(tokens, special_tokens=True)
        ids = self.tokenizer.convert_tokens_to_ids(tokens)
        self.latent_ids, self.embodied_id = ids[:-1], ids[-1]
        image_token = SMOL_IMAGE_TOKEN if self.config.family == "smolvlm" else IMAGE_TOKEN
        self.image_id = self.tokenizer.convert_tokens_to_ids(image_token)
        embeddings = self.model.get_input_embeddings()
        old = embeddings.weight.shape[0]
        if len(self.tokenizer) > old:
            embeddings = self.language.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
            with torch.no_grad():
                embeddings.weight[old:] = embeddings.weight[:old].mean(dim=0)

    def _add_lora(self, config: HFVLMConfig) -> None:
        """LoRA adapters on the language model's attention and MLP projections; its other weights freeze, except
        the embedding table (the query tokens' rows must learn)."""
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError as err:
            raise HFVLMError("student.hf_vlm.lora_rank > 0 needs peft: pip install 'vlajepa[paper]'") from err
        language = self.language
        language.requires_grad_(False)
        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        )
        inject_adapter_in_model(lora, language)
        self.model.get_input_embeddings().requires_grad_(True)

    def vision_parameters(self) -> list[nn.Parameter]:
        return [p for module in self.vision_modules for p in module.parameters()]

    def language_parameters(self) -> list[nn.Parameter]:
        return list(self.language.parameters())

    # ------------------------------------------------------------------ inputs

    def _prompt(self, instruction: str, num_views: int) -> str:
        """The chat-templated prompt with one placeholder per camera and the query tokens at the end."""
        queries = "".join(token * self.num_latent for token in (LATENT_TOKEN.format(i) for i in range(self.num_steps)))
        queries += EMBODIED_TOKEN * self.num_embodied
        content = [{"type": "image"} for _ in range(num_views)]
        content.append({"type": "text", "text": f"Your task is {instruction.strip()}. {queries}"})
        return self.tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False)

    def preprocess(self, images: list[Tensor], instructions: list[str]) -> dict[str, Tensor]:
        """Model inputs: every image on its own through the image processor, the prompts through the tokenizer."""
        if self.tokenizer is None:
            raise HFVLMError("this VLM was built for counting parameters only (no tokenizer); set model_dir")
        batch, views = images[0].shape[0], len(images)
        device = images[0].device
        # sample-major order (sample 0's views, then sample 1's, ...), the order of the placeholders in the batch
        flat = [images[v][b].detach().float().cpu() for b in range(batch) for v in range(views)]
        prompts = [self._prompt(text, views) for text in instructions]
        if self.config.family == "smolvlm":
            inputs = self._smolvlm_inputs(flat, prompts, views)
        else:
            inputs = self._qwen_inputs(flat, prompts)
        return {key: value.to(device) for key, value in inputs.items()}

    def _qwen_inputs(self, flat: list[Tensor], prompts: list[str]) -> dict[str, Tensor]:
        pixels = self.image_processor(images=flat, do_rescale=False, return_tensors="pt")
        grid = pixels["image_grid_thw"]
        if not bool((grid == grid[0]).all()):
            raise ValueError("all camera images must have one size (the policy resizes them to image_size)")
        per_image = int(grid[0].prod()) // self.image_processor.merge_size**2
        texts = [prompt.replace(IMAGE_TOKEN, IMAGE_TOKEN * per_image) for prompt in prompts]
        tokens = self.tokenizer(texts, return_tensors="pt", padding=True)
        return {
            "input_ids": tokens["input_ids"],
            "attention_mask": tokens["attention_mask"],
            "pixel_values": pixels["pixel_values"],
            "image_grid_thw": grid,
            "mm_token_type_ids": (tokens["input_ids"] == self.image_id).int(),
        }

    def _smolvlm_inputs(self, flat: list[Tensor], prompts: list[str], views: int) -> dict[str, Tensor]:
        from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string

        nested = [flat[i : i + views] for i in range(0, len(flat), views)]
        pixels = self.image_processor(images=nested, do_rescale=False, return_row_col_info=True, return_tensors="pt")
        vision = self.model.config.vision_config
        seq_len = (vision.image_size // vision.patch_size) ** 2 // self.model.config.scale_factor**2
        texts = []
        for prompt, rows, cols in zip(prompts, pixels["rows"], pixels["cols"], strict=True):
            parts = prompt.split(SMOL_IMAGE_TOKEN)
            text = parts[0]
            for part, n_rows, n_cols in zip(parts[1:], rows, cols, strict=True):
                text += get_image_prompt_string(n_rows, n_cols, seq_len, SMOL_FAKE_TOKEN, SMOL_IMAGE_TOKEN,
                                                SMOL_GLOBAL_TOKEN) + part  # fmt: skip
            texts.append(text)
        tokens = self.tokenizer(texts, return_tensors="pt", padding=True)
        return {
            "input_ids": tokens["input_ids"],
            "attention_mask": tokens["attention_mask"],
            "pixel_values": pixels["pixel_values"],
            "pixel_attention_mask": pixels["pixel_attention_mask"],
        }

    # ------------------------------------------------------------------ forward

    def forward(self, images: list[Tensor], instructions: list[str]) -> VLMOutput:
        if len(instructions) != images[0].shape[0]:
            raise ValueError(f"got {len(instructions)} instructions for a batch of {images[0].shape[0]}")
        inputs = self.preprocess(images, instructions)
        hidden = self.model(**inputs, use_cache=False).last_hidden_state  # (b, L, d)
        ids = inputs["input_ids"]
        batch, views, dim = hidden.shape[0], len(images), hidden.shape[-1]

        def gather(mask: Tensor) -> Tensor:  # positions in sequence order, the same count in every row
            return hidden[mask].reshape(batch, -1, dim)

        latent = gather(torch.isin(ids, torch.tensor(self.latent_ids, device=ids.device)))
        latent = latent.reshape(batch, self.num_steps, self.num_latent, dim)
        embodied = gather(ids == self.embodied_id)
        image_tokens = gather(ids == self.image_id).reshape(batch, views, -1, dim)
        return VLMOutput(latent, embodied, image_tokens)
