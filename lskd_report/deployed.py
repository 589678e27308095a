"""The deployed side of a translation grid: per cell, the score of each CTranslate2 export of its runs and how
much faster it decoded than fairseq-generate.

The recipes' EXPORT stages write ``RUN/bleu-ct2-Q/bleu.json`` (``lskd-evaluate --engine ctranslate2`` of the
quantisation-Q export of RUN) beside the run's own ``bleu.json`` (fairseq-generate). The speed ratio of a run
is the fairseq file's ``decode_seconds`` over the CTranslate2 file's: both are the whole decoding command
(fairseq-generate's process; CTranslate2's reading of the data, loading of the folder and translation), so
start-up is included and the ratio understates the translation loop's. A cell shows the mean over its seeds.
"""

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from lskd_report.aggregate import Grid, lookup, read_document, row_of

FOLDER = "bleu-ct2-"
RATIO_LABEL = "speed ratio (whole command)"


@dataclass
class DeployedCell:
    """One quantisation in one (row, α): the deployed score and the speed ratio, keyed by seed."""

    scores: dict = field(default_factory=dict)
    ratios: dict = field(default_factory=dict)

    @property
    def mean(self) -> Optional[float]:
        return statistics.fmean(self.scores.values()) if self.scores else None

    @property
    def ratio(self) -> Optional[float]:
        return statistics.fmean(self.ratios.values()) if self.ratios else None


def decode_seconds(document) -> Optional[float]:
    value = document.get("decode_seconds") if isinstance(document, dict) else None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def collect_deployed(grid: Grid, metric: str, metrics_file: Optional[str] = None) -> dict:
    """Quantisation -> {(Row, α): DeployedCell} over every run with an exported score; {} when none has one.
    A deployed file without the metric is left out (its fairseq cell says why a run is missing)."""
    found: dict = {}
    for run_dir, manifest in grid.runs:
        fairseq, _ = read_document(Path(run_dir) / (metrics_file or manifest.metrics))
        for path in sorted(Path(run_dir).glob(f"{FOLDER}*/bleu.json")):
            document, _ = read_document(path)
            try:
                score = lookup(document, metric)
            except KeyError:
                continue
            quantization = path.parent.name.removeprefix(FOLDER)
            cell = found.setdefault(quantization, {}).setdefault((row_of(manifest), manifest.alpha), DeployedCell())
            cell.scores[manifest.seed] = score
            fairseq_seconds, deployed_seconds = decode_seconds(fairseq), decode_seconds(document)
            if fairseq_seconds and deployed_seconds:
                cell.ratios[manifest.seed] = fairseq_seconds / deployed_seconds
    return dict(sorted(found.items()))


def deployed_text(deployed: dict, row, alpha: float) -> str:
    """What a table cell adds: `` · Q score, ×ratio`` per quantisation that has the cell."""
    parts = []
    for quantization, cells in deployed.items():
        cell = cells.get((row, alpha))
        if cell is None:
            continue
        ratio = "" if cell.ratio is None else f", ×{cell.ratio:.2f}"
        parts.append(f" · {quantization} {cell.mean:.3f}{ratio}")
    return "".join(parts)


def csv_header(name: str, deployed: dict) -> list[str]:
    return [f"{name} ct2 {q}{suffix}" for q in deployed for suffix in ("", " n", f" {RATIO_LABEL}")]


def csv_values(deployed: dict, row, alpha: float) -> list[str]:
    values = []
    for cells in deployed.values():
        cell = cells.get((row, alpha)) if row is not None else None
        if cell is None:
            values += ["", "", ""]
            continue
        values += [f"{cell.mean:.3f}", str(len(cell.scores)), "" if cell.ratio is None else f"{cell.ratio:.3f}"]
    return values


def cell_deployed(deployed: dict, row, alpha: float) -> dict:
    """The JSON of a cell's deployed scores, per quantisation that has it."""
    document = {}
    for quantization, cells in deployed.items():
        cell = cells.get((row, alpha))
        if cell is not None:
            document[quantization] = {
                "mean": cell.mean,
                "n": len(cell.scores),
                "seeds": {str(s): v for s, v in sorted(cell.scores.items())},
                "speed_ratio": cell.ratio,
                "speed_ratios": {str(s): v for s, v in sorted(cell.ratios.items())},
            }
    return document


def caption(deployed: dict) -> str:
    if not deployed:
        return ""
    return (
        f" Deployed ({', '.join(deployed)}): after each cell, `· Q score, ×R`: the same metric for the CTranslate2 "
        f"export of quantisation Q (bleu-ct2-Q/bleu.json), mean over its seeds, and R = fairseq-generate's "
        "decode_seconds / CTranslate2's, the whole decoding command each (start-up included), mean over seeds. "
        "The verdicts read the fairseq scores."
    )
