"""Metrics to CSV, TensorBoard and the console."""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path

from dynarl.errors import DynarlError

STEP = "env_steps"


def read_metrics(path: Path) -> tuple[list[str], list[dict]]:
    """The columns and rows of a run's metrics CSV, or DynarlError saying it is damaged and what to do."""
    fix = f"move it aside (e.g. to {path.name}.bad) and run the command again"
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    except (csv.Error, UnicodeDecodeError, OSError) as e:
        raise DynarlError(f"'{path}' cannot be read as a metrics CSV ({e}); {fix}") from None
    if STEP not in columns:
        raise DynarlError(f"'{path}' is not a dynarl metrics file (no '{STEP}' column); {fix}")
    for line, row in enumerate(rows, start=2):
        for key, value in row.items():
            if key is None or value is None:
                raise DynarlError(f"'{path}' is damaged (line {line} has {'more' if key is None else 'fewer'} cells than the header); {fix}")
            if value != "":
                try:
                    float(value)
                except ValueError:
                    raise DynarlError(f"'{path}' is damaged (line {line}: {key}={value[:20]!r} is not a number); {fix}") from None
        if row[STEP] == "":
            raise DynarlError(f"'{path}' is damaged (line {line} has no {STEP}); {fix}")
    return columns, rows


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
            self.columns, rows = read_metrics(self.csv_path)
            self.rows = [r for r in rows if int(float(r[STEP])) <= resume_step]
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
    """Console progress: one line per log interval, and a heartbeat line whenever ``every_s`` seconds pass
    without one, so a long phase (model training, planning) never looks like a hang.

    Speed and ETA use the last ``window_s`` seconds, not the whole run: the cost per step of model-based
    loops grows as the data does, and an average since the start would promise too early an end.
    """

    def __init__(self, total: int, quiet: bool = False, stream=sys.stdout, every_s: float = 30.0, window_s: float = 120.0):
        self.total, self.quiet, self.stream = total, quiet, stream
        self.every_s, self.window_s = every_s, window_s
        self._marks: list[tuple[float, int]] = []  # (time, step) samples within the window
        self._last_line = time.perf_counter()

    def speed(self, step: int) -> float:
        """Env steps per second over the recent window (0.0 before two samples)."""
        now = time.perf_counter()
        self._marks.append((now, step))
        while len(self._marks) > 2 and now - self._marks[1][0] > self.window_s:
            self._marks.pop(0)
        (t0, s0), (t1, s1) = self._marks[0], self._marks[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0

    def start(self, step: int) -> None:
        self._marks = [(time.perf_counter(), step)]

    def show(self, step: int, recent_return: float | None, eval_return: float | None, steps_per_s: float | None = None) -> None:
        if self.quiet:
            return
        steps_per_s = self.speed(step) if steps_per_s is None else steps_per_s
        left = max(self.total - step, 0)
        eta = left / steps_per_s if steps_per_s > 0 else (0.0 if left == 0 else float("inf"))
        parts = [f"step {step:>{len(str(self.total))}}/{self.total}"]
        parts.append("return " + (f"{recent_return:9.1f}" if recent_return is not None else "        -"))
        if eval_return is not None:
            parts.append(f"eval {eval_return:9.1f}")
        parts.append(f"{steps_per_s:7.1f} steps/s")
        parts.append("ETA " + (_clock(eta) if math.isfinite(eta) else "--"))
        print(" | ".join(parts), file=self.stream, flush=True)
        self._last_line = time.perf_counter()

    def heartbeat(self, step: int, recent_return: float | None) -> None:
        """A progress line if none was printed for ``every_s`` seconds."""
        if not self.quiet and time.perf_counter() - self._last_line >= self.every_s:
            self.show(step, recent_return, None)


def _clock(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h:02d}:{rest // 60:02d}:{rest % 60:02d}"
