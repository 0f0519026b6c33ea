"""Draw docs/architecture.png: how VLA-JEPA turns an observation into actions and learns from video.

Run from anywhere: ``python docs/figures/architecture.py`` (matplotlib only). The picture is committed, so
re-run this script whenever the architecture it shows changes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "architecture.png"

# One colour per role: inputs, the trained policy, the world model, the no-gradient target, losses.
INPUT = "#f2f2f2"
POLICY = "#cfe2f3"
WORLD = "#d9ead3"
TARGET = "#e6e6e6"
LOSS = "#fce5cd"
TOKENS = "#ffffff"


def box(ax, x: float, y: float, w: float, h: float, text: str, color: str, *, dashed: bool = False,
        bold: bool = False) -> tuple[float, float, float, float]:
    """A rounded box centred on (x, y); returns its (left, right, bottom, top) for the arrows."""
    patch = FancyBboxPatch(
        (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
        facecolor=color, edgecolor="#333333", linewidth=1.2, linestyle="--" if dashed else "-",
    )
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=9.5, weight="bold" if bold else "normal",
            wrap=True, linespacing=1.25)
    return (x - w / 2, x + w / 2, y - h / 2, y + h / 2)


def arrow(ax, start: tuple[float, float], end: tuple[float, float], *, label: str = "", dashed: bool = False,
          label_offset: tuple[float, float] = (0.0, 0.12), rad: float = 0.0) -> None:
    ax.add_patch(FancyArrowPatch(
        start, end, arrowstyle="-|>", mutation_scale=13, linewidth=1.2, color="#333333",
        linestyle="--" if dashed else "-", connectionstyle=f"arc3,rad={rad}", shrinkA=2, shrinkB=2,
    ))
    if label:
        mid = ((start[0] + end[0]) / 2 + label_offset[0], (start[1] + end[1]) / 2 + label_offset[1])
        ax.text(*mid, label, ha="center", va="bottom", fontsize=8.5, style="italic", color="#333333")


def main() -> None:
    fig, ax = plt.subplots(figsize=(13, 6.6))
    ax.set_xlim(0, 13)
    ax.set_ylim(0.55, 6.6)
    ax.axis("off")

    # Inputs (left).
    future = box(ax, 1.15, 5.7, 1.9, 0.75, "clip of frames\n$t, t+s, …, t+(T-1)s$", INPUT)
    instr = box(ax, 1.15, 3.95, 1.9, 0.55, "instruction", INPUT)
    image = box(ax, 1.15, 3.15, 1.9, 0.55, "current image(s)", INPUT)
    state = box(ax, 1.15, 2.35, 1.9, 0.55, "robot state", INPUT)

    # Student and target encoder.
    student_text = "student\n\nvision + language\nencoders, fusion\ntransformer"
    student = box(ax, 3.75, 3.15, 1.9, 2.3, student_text, POLICY, bold=True)
    target = box(ax, 3.75, 5.7, 1.8, 0.85, "target encoder\nframe by frame\n(frozen or EMA)", TARGET, dashed=True)

    # Student outputs.
    latent = box(ax, 6.3, 3.95, 1.9, 0.7, "latent-action\ntokens", TOKENS)
    embodied = box(ax, 6.3, 2.35, 1.9, 0.7, "embodied-action\ntokens", TOKENS)
    zs = box(ax, 6.3, 5.7, 1.9, 0.75, "target latents\n$z_t, …, z_{t+T-1}$", TARGET, dashed=True)

    # World model and action head.
    predictor = box(ax, 8.85, 4.55, 2.0, 0.95, "predictor\n(block-causal latent\nworld model)", WORLD, bold=True)
    head = box(ax, 8.85, 2.35, 2.0, 0.8, "flow-matching\naction head", POLICY, bold=True)

    # Outputs and losses (right).
    wm_text = "$L_{wm}$: predicted latents\n$\\hat{z}_{t+1}, …$ vs target\nlatents $z_{t+1}, …$"
    wm_loss = box(ax, 11.55, 5.2, 2.4, 1.0, wm_text, LOSS)
    chunk = box(ax, 11.55, 3.2, 2.4, 0.65, "action chunk [H × A]", POLICY)
    act_loss = box(ax, 11.55, 1.95, 2.4, 0.8, "$L_{action}$ (flow matching)\nvs demonstrated actions", LOSS)

    arrow(ax, (future[1], 5.7), (target[0], 5.7))
    arrow(ax, (target[1], 5.7), (zs[0], 5.7), label="no gradient", dashed=True, label_offset=(0.0, 0.3))
    for source in (instr, image, state):
        y = (source[2] + source[3]) / 2
        arrow(ax, (source[1], y), (student[0], y))
    arrow(ax, (student[1], 3.95), (latent[0], 3.95))
    arrow(ax, (student[1], 2.35), (embodied[0], 2.35))
    arrow(ax, (latent[1], 3.95), (predictor[0], 4.3))
    arrow(ax, (zs[1], 5.55), (predictor[0], 4.85), label="context $z_t, …$", label_offset=(0.75, -0.05))
    arrow(ax, (predictor[1], 4.75), (wm_loss[0], 5.0))
    arrow(ax, (zs[1], 5.85), (wm_loss[0], 5.45), label="targets", label_offset=(0.0, 0.06))
    arrow(ax, (embodied[1], 2.35), (head[0], 2.35))
    arrow(ax, (head[1], 2.55), (chunk[0], 3.2))
    arrow(ax, (head[1], 2.2), (act_loss[0], 1.95))

    ax.text(
        6.5, 1.0,
        "Robot batches train  $L_{action} + β L_{wm}$ (+ λ SIGReg);   "
        "action-free video batches train  $L_{wm}$  only.\n"
        "Future frames reach the model only as targets, never as student input.   "
        "BC = the same policy without the world model.",
        ha="center", va="center", fontsize=10,
    )
    ax.text(6.5, 6.45, "VLA-JEPA: a vision-language-action policy trained with a latent world model",
            ha="center", va="center", fontsize=12.5, weight="bold")

    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=130, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    print(f"wrote {OUT}")  # noqa: T201 - a script's one line of output


if __name__ == "__main__":
    main()
