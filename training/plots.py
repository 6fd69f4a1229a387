"""Training curves as a PNG (matplotlib, headless Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from tfsp.fileio import replacing  # noqa: E402

FIGURE_DPI = 100
PANEL_SIZE_INCHES = (6.0, 4.0)
DEFAULT_PLOTTED_STATS = ("AP", "AP50")


def plot_training_curves(
    losses: Mapping[str, Sequence[float]],
    evaluations: Sequence[Mapping[str, float]],
    path: str | os.PathLike[str],
    ap_label: str = "COCO bbox",
    stats: Sequence[str] = DEFAULT_PLOTTED_STATS,
) -> Path:
    """Writes loss curves (and, if there are evaluations, validation stats over epochs) to a PNG.

    Args:
        losses: Loss name -> per-epoch values (epoch 1 first), e.g. {"loss": [...],
            "class_logits_loss": [...]}. Names starting with "val_" are drawn dashed.
        evaluations: One mapping per evaluation with an "epoch" key (1-based)
            and named stats such as "AP" and "AP50" (fractions in [0, 1]).
        path: Output PNG path, written atomically (``tfsp.fileio.replacing``).
        ap_label: y-axis label of the validation panel (what was measured).
        stats: Names of the plotted stats.

    Returns:
        The path written.
    """
    panels = 2 if evaluations else 1
    width, height = PANEL_SIZE_INCHES
    fig, axes = plt.subplots(1, panels, figsize=(width * panels, height), squeeze=False)
    loss_ax = axes[0, 0]
    for name, values in losses.items():
        epochs = range(1, len(values) + 1)
        style = "--" if name.startswith("val_") else "-"
        loss_ax.plot(epochs, values, style, marker="o", markersize=3, label=name)
    loss_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.set_title("training loss")
    loss_ax.grid(True, alpha=0.3)
    if losses:
        loss_ax.legend(fontsize="small")
    if evaluations:
        ap_ax = axes[0, 1]
        epochs = [entry["epoch"] for entry in evaluations]
        for key in stats:
            values = [entry.get(key, float("nan")) for entry in evaluations]
            ap_ax.plot(epochs, values, marker="o", label=key)
        ap_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ap_ax.set_xlabel("epoch")
        ap_ax.set_ylabel(ap_label)
        ap_ax.set_title("validation")
        ap_ax.grid(True, alpha=0.3)
        ap_ax.legend(fontsize="small")
    fig.tight_layout()
    with replacing(path) as temp:
        fig.savefig(temp, dpi=FIGURE_DPI, format="png")
    plt.close(fig)
    return Path(path)
