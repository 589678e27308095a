"""The figure in the layout of the paper's Fig. 1: one row per model, training and validation side by side."""

from pathlib import Path
from typing import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lskd.analysis import ModelProjection, SplitProjection

# The paper's red / green / blue for target, similar and dissimilar class.
CLASS_COLOURS = ("#d62728", "#2ca02c", "#1f77b4")
SPLIT_TITLES = (("train", "training"), ("valid", "validation"))


def _draw_split(axes, split: SplitProjection, classes: Sequence[int]) -> None:
    for colour, c in zip(CLASS_COLOURS, classes):
        points = split.points_2d[split.labels == c]
        axes.scatter(points[:, 0], points[:, 1], s=10, alpha=0.6, color=colour, linewidths=0)
    for colour, centroid in zip(CLASS_COLOURS, split.centroids_2d):
        axes.scatter(centroid[0], centroid[1], s=400, marker="*", color=colour, edgecolors="black", linewidths=1.2)
    axes.set_xticks([])
    axes.set_yticks([])


def plot_projections(projections: Mapping[str, ModelProjection], class_names: Sequence[str], path: Path) -> Path:
    """Scatter of each model's 2-D points (alpha 0.6, one colour per class) with class centroids as large
    stars. Both panels of a row share axes, because they share the model's training-fitted PCA.

    The figure is drawn on a ``Figure`` of its own, not through pyplot, so neither importing this module
    nor plotting changes the caller's matplotlib backend or global figure list."""
    figure = Figure(figsize=(9, 4 * len(projections)))
    grid = figure.subplots(len(projections), 2, squeeze=False)
    for row, (name, projection) in enumerate(projections.items()):
        grid[row, 1].sharex(grid[row, 0])
        grid[row, 1].sharey(grid[row, 0])
        for column, (split, title) in enumerate(SPLIT_TITLES):
            _draw_split(grid[row, column], getattr(projection, split), projection.templates.classes)
            grid[row, column].set_title(f"{name}: {title}")
    handles = [
        Line2D([], [], marker="o", linestyle="", color=colour, label=label)
        for colour, label in zip(CLASS_COLOURS, class_names)
    ]
    handles.append(
        Line2D(
            [],
            [],
            marker="*",
            linestyle="",
            color="grey",
            markeredgecolor="black",
            markersize=14,
            label="class centroid",
        )
    )
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    figure.tight_layout(rect=(0, 0.06 / len(projections), 1, 1))
    figure.savefig(path, dpi=120)
    return path
