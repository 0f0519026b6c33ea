"""The config base: typed frozen dataclasses saved as JSON beside every checkpoint, a ``type`` tag and registry for
policy configs, a config version and the one migration that loads configs written by older versions.

Every config is a frozen dataclass, so a model built from a config cannot drift from what is written next to its
weights. ``to_dict``/``from_dict`` round-trip through plain JSON types; ``from_dict`` rejects unknown fields (a typo
in a preset must not be silently ignored) and, unless ``partial=True``, missing ones (a checkpoint's config must be
complete). Saved files (``save_json``) carry ``config_version``; ``load_json`` passes them through
:func:`migrate_config` first, so a checkpoint written by an older version loads or fails with a message that says
why. YAML presets (:mod:`vlajepa.presets`) hold a policy config under ``model:`` and a training config under
``train:`` and may be partial: absent fields take the defaults.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# Version of the saved config format. 1: written before the policy registry (``model_type`` instead of ``type``,
# no ``config_version``, fields added later missing from older files); 2: the policy registry; 3: pretrained vision
# backbones (vision.backbone, feature_stride, freeze); 4: Hugging Face VLM students and V-JEPA 2 targets
# (student.backbone, student.hf_vlm, target.vjepa2); 5: the flow-matching head's block layout (action_head.layout).
CONFIG_VERSION = 5
VERSION_KEY = "config_version"
TYPE_KEY = "type"
DEFAULT_POLICY_TYPE = "vla_jepa"  # what a preset's model: section without a type describes


class ConfigError(ValueError):
    """A config file or dict does not describe a valid config; the message names the field at fault."""


class JsonConfig:
    """JSON/YAML (de)serialization shared by the top-level configs (mixed into frozen dataclasses).

    ``YAML_SECTION`` names the preset section a subclass reads (and the kind of config :func:`migrate_config`
    upgrades); ``YAML_SECTION_REQUIRED`` says whether a preset without that section is an error or means "all
    defaults". Every error names the file and the dotted field.
    """

    YAML_SECTION: typing.ClassVar[str]
    YAML_SECTION_REQUIRED: typing.ClassVar[bool] = True

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict of the fields (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, partial: bool = False) -> typing.Self:
        """Build from ``to_dict`` output; ``partial`` lets absent fields take their defaults."""
        return _build(cls, data, "", partial)

    def to_json(self) -> dict[str, Any]:
        """What ``save_json`` writes: the fields under a header (``config_version``)."""
        return {VERSION_KEY: CONFIG_VERSION, **self.to_dict()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> typing.Self:
        """Build from a saved file's contents of any supported version (see :func:`migrate_config`)."""
        return cls.from_dict(migrate_config(data, cls.YAML_SECTION))

    def save_json(self, path: str | Path) -> None:
        from vlajepa.io_utils import atomic_write_json

        atomic_write_json(path, self.to_json())

    @classmethod
    def load_json(cls, path: str | Path) -> typing.Self:
        path = Path(path)
        try:
            return cls.from_json(read_json_file(path))
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
            return cls.from_section(section)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from err

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> typing.Self:
        """Build from a preset section (partial)."""
        return cls.from_dict(section, partial=True)

    def replace(self, **changes: Any) -> typing.Self:
        """A copy with some top-level fields changed (sub-configs are replaced whole)."""
        return dataclasses.replace(self, **changes)


_POLICY_CONFIGS: dict[str, type[PolicyConfig]] = {}


