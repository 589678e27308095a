"""The one call front-ends make: features of several models in, Fig. 1-style PNG and measures JSON out; and the
markdown table of such a JSON (``python -m lskd_report.diffusion_report diffusion.json``)."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lskd.diffusion import ModelProjection, SplitProjection, check_classes, project_model, space_diffusion
from lskd.errors import DataError, InvalidConfig
from lskd_tools.cli import console_script, option, parse_config
from lskd_tools.files import atomic_write_json

MEASURE_NOTE = (
    "anisotropy = sigma_parallel / sigma_perpendicular and separation = |mu_a - mu_b| / "
    "(sigma_parallel(a) + sigma_parallel(b)) are this project's measure of systematic diffusion; the "
    "paper's own diffusion index was never published and is not reproduced here"
)
PCA_NOTE = "numpy SVD PCA to 2-D, fitted on each model's training points plus its 3 training centroids"
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


@dataclass
class ModelFeatures:
    """What a front-end extracts from one model.

    Features are penultimate activations (N, D), one row per sample; labels are classifier indices (N,),
    the same indices as ``classes``. Rows of other classes are allowed and ignored. The classifier is
    ``logits = features @ classifier_weight.T + classifier_bias``; pass ``classifier_bias=None`` for a
    layer without bias.
    """

    train_features: Any
    train_labels: Any
    valid_features: Any
    valid_labels: Any
    classifier_weight: Any
    classifier_bias: Optional[Any] = None


@dataclass(frozen=True)
class ModelAnalysis:
    name: str
    projection: ModelProjection

    def measures(self, split: SplitProjection) -> dict:
        target, similar, control = self.projection.templates.classes
        spaces = (("penultimate", split.features), ("projection_3d", split.points_3d))
        return {
            space: space_diffusion(space, points, split.labels, target, similar, control).to_dict()
            for space, points in spaces
        }

    def to_dict(self) -> dict:
        projection = self.projection
        summary: dict = {"explained_variance_ratio": projection.pca.explained_variance_ratio.tolist()}
        for split_name in ("train", "valid"):
            split = getattr(projection, split_name)
            summary[split_name] = {
                "samples": {str(c): int(np.sum(split.labels == c)) for c in projection.templates.classes},
                "centroids_2d": split.centroids_2d.tolist(),
                **self.measures(split),
            }
        return summary


class AnalysisOutputs(NamedTuple):
    png: Path
    json: Path


def _class_names(classes: tuple[int, ...], class_names: Optional[Sequence[str]]) -> list[str]:
    if class_names is None:
        return [str(c) for c in classes]
    if len(class_names) != len(classes):
        raise InvalidConfig(f"class_names must name the {len(classes)} classes, got {list(class_names)}")
    return [str(name) for name in class_names]


def parse_checkpoints(entries: Sequence[str]) -> dict[str, str]:
    """``NAME=CKPT`` pairs, split at the first ``=`` so checkpoint paths may contain one."""
    checkpoints: dict[str, str] = {}
    for entry in entries:
        name, separator, path = entry.partition("=")
        if not separator or not name.strip() or not path:
            raise InvalidConfig(f"--checkpoints entry {entry!r} is not NAME=CKPT")
        if name in checkpoints:
            raise InvalidConfig(f"--checkpoints names model {name!r} twice")
        checkpoints[name] = path
    return checkpoints


def analyse_models(
    models: Mapping[str, ModelFeatures],
    classes: Sequence[int],
    out_dir,
    class_names: Optional[Sequence[str]] = None,
    max_train_per_class: Optional[int] = None,
    max_valid_per_class: Optional[int] = None,
    stem: str = "diffusion",
    inputs: Optional[Mapping[str, Any]] = None,
) -> AnalysisOutputs:
    """Algorithm 1 and the diffusion measure for every model, then ``out_dir/{stem}.png`` and
    ``out_dir/{stem}.json``.

    ``classes`` = (a, b, c): target class, a semantically similar class, a dissimilar control class.
    ``max_train_per_class`` / ``max_valid_per_class`` keep the first N samples of each class of that split
    (the paper: 150 and 50); None keeps all.
    ``inputs`` (JSON-serialisable: checkpoints, dataset, caps, ...) is recorded as the report's "inputs",
    so a JSON file says which files its rows came from.
    Every input is checked, and every number computed, before anything is written.
    """
    if not models:
        raise InvalidConfig("analyse_models needs at least one model")
    if any(not str(name).strip() for name in models):
        raise InvalidConfig(f"model names must be non-empty, got {list(models)}")
    analyses = []
    for name, features in models.items():
        try:
            projection = project_model(
                features.classifier_weight,
                features.classifier_bias,
                classes,
                features.train_features,
                features.train_labels,
                features.valid_features,
                features.valid_labels,
                max_train_per_class,
                max_valid_per_class,
            )
        except InvalidConfig as error:
            raise InvalidConfig(f"model {name!r}: {error}") from None
        analyses.append(ModelAnalysis(str(name), projection))
    chosen = check_classes(classes, np.shape(models[next(iter(models))].classifier_weight)[0])
    names = _class_names(chosen, class_names)
    report = {
        "measure": MEASURE_NOTE,
        "projection": PCA_NOTE,
        "classes": {
            role: {"index": c, "name": label} for role, c, label in zip(("target", "similar", "control"), chosen, names)
        },
        "models": {analysis.name: analysis.to_dict() for analysis in analyses},
    }
    if inputs is not None:
        report["inputs"] = dict(inputs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_projections({a.name: a.projection for a in analyses}, names, out_dir / f"{stem}.png")
    json_path = out_dir / f"{stem}.json"
    atomic_write_json(json_path, report, sort_keys=False, allow_nan=False)
    return AnalysisOutputs(png=png, json=json_path)


def summary_markdown(report: dict, space: str = "penultimate") -> str:
    """A table of a report's measures per model: anisotropy and separation of the similar pair, and the
    control pair's anisotropy, on both splits."""
    classes = report["classes"]
    lines = [
        f"Classes: target {classes['target']['name']}, similar {classes['similar']['name']}, "
        f"control {classes['control']['name']}; {space} space.",
        "",
        "| model | η similar (train) | separation (train) | η control (train) | η similar (valid) | "
        "separation (valid) | η control (valid) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def number(value) -> str:
        return "—" if value is None else f"{value:.3f}"

    for name, model in report["models"].items():
        cells = []
        for split in ("train", "valid"):
            measured = model[split][space]
            cells += [
                number(measured["similar"]["anisotropy"]),
                number(measured["similar"]["separation"]),
                number(measured["control"]["anisotropy"]),
            ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


PROG = "python -m lskd_report.diffusion_report"


@dataclass(frozen=True)
class SummaryOptions:
    report: Path = option(positional=True, help="JSON written by analyse_models (e.g. diffusion.json)")
    space: str = option(
        "penultimate",
        choices=("penultimate", "projection_3d"),
        help="whose measures the table shows: the penultimate features or their 3-D projection",
    )


@console_script(PROG)
def main(argv=None) -> None:
    args = parse_config(
        SummaryOptions, argv, prog=PROG, description="Print the measures of a diffusion JSON as a markdown table."
    )
    try:
        report = json.loads(args.report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"{args.report}: cannot read the diffusion JSON ({error})") from None
    print(summary_markdown(report, args.space), end="")


if __name__ == "__main__":
    main()
