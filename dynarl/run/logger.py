"""Metrics to CSV, TensorBoard and the console."""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path

STEP = "env_steps"


class MetricsLogger:
    """Writes one row per ``log`` call to ``metrics.csv`` and TensorBoard scalars.

    Columns may grow as new metrics appear (the file is rewritten with the wider header). On resume
    from step t, rows after t and TensorBoard events at or after t+1 are dropped, so a resumed run's
    logs equal an uninterrupted run's.
    """

    def __init__(self, run_dir: Path | None, resume_step: int | None = None, filename: str = "metrics.csv", tensorboard: bool = True):
        self.run_dir = run_dir
        self.rows: list[dict] = []
        self.columns: list[str] = [STEP]
        self.writer = None
        if run_dir is None:
            return
        self.csv_path = run_dir / filename
        if resume_step is not None and self.csv_path.exists():
            with open(self.csv_path, newline="") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or [STEP])
                self.rows = [r for r in reader if r.get(STEP) and int(float(r[STEP])) <= resume_step]
            self._rewrite()
        if not tensorboard:
            return
        from torch.utils.tensorboard import SummaryWriter

        purge = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge)

    def _rewrite(self) -> None:
        with open(self.csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns)
            w.writeheader()
            w.writerows(self.rows)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        row = {STEP: step, **{k: v for k, v in metrics.items() if v is not None}}
        self.rows.append(row)
        if self.run_dir is None:
            return
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
        else:
            with open(self.csv_path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns).writerow(row)
        if self.writer is None:
            return
        for k, v in row.items():
            if k != STEP and isinstance(v, (int, float)) and math.isfinite(v):
                self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Progress:
    """One console line per log interval: steps, recent return, eval, steps/s, ETA."""

    def __init__(self, total: int, quiet: bool = False, stream=sys.stdout):
        self.total, self.quiet, self.stream = total, quiet, stream

    def show(self, step: int, recent_return: float | None, eval_return: float | None, steps_per_s: float) -> None:
        if self.quiet:
            return
        eta = (self.total - step) / steps_per_s if steps_per_s > 0 else float("inf")
        parts = [f"step {step:>{len(str(self.total))}}/{self.total}"]
        parts.append("return " + (f"{recent_return:9.1f}" if recent_return is not None else "        -"))
        if eval_return is not None:
            parts.append(f"eval {eval_return:9.1f}")
        parts.append(f"{steps_per_s:7.1f} steps/s")
        parts.append("ETA " + (time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) else "--"))
        print(" | ".join(parts), file=self.stream, flush=True)
