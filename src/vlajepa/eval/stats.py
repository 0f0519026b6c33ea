"""Success-rate statistics: Wilson score intervals, which stay inside [0, 1] and behave at 0 % and 100 %."""

from __future__ import annotations

import math

Z_95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(successes: int, episodes: int, z: float = Z_95) -> tuple[float, float]:
    """Return the Wilson score interval ``(low, high)`` for ``successes`` out of ``episodes`` trials."""
    if episodes < 0 or successes < 0 or successes > episodes:
        raise ValueError(f"need 0 <= successes <= episodes, got successes={successes}, episodes={episodes}")
    if episodes == 0:
        return 0.0, 1.0
    p = successes / episodes
    z2 = z * z
    denom = 1.0 + z2 / episodes
    centre = (p + z2 / (2 * episodes)) / denom
    half = z * math.sqrt(p * (1 - p) / episodes + z2 / (4 * episodes * episodes)) / denom
    # Rounding can put the bounds a hair past p at 0 % or 100 %; the interval always contains p.
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))
