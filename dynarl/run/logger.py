"""Metrics to CSV, TensorBoard and the console."""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from dynarl.errors import DynarlError

STEP = "env_steps"
CLOCKS = ("env_steps", "gradient_steps")  # the first column: the clock the run counted


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
    if not columns or columns[0] not in CLOCKS:
        raise DynarlError(f"'{path}' is not a dynarl metrics file (no '{STEP}' column); {fix}")
    if any(not name or not name.isprintable() for name in columns) or len(set(columns)) < len(columns):
        bad = next((name for name in columns if not name or not name.isprintable()), None)
        raise DynarlError(f"'{path}' is damaged (its header has {'a duplicate column' if bad is None else f'the column name {bad[:30]!r}'}); {fix}")
    step = columns[0]
    for line, row in enumerate(rows, start=2):
        for key, value in row.items():
            if key is None or value is None:
                raise DynarlError(f"'{path}' is damaged (line {line} has {'more' if key is None else 'fewer'} cells than the header); {fix}")
            if value != "":
                try:
                    float(value)
                except ValueError:
                    raise DynarlError(f"'{path}' is damaged (line {line}: {key}={value[:20]!r} is not a number); {fix}") from None
        if row[step] == "":
            raise DynarlError(f"'{path}' is damaged (line {line} has no {step}); {fix}")
    return columns, rows


class MetricsLogger:
    """Writes one row per ``log`` call to ``metrics.csv`` and TensorBoard scalars.

    Columns may grow as new metrics appear (the file is rewritten with the wider header). On resume
    from step t, rows after t and TensorBoard events at or after t+1 are dropped, so a resumed run's
    logs equal an uninterrupted run's.
    """

    def __init__(self, run_dir: Path | None, resume_step: int | None = None, filename: str = "metrics.csv", tensorboard: bool = True, step_name: str = STEP):
        self.run_dir, self.step_name = run_dir, step_name
        self.rows: list[dict] = []
        self.columns: list[str] = [step_name]
        self.writer = None
        if run_dir is None:
            return
        self.csv_path = run_dir / filename
        if resume_step is not None and self.csv_path.exists():
            self.columns, rows = read_metrics(self.csv_path)
            self.rows = [r for r in rows if int(float(r[step_name])) <= resume_step]
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
        row = {self.step_name: step, **{k: v for k, v in metrics.items() if v is not None}}
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
            if k != self.step_name and isinstance(v, (int, float)) and math.isfinite(v):
                self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Progress:
    """Console progress for a training run.

    On a terminal (``stream.isatty()``): a live tqdm bar (steps done/total, steps/s, ETA, the latest
    return and evaluation), redrawn on every :meth:`heartbeat` but at most once per ``mininterval``
    seconds, with each log row written above it so the rows stay in the scrollback.

    Anywhere else (files, pipes, CI): one line per log row, and a heartbeat line whenever ``every_s``
    seconds pass without one, so a long phase (model training, planning) never looks like a hang.

    Speed and ETA use the last ``window_s`` seconds, not the whole run: the cost per step of model-based
    loops grows as the data does, and an average since the start would promise too early an end.
    ``bar`` forces the live bar on or off (default: on exactly when the stream is a terminal).
    """

    def __init__(self, total: int, quiet: bool = False, stream=None, every_s: float = 30.0, window_s: float = 120.0, bar: bool | None = None, mininterval: float = 0.1):
        # the stream is looked up when the run starts, not at import, so a redirected sys.stdout is honoured
        self.total, self.quiet, self.stream = total, quiet, sys.stdout if stream is None else stream
        self.every_s, self.window_s, self.mininterval = every_s, window_s, mininterval
        self.live = (not quiet) and (_is_terminal(self.stream) if bar is None else bar)
        self._marks: list[tuple[float, int]] = []  # (time, step) samples within the window
        self._last_line = time.perf_counter()
        self._bar: _WindowRateBar | None = None
        self._closed = False
        self._last_draw = -math.inf
        self._eval_return: float | None = None  # the latest evaluation stays in the bar until the next one
        self._latest: tuple[int, float | None] | None = None  # the newest heartbeat, drawn or not, for the bar's last state

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
        if self.live and self._bar is None and not self._closed:
            # a terminal that reports no size (0 or -1: a pty under `script`, some IDE consoles) makes tqdm draw nothing: give it one
            size = dict(dynamic_ncols=True) if _terminal_columns(self.stream) > 0 else dict(ncols=100, nrows=24)
            self._bar = _WindowRateBar(total=self.total, initial=step, file=self.stream, unit=" steps", bar_format=_BAR_FORMAT, mininterval=self.mininterval, disable=False, **size)
            self._last_draw = time.perf_counter()

    def show(self, step: int, recent_return: float | None, eval_return: float | None, steps_per_s: float | None = None) -> None:
        """One log row: a plain line, written above the bar on a terminal."""
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
        line = " | ".join(parts)
        bar = self._live_bar(step)
        if bar is None:
            print(line, file=self.stream, flush=True)
        else:
            if eval_return is not None:
                self._eval_return = eval_return
            bar.write(line, file=self.stream)
            self._draw(bar, step, recent_return, steps_per_s)
        self._last_line = time.perf_counter()

    def heartbeat(self, step: int, recent_return: float | None) -> None:
        """On a terminal, redraw the bar (at most every ``mininterval`` s); elsewhere a progress line if none was printed for ``every_s`` seconds."""
        if self.quiet:
            return
        bar = self._live_bar(step)
        if bar is not None:
            self._latest = (step, recent_return)
            if time.perf_counter() - self._last_draw >= self.mininterval:
                self._draw(bar, step, recent_return, self.speed(step))
        elif time.perf_counter() - self._last_line >= self.every_s:
            self.show(step, recent_return, None)

    def close(self) -> None:
        """End the bar (it stays on screen at its last state); later rows are plain lines."""
        self._closed = True
        if self._bar is not None:
            if self._latest is not None and self._latest[0] != self._bar.n:  # a heartbeat the throttle skipped
                self._draw(self._bar, *self._latest, self.speed(self._latest[0]))
            self._bar.close()
            self._bar = None

    def _live_bar(self, step: int) -> _WindowRateBar | None:
        if self.live and self._bar is None and not self._closed:
            self.start(step)
        return self._bar

    def _draw(self, bar: _WindowRateBar, step: int, recent_return: float | None, steps_per_s: float) -> None:
        bar.window_rate = steps_per_s if steps_per_s > 0 else None  # None: tqdm's own estimate until the window has two samples
        bar.n = step
        post = [f"return {recent_return:.1f}"] if recent_return is not None else []
        if self._eval_return is not None:
            post.append(f"eval {self._eval_return:.1f}")
        bar.set_postfix_str(", ".join(post), refresh=False)
        self._latest = (step, recent_return)
        bar.refresh()
        self._last_draw = time.perf_counter()


# rate without tqdm's inversion to "s/step" below 1 step/s: a slow model-based loop still reads as steps/s
_BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"


class _WindowRateBar(tqdm):
    """A tqdm bar whose steps/s (and so its ETA) is Progress's recent-window speed, not tqdm's smoothed average."""

    monitor_interval = 0  # no monitor thread: Progress redraws the bar itself
    window_rate: float | None = None

    @property
    def format_dict(self):
        d = super().format_dict
        if self.window_rate is not None:
            d["rate"] = self.window_rate
        return d


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def _terminal_columns(stream) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):  # no fileno (StringIO), or not a terminal
        return 0


def _clock(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h:02d}:{rest // 60:02d}:{rest % 60:02d}"
