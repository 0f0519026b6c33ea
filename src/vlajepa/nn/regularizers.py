"""Anti-collapse regularizers for embeddings ``(n, d)`` (samples along the first axis).

- VICReg (Bardes et al.): a hinge keeping each dimension's standard deviation above 1, plus a penalty on the
  off-diagonal covariance so dimensions carry different information.
- SIGReg (LeJEPA, Balestriero & LeCun): push the embedding distribution towards an isotropic Gaussian. By
  Cramér-Wold it suffices that every 1-D projection is standard normal; each step checks a few random
  directions with the Epps-Pulley statistic, a weighted L2 distance between the empirical characteristic
  function of the projected samples and the standard normal one, ``exp(-u^2 / 2)``.

Both are zero-ish for isotropic unit-variance embeddings and large for collapsed ones.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from vlajepa.nn.config import RegularizerConfig


def vicreg_variance(z: Tensor, target_std: float = 1.0, eps: float = 1e-4) -> Tensor:
    """Mean hinge ``relu(target_std - std_j)`` over dimensions ``j``."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return torch.relu(target_std - std).mean()


def vicreg_covariance(z: Tensor) -> Tensor:
    """Sum of squared off-diagonal covariances divided by the dimension."""
    n, d = z.shape
    centered = z - z.mean(dim=0)
    cov = centered.T @ centered / max(n - 1, 1)  # (d, d)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return off_diagonal.square().sum() / d


def vicreg(z: Tensor) -> Tensor:
    return vicreg_variance(z) + vicreg_covariance(z)


def epps_pulley(x: Tensor, num_points: int = 17, max_frequency: float = 5.0) -> Tensor:
    """Epps-Pulley distance of each column of ``x`` ``(n, s)`` from N(0, 1), divided by ``n``; returns
    ``(s,)``.

    ``∫ |phi_emp(u) - exp(-u^2/2)|^2 exp(-u^2/2) du`` by the trapezoidal rule on ``[0, max_frequency]``
    (doubled: the integrand is even for real samples). Dividing the classical statistic by ``n`` keeps the
    loss scale independent of the batch size.
    """
    u = torch.linspace(0.0, max_frequency, num_points, device=x.device, dtype=x.dtype)  # (p,)
    gaussian_cf = torch.exp(-0.5 * u.square())  # (p,)
    angles = x[..., None] * u  # (n, s, p)
    real = angles.cos().mean(dim=0) - gaussian_cf  # (s, p)
    imaginary = angles.sin().mean(dim=0)  # (s, p)
    integrand = (real.square() + imaginary.square()) * gaussian_cf
    return 2.0 * torch.trapezoid(integrand, u, dim=-1)


def sigreg(
    z: Tensor, num_slices: int = 64, num_points: int = 17, generator: torch.Generator | None = None
) -> Tensor:
    """Mean Epps-Pulley distance over ``num_slices`` random unit directions."""
    directions = torch.randn(z.shape[1], num_slices, generator=generator, device=z.device, dtype=z.dtype)
    directions = directions / directions.norm(dim=0, keepdim=True)  # (d, s)
    return epps_pulley(z @ directions, num_points).mean()


def build_regularizer(config: RegularizerConfig) -> Callable[[Tensor], Tensor] | None:
    """The configured regularizer as a function of ``(n, d)`` embeddings, or None for ``kind: none``."""
    if config.kind == "none":
        return None
    if config.kind == "vicreg":
        return vicreg
    if config.kind == "sigreg":
        return partial(sigreg, num_slices=config.num_slices, num_points=config.num_points)
    raise ValueError(f"unknown regularizer {config.kind!r}")
