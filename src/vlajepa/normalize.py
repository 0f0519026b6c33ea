"""Feature normalization: statistics, modes, and the one place that normalizes and un-normalizes.

Each feature (``observation.state``, ``action``, ...) has a mode and the statistics that mode needs; both are
saved together in ``normalization.json``, so a checkpoint can never be un-normalized with the wrong formula.

Modes:
- ``min_max``: ``[min, max] -> [-1, 1]``;
- ``quantile``: ``[q01, q99] -> [-1, 1]`` (robust to outliers; values outside map beyond [-1, 1]);
- ``mean_std``: ``(x - mean) / std``;
- ``identity``: unchanged.

Works on numpy arrays and torch tensors alike (the last axis is the feature axis).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

NORMALIZATION_FORMAT = "vlajepa.normalization/v1"
NORMALIZATION_MODES = ("identity", "min_max", "quantile", "mean_std")
_REQUIRED_STATS = {
    "identity": (),
    "min_max": ("min", "max"),
    "quantile": ("q01", "q99"),
    "mean_std": ("mean", "std"),
}
_EPS = 1e-8  # guards constant features (zero range or zero std)

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


class NormalizationError(ValueError):
    """Statistics are missing or malformed, or a feature has no normalization; the message names it."""


def compute_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of ``values`` ``[N, D]`` for every mode: min, max, mean, std, q01, q99 and count."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or len(values) == 0:
        raise NormalizationError(f"compute_stats expects a non-empty [N, D] array, got shape {values.shape}")
    return {
        "min": values.min(0),
        "max": values.max(0),
        "mean": values.mean(0),
        "std": values.std(0),
        "q01": np.quantile(values, 0.01, axis=0),
        "q99": np.quantile(values, 0.99, axis=0),
        "count": np.asarray([len(values)]),
    }


@dataclass(frozen=True)
class FeatureNormalization:
    """Mode plus statistics (float64 vectors) of one feature."""

    mode: str
    stats: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZATION_MODES:
            raise NormalizationError(
                f"unknown normalization mode {self.mode!r}; expected one of {NORMALIZATION_MODES}"
            )
        for name in _REQUIRED_STATS[self.mode]:
            if name not in self.stats:
                raise NormalizationError(
                    f"mode {self.mode!r} needs statistic {name!r}, got {sorted(self.stats)}"
                )

    def _offset_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """``normalized = (x - offset) / scale``."""
        if self.mode == "identity":
            return np.zeros(1), np.ones(1)
        if self.mode == "mean_std":
            return self.stats["mean"], np.maximum(self.stats["std"], _EPS)
        low, high = (
            (self.stats["min"], self.stats["max"])
            if self.mode == "min_max"
            else (self.stats["q01"], self.stats["q99"])
        )
        return (low + high) / 2, np.maximum((high - low) / 2, _EPS)

    def normalize(self, x: ArrayT) -> ArrayT:
        offset, scale = (_like(v, x) for v in self._offset_scale())
        return (x - offset) / scale

    def unnormalize(self, x: ArrayT) -> ArrayT:
        offset, scale = (_like(v, x) for v in self._offset_scale())
        return x * scale + offset


class Normalizer:
    """Per-feature normalization with the modes and statistics it was built from."""

    def __init__(self, features: Mapping[str, FeatureNormalization]) -> None:
        self.features = dict(features)

    @classmethod
    def from_stats(cls, stats: Mapping[str, Mapping[str, Any]], modes: Mapping[str, str]) -> Normalizer:
        """Build from LeRobot-style statistics ``{feature: {"min": [...], ...}}`` and a mode per feature."""
        features = {}
        for key, mode in modes.items():
            if key not in stats:
                raise NormalizationError(f"no statistics for feature {key!r}; have {sorted(stats)}")
            arrays = {
                name: np.asarray(value, dtype=np.float64).reshape(-1) for name, value in stats[key].items()
            }
            features[key] = FeatureNormalization(mode, arrays)
        return cls(features)

    def _feature(self, key: str) -> FeatureNormalization:
        if key not in self.features:
            raise NormalizationError(f"no normalization for feature {key!r}; have {sorted(self.features)}")
        return self.features[key]

    def normalize(self, key: str, x: ArrayT) -> ArrayT:
        return self._checked(key, x).normalize(x)

    def unnormalize(self, key: str, x: ArrayT) -> ArrayT:
        return self._checked(key, x).unnormalize(x)

    def _checked(self, key: str, x: ArrayT) -> FeatureNormalization:
        feature = self._feature(key)
        widths = {len(v) for name, v in feature.stats.items() if name != "count"}
        if widths and widths != {1} and x.shape[-1] not in widths:
            raise NormalizationError(f"feature {key!r} has width {x.shape[-1]}; its statistics have {widths}")
        return feature

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": NORMALIZATION_FORMAT,
            "features": {
                key: {"mode": f.mode, "stats": {name: v.tolist() for name, v in f.stats.items()}}
                for key, f in self.features.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalizer:
        if data.get("format") != NORMALIZATION_FORMAT or not isinstance(data.get("features"), dict):
            raise NormalizationError(f"expected format {NORMALIZATION_FORMAT!r} with a 'features' mapping")
        features = {}
        for key, entry in data["features"].items():
            try:
                stats = {
                    name: np.asarray(v, dtype=np.float64).reshape(-1) for name, v in entry["stats"].items()
                }
                features[key] = FeatureNormalization(entry["mode"], stats)
            except (KeyError, TypeError, ValueError) as err:
                raise NormalizationError(f"feature {key!r}: malformed entry ({err})") from err
        return cls(features)

    def save(self, path: str | Path) -> None:
        from vlajepa.io_utils import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Normalizer:
        from vlajepa.io_utils import read_json

        path = Path(path)
        data = read_json(path, NormalizationError, "normalization file")
        try:
            return cls.from_dict(data)
        except NormalizationError as err:
            raise NormalizationError(f"{path}: {err}") from err


def _like(value: np.ndarray, x: ArrayT) -> ArrayT:
    """``value`` as the same kind, dtype and device as ``x`` (broadcasting over the last axis)."""
    if isinstance(x, torch.Tensor):
        return torch.as_tensor(value, dtype=x.dtype, device=x.device)
    return np.asarray(value, dtype=x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)
