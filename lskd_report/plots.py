"""Score and diffusion measures against T, one line per teacher α, error bars from the seeds (PNG bytes): the
score plot's are the t intervals of each cell's mean at the report's level, the diffusion plot's ±1 sd.

Figures are built on matplotlib's object API with the Agg canvas, so nothing touches pyplot's global state
and callers write the bytes only once every output of a command is ready.
"""

import io
from typing import Mapping, Optional, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lskd_report.aggregate import Cell, Row, number_key
from lskd_report.verdicts import mean_interval, percent

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def _temperature_axis(axes, temperatures: Sequence[float]) -> None:
    """T on a log-2 axis (the paper's 1, 2, 3, 64 are unreadable on a linear one), ticked at the grid's T."""
    if temperatures and max(temperatures) / min(temperatures) > 4:
        axes.set_xscale("log", base=2)
    axes.set_xticks(list(temperatures))
    axes.set_xticklabels([number_key(t) for t in temperatures])
    axes.minorticks_off()
    axes.set_xlabel("KD temperature T")
    axes.grid(True, alpha=0.3)


def _error(cell: Cell, level: Optional[float]) -> float:
    """Half the error bar: the t interval of the mean at ``level``, or (None) one sample sd; 0 for one seed."""
    if level is None:
        return cell.sd or 0.0
    interval = mean_interval(cell.values, level)
    return 0.0 if interval is None else interval.half_width


def _seed_line(
    axes, rows: Sequence[Row], alpha: float, cells: Mapping, colour: str, label: str, level: Optional[float] = None
) -> None:
    """Mean over seeds at each T that has a score, with error bars (``_error``; none for one seed)."""
    points = [(row.temperature, cells[(row, alpha)]) for row in rows if cells.get((row, alpha), Cell()).n > 0]
    if not points:
        return
    seeds = sorted({cell.n for _, cell in points})
    label += f", n = {seeds[0]}" if len(seeds) == 1 else f", n = {seeds[0]}-{seeds[-1]}"
    axes.errorbar(
        [t for t, _ in points],
        [c.mean for _, c in points],
        yerr=[_error(c, level) for _, c in points],
        color=colour,
        marker="o",
        capsize=4,
        linewidth=1.6,
        label=label,
    )


def score_figure(
    cells: Mapping,
    rows: Sequence[Row],
    alphas: Sequence[float],
    paper: Optional[Mapping],
    title: str,
    ylabel: str,
    level: float,
) -> Figure:
    """``cells``: (Row, α) -> Cell; ``rows``: students with a temperature; ``paper``: (Row, α) -> number;
    error bars: the ``level`` t interval of each cell's mean over its seeds."""
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for index, alpha in enumerate(alphas):
        colour = COLOURS[index % len(COLOURS)]
        _seed_line(axes, rows, alpha, cells, colour, f"α = {number_key(alpha)}", level)
        published = [(row.temperature, paper[(row, alpha)]) for row in rows if paper and (row, alpha) in paper]
        if published:
            axes.plot(
                [t for t, _ in published],
                [v for _, v in published],
                color=colour,
                linestyle="--",
                marker="x",
                linewidth=1.2,
                label=f"α = {number_key(alpha)}, paper",
            )
    _temperature_axis(axes, [row.temperature for row in rows])
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    handles, labels = axes.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=labels.__getitem__)
    axes.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        fontsize=8,
        title=f"teacher (error bars: {percent(level)} t interval of the mean over seeds)",
        title_fontsize=8,
    )
    return figure


def diffusion_figure(
    measures: Mapping[str, Mapping], rows: Sequence[Row], alphas: Sequence[float], teacher: Row, title: str
) -> Figure:
    """One panel per measure (label -> (Row, α) -> Cell): students against T, one line per α; each α's
    teacher as a dotted horizontal line."""
    figure = Figure(figsize=(12, 6.5), layout="constrained")
    panels = figure.subplots(2, (len(measures) + 1) // 2, squeeze=False).ravel()
    for axes, (label, cells) in zip(panels, measures.items()):
        for index, alpha in enumerate(alphas):
            colour = COLOURS[index % len(COLOURS)]
            _seed_line(axes, rows, alpha, cells, colour, f"α = {number_key(alpha)}")
            own = cells.get((teacher, alpha))
            if own is not None and own.n:
                axes.axhline(
                    own.mean, color=colour, linestyle=":", linewidth=1.2, label=f"teacher α = {number_key(alpha)}"
                )
        _temperature_axis(axes, [row.temperature for row in rows])
        axes.set_title(label, fontsize=10)
    panels[0].legend(fontsize=7)
    for axes in panels[len(measures) :]:
        axes.set_visible(False)
    figure.suptitle(f"{title}; error bars: ±1 sd over seeds", fontsize=11)
    return figure
