"""A picture of the robustness suite: a row per perturbation (and the domain shift), a column per severity.

Used by ``vlajepa perturb-grid`` to produce ``docs/perturbations.png`` and by tests, which check through the
returned pixel differences that every visual perturbation changes the image.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlajepa.envs.domain_shift import DomainShift
from vlajepa.envs.metaworld_env import MetaWorldEnv
from vlajepa.envs.perturbations import PERTURBATIONS, Perturbation

DOMAIN_SHIFT_ROW = "domain_shift"
# Domain-shift columns: it has no severities, so show the arm treatments and a later frame instead.
_DOMAIN_SHIFT_COLUMNS: tuple[tuple[str, DomainShift, int], ...] = (
    ("arm hidden", DomainShift(arm="hidden"), 0),
    ("arm recoloured", DomainShift(arm="recolored", seed=1), 0),
    ("hidden, step 40", DomainShift(arm="hidden", seed=2), 40),
)


@dataclass(frozen=True)
class GridResult:
    """The written image and, per row, the mean absolute pixel difference of each column from the original."""

    path: Path
    differences: dict[str, tuple[float, ...]]  # row -> one value per non-original column
    instructions: dict[str, tuple[str, ...]]  # row -> instruction shown in each column (original first)

    def __fspath__(self) -> str:
        """Usable wherever a path is expected (``open(result)``, ``Path(result)``)."""
        return str(self.path)


def _frame(
    env: MetaWorldEnv,
    seed: int,
    perturbation: Perturbation | None = None,
    domain_shift: DomainShift | None = None,
    steps: int = 0,
) -> tuple[np.ndarray, str]:
    """The image after ``steps`` expert steps of episode ``seed``, and the episode's instruction."""
    env.perturbation, env.domain_shift = perturbation, domain_shift
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        obs, *_ = env.step(env.expert_action())
    return obs[env.image_key], env.instruction


def render_perturbation_grid(
    task: str,
    out_path: str | Path,
    image_size: int = 128,
    seed: int = 0,
    severities: tuple[int, ...] = (1, 2, 3),
) -> GridResult:
    """Render the first frame of episode ``seed`` of ``task`` under every perturbation and write a PNG grid.

    Rows: the seven perturbations and the domain shift; columns: the unperturbed original, then one per
    severity. The language row prints each instruction under its image.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env = MetaWorldEnv(task, image_size=image_size)
    try:
        original, original_text = _frame(env, seed)
        rows: list[tuple[str, list[tuple[str, np.ndarray, str]]]] = []
        for name in PERTURBATIONS:
            cells = [(f"severity {s}", *_frame(env, seed, Perturbation(name, s, seed))) for s in severities]
            rows.append((name, cells))
        shifted = [
            (label, *_frame(env, seed, domain_shift=shift, steps=steps))
            for label, shift, steps in _DOMAIN_SHIFT_COLUMNS
        ]
        rows.append((DOMAIN_SHIFT_ROW, shifted))
        task_name = env.task
    finally:
        env.close()

    n_cols = 1 + max(len(cells) for _, cells in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.0 * n_cols, 2.25 * len(rows)), squeeze=False)
    differences: dict[str, tuple[float, ...]] = {}
    instructions: dict[str, tuple[str, ...]] = {}
    for row, (name, cells) in enumerate(rows):
        shown = [("original", original, original_text), *cells]
        differences[name] = tuple(
            float(np.abs(image.astype(np.int16) - original.astype(np.int16)).mean()) for _, image, _ in cells
        )
        instructions[name] = tuple(text for _, _, text in shown)
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(shown):
                ax.set_axis_off()
                continue
            label, image, text = shown[col]
            ax.imshow(image)
            ax.set_title(label, fontsize=8)
            if col == 0:
                ax.set_ylabel(name, fontsize=10)
            if name == "language":
                ax.set_xlabel(textwrap.fill(text, 28), fontsize=6.5)
    fig.suptitle(f"{task_name}: robustness perturbations (episode seed {seed})", fontsize=11)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.985))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return GridResult(path=out, differences=differences, instructions=instructions)
