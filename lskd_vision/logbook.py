"""Where a run's numbers go: ``metrics.csv`` (one row per epoch), ``steps.csv`` (global loss per
step), TensorBoard when ``torch.utils.tensorboard`` imports, and ``metrics.json`` at the very end.

An epoch's rows are written before its checkpoint; a resumed run first drops rows of epochs its
checkpoint does not hold, so a kill between the two never leaves duplicated rows."""

import csv
from pathlib import Path

from lskd_tools.files import atomic_file, atomic_write_json

METRICS_CSV, STEPS_CSV, METRICS_JSON, TENSORBOARD = "metrics.csv", "steps.csv", "metrics.json", "tensorboard"
EPOCH_FIELDS = ("epoch", "lr", "train_loss", "train_kd_kl", "val_loss", "top1", "top5", "seconds")


class Logbook:
    def __init__(self, out: Path, enabled: bool, completed_epochs: int = 0):
        self.out, self.enabled = out, enabled
        self.tensorboard = None
        if enabled:
            for name in (METRICS_CSV, STEPS_CSV):
                self._keep_epochs(name, completed_epochs)
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional; the CSV/JSON files carry the same numbers
                SummaryWriter = None
            if SummaryWriter is not None:
                self.tensorboard = SummaryWriter(str(out / TENSORBOARD))

    def _keep_epochs(self, name: str, completed_epochs: int) -> None:
        path = self.out / name
        if not path.exists():
            return
        with path.open(newline="") as handle:
            header, *rows = list(csv.reader(handle))
        with atomic_file(path, newline="") as handle:
            csv.writer(handle).writerows([header] + [row for row in rows if int(row[0]) <= completed_epochs])

    def _append(self, name: str, header, rows) -> None:
        path = self.out / name
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(header)
            writer.writerows(rows)

    def epoch(self, record: dict, step_losses: list[float], first_step: int) -> None:
        if not self.enabled:
            return
        self._append(METRICS_CSV, EPOCH_FIELDS, [[record.get(key, "") for key in EPOCH_FIELDS]])
        rows = [[record["epoch"], first_step + i, loss] for i, loss in enumerate(step_losses)]
        self._append(STEPS_CSV, ("epoch", "step", "loss"), rows)
        if self.tensorboard is not None:
            for key in ("lr", "train_loss", "train_kd_kl", "val_loss", "top1", "top5"):
                if record.get(key) is not None:
                    self.tensorboard.add_scalar(key, record[key], record["epoch"])
            self.tensorboard.flush()

    def finish(self, summary: dict) -> None:
        if not self.enabled:
            return
        atomic_write_json(self.out / METRICS_JSON, summary, sort_keys=False)
        if self.tensorboard is not None:
            self.tensorboard.close()