@dataclass(frozen=True)
class PolicyConfig(JsonConfig):
    """Base of every policy's config: the ``type`` tag that picks the policy class, and the observation and action
    interface every policy shares (what the data pipeline, the evaluation harness and the server read).

    A subclass sets ``type`` (a class attribute) and is registered by it; ``config.json`` stores the tag, so
    loading a checkpoint needs no knowledge of which policy wrote it (:func:`vlajepa.policies.load_policy`).
    """

    YAML_SECTION = "model"
    type: typing.ClassVar[str]

    cameras: tuple[str, ...] = ("workspace_oblique",)  # vlajepa.envs.CAMERAS names; keys observation.images.<cam>
    image_size: int = 96  # square input resolution of every camera, in pixels
    state_dim: int = 4  # proprioceptive state width (normalized)
    action_dim: int = 4  # action width (normalized)
    chunk_size: int = 8  # H: actions predicted per chunk
    n_action_steps: int = 8  # actions of each chunk executed before predicting again (<= chunk_size)
    # The clip a training window reads besides the current frame: frames t, t+s, ..., t+(T-1)s (T = clip_length,
    # s = frame_stride; the first is the current one). Future frames are only ever targets, never inputs.
    clip_length: int = 4
    frame_stride: int = 4

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("type")
        if isinstance(name, str):
            if name in _POLICY_CONFIGS and _POLICY_CONFIGS[name].__qualname__ != cls.__qualname__:
                raise ConfigError(f"policy type {name!r} is registered twice ({_POLICY_CONFIGS[name].__name__})")
            _POLICY_CONFIGS[name] = cls

    @property
    def uses_state(self) -> bool:
        """Whether the policy reads ``observation.state``."""
        return True

    @property
    def uses_future_frames(self) -> bool:
        """Whether training windows need the future clip (as targets)."""
        return False

    @property
    def reads_cached_features(self) -> bool:
        """Whether the policy reads its current frame's features from the trainer's cache of a frozen encoder
        (then pixel augmentations cannot reach it)."""
        return False

    def to_json(self) -> dict[str, Any]:
        return {VERSION_KEY: CONFIG_VERSION, TYPE_KEY: self.type, **self.to_dict()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PolicyConfig:
        """Build the registered config class named by the data's ``type`` (this class or a subclass of it)."""
        data = migrate_config(data, cls.YAML_SECTION)
        name = data.pop(TYPE_KEY, None)
        target = policy_config_class(name)
        if not issubclass(target, cls):
            raise ConfigError(f"type {name!r} is a {target.__name__}, not a {cls.__name__}")
        return target.from_dict(data)

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> PolicyConfig:
        """A preset's ``model:`` section; its ``type`` (default: this class's) picks the class."""
        section = dict(section)
        name = section.pop(TYPE_KEY, getattr(cls, "type", DEFAULT_POLICY_TYPE))
        return policy_config_class(name).from_dict(section, partial=True)

    def problems(self) -> list[str]:
        """What is wrong with this config (empty when valid); subclasses extend the list."""
        found = []
        if not self.cameras:
            found.append("cameras: at least one camera is required")
        if len(set(self.cameras)) != len(self.cameras):
            found.append(f"cameras: duplicates in {self.cameras}")
        for name in ("image_size", "chunk_size", "state_dim", "action_dim", "frame_stride", "clip_length"):
            if getattr(self, name) < 1:
                found.append(f"{name}={getattr(self, name)} must be >= 1")
        if not 1 <= self.n_action_steps <= self.chunk_size:
            found.append(f"n_action_steps={self.n_action_steps} must be in [1, chunk_size={self.chunk_size}]")
        return found

    def __post_init__(self) -> None:
        found = self.problems()
        if found:
            raise ConfigError(f"invalid {type(self).__name__}: " + "; ".join(found))


def policy_config_class(name: Any) -> type[PolicyConfig]:
    """The config class registered under ``name`` (import :mod:`vlajepa.policies` first to register the built-in
    policies)."""
    if name not in _POLICY_CONFIGS:
        known = ", ".join(sorted(_POLICY_CONFIGS)) or "none registered"
        raise ConfigError(f"unknown policy type {name!r}; known types: {known}")
    return _POLICY_CONFIGS[name]


# ----------------------------------------------------------------------------------------------------------
# Migration of configs saved by older versions
# ----------------------------------------------------------------------------------------------------------

# Version 1 files omit the fields added after configs were first saved; they behaved as these values.
_V1_NEWER_FIELDS: dict[str, dict[str, Any]] = {
    "model": {
        "predictor.latent_pool": 1,
        "predictor.residual": False,
        "predictor.context_dropout": 0.0,
        "action_head.loss_samples": 1,
    },
    "train": {"init_vision": None, "ema_weights": 0.0},
}
# Experiment-only options removed from the library in version 2 (their findings are in docs/results.md), with the
# value that means "off": a version-1 checkpoint that used one cannot be rebuilt by this version.
_V1_REMOVED: dict[str, dict[str, Any]] = {
    "model": {
        "environment_state_dim": 0,
        "environment_state_weight": None,  # any value: only read when environment_state_dim > 0
        "environment_state_source": None,
        "environment_state_head": None,
        "act_on_environment_state": False,
        "environment_state_noise": None,
        "student.keypoints": 0,
        "student.sentence_token": False,
    },
    "train": {},
}
# Fields each version added, keyed by the version that added them, with the values older files behaved as.
_ADDED_IN: dict[int, dict[str, dict[str, Any]]] = {
    3: {
        "model": {
            f"{vision}.{field}": value
            for vision in ("vision", "target.vision")
            for field, value in (("backbone", "vit"), ("feature_stride", 16), ("freeze", "none"))
        },
        "train": {"instruction_dropout": 0.0},
    },
    4: {
        "model": {
            "student.backbone": "native",
            "student.hf_vlm": {
                "family": "qwen3_vl",
                "model_dir": None,
                "size": "tiny",
                "freeze_vision": False,
                "gradient_checkpointing": False,
                "lora_rank": 0,
                "lora_alpha": 16.0,
                "attn_implementation": "sdpa",
            },
            "target.vjepa2": {"model_dir": None, "size": "tiny", "image_size": 256},
        },
    },
    5: {"model": {"action_head.layout": "self_cross"}},
}


def migrate_config(data: dict[str, Any], section: str) -> dict[str, Any]:
    """Upgrade a saved config dict of section ``model`` (a policy) or ``train`` to :data:`CONFIG_VERSION`.

    The returned dict has no ``config_version`` key (a policy's keeps ``type``). Version 1 policy configs named their
    class ``model_type: vla_jepa``; experiment-only options removed in version 2 are dropped when they were off and
    are an error (naming the field) when they were on. Fields added by any later version take the values older files
    behaved as.
    """
    data = copy.deepcopy(data)
    version = data.pop(VERSION_KEY, 1)
    if not isinstance(version, int) or version < 1:
        raise ConfigError(f"{VERSION_KEY}={version!r} is not a config version")
    if version > CONFIG_VERSION:
        raise ConfigError(
            f"{VERSION_KEY}={version}: written by a newer vlajepa (this one reads up to {CONFIG_VERSION}); upgrade it"
        )
    if version == 1:
        if section == "model":
            data[TYPE_KEY] = data.pop("model_type", None)
        for dotted, off in _V1_REMOVED.get(section, {}).items():
            parent, key = _parent(data, dotted)
            if parent is None or key not in parent:
                continue
            value = parent.pop(key)
            if off is not None and value != off:
                raise ConfigError(
                    f"field {dotted!r} is {value!r}: an experiment-only option removed from the library (config "
                    f"version 2); this checkpoint needs vlajepa 0.1.0 at commit 18e956b"
                )
        _fill(data, _V1_NEWER_FIELDS.get(section, {}))
    for added_in in range(max(version, 2) + 1, CONFIG_VERSION + 1):
        _fill(data, _ADDED_IN.get(added_in, {}).get(section, {}))
    return data


def _fill(data: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Set each dotted field of ``defaults`` that ``data`` lacks (where its parent section exists)."""
    for dotted, value in defaults.items():
        parent, key = _parent(data, dotted)
        if parent is not None and key not in parent:
            parent[key] = value


def _parent(data: dict[str, Any], dotted: str) -> tuple[dict[str, Any] | None, str]:
    """The dict holding the last component of ``dotted`` (None where an intermediate level is missing)."""
    *path, key = dotted.split(".")
    for part in path:
        data = data.get(part)
        if not isinstance(data, dict):
            return None, key
    return data, key


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
    missing = [name for name in fields if name not in data]
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
