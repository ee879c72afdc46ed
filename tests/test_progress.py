"""Console progress: plain lines off a terminal (files, pipes, CI), a live tqdm bar on one, nothing when quiet."""

import io
import re
import time
import types

import pytest

from dynarl.run import logger
from dynarl.run.logger import Progress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    """A hand-driven perf_counter for Progress (tqdm keeps its own clock for the elapsed time)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(logger, "time", types.SimpleNamespace(perf_counter=c))
    return c


def _draws(text: str, total: int) -> list[str]:
    """The bar states tqdm drew (each starts with a carriage return)."""
    return [s for s in text.split("\r") if f"/{total} [" in s]


def test_plain_lines_off_a_terminal(clock):
    out = io.StringIO()
    progress = Progress(1000, stream=out, every_s=30.0)
    assert not progress.live
    progress.start(0)
    clock.now = 10.0
    progress.show(500, -12.34, 7.0, 100.0)
    # width of "1000" = 4; 500 steps left at 100 steps/s = 5 s
    assert out.getvalue() == "step  500/1000 | return     -12.3 | eval       7.0 |   100.0 steps/s | ETA 00:00:05\n"
    clock.now = 39.0
    progress.heartbeat(600, -11.0)  # 29 s since the last line: nothing yet
    assert out.getvalue().count("\n") == 1
    clock.now = 40.0
    progress.heartbeat(700, None)  # 30 s: a heartbeat line, speed over the window (0, 0) .. (40, 700) = 17.5 steps/s
    last = out.getvalue().splitlines()[-1]
    assert last == "step  700/1000 | return         - |    17.5 steps/s | ETA 00:00:17"
    progress.close()
    assert "\r" not in out.getvalue() and out.getvalue().count("\n") == 2


def test_live_bar_on_a_terminal(clock):
    out = FakeTTY()
    progress = Progress(1000, stream=out)
    assert progress.live
    progress.start(0)
    assert "0/1000" in out.getvalue()
    clock.now = 1.0
    progress.heartbeat(100, -5.0)
    bar = _draws(out.getvalue(), 1000)[-1]
    # 100 steps in 1 s of the window: 100 steps/s, and 900 steps left = 9 s
    assert "100/1000" in bar and "100.00 steps/s" in bar and "<00:09" in bar and "return -5.0" in bar
    drawn = out.getvalue()
    clock.now = 1.05
    progress.heartbeat(150, -5.0)  # within mininterval (0.1 s) of the last draw: no redraw
    assert out.getvalue() == drawn
    clock.now = 3.0
    progress.show(500, -2.0, 7.5, 250.0)  # a log row: the plain line above the bar, then the bar
    text = out.getvalue()
    assert "step  500/1000 | return      -2.0 | eval       7.5 |   250.0 steps/s | ETA 00:00:02\n" in text
    bar = _draws(text, 1000)[-1]
    assert "500/1000" in bar and "250.00 steps/s" in bar and "<00:02" in bar and "eval 7.5" in bar
    clock.now = 3.5
    progress.heartbeat(600, -1.0)  # the latest evaluation stays in the bar until the next one
    assert "eval 7.5" in _draws(out.getvalue(), 1000)[-1] and "600/1000" in _draws(out.getvalue(), 1000)[-1]
    progress.close()
    closed = out.getvalue()
    assert closed.endswith("\n") and progress._bar is None
    clock.now = 3.7
    progress.heartbeat(650, -1.0)  # after close: no bar is drawn again
    assert len(_draws(out.getvalue(), 1000)) == len(_draws(closed, 1000))
    progress.close()  # closing twice is harmless


def test_bar_redraws_at_most_every_mininterval():
    out = FakeTTY()
    progress = Progress(100_000, stream=out)
    progress.start(0)
    start = time.perf_counter()
    for step in range(1, 20_001):
        progress.heartbeat(step, None)
    elapsed = time.perf_counter() - start
    progress.close()
    draws = _draws(out.getvalue(), 100_000)
    assert 2 <= len(draws) <= elapsed / progress.mininterval + 4  # start, close (twice: the skipped last step, then the end), and one per 0.1 s at most
    assert "20000/100000" in draws[-1]  # close() shows the last heartbeat even when the throttle skipped it


def test_resumed_run_starts_the_bar_at_its_step(clock):
    out = FakeTTY()
    progress = Progress(1000, stream=out)
    progress.start(400)
    assert re.search(r"\b400/1000\b", out.getvalue())
    progress.close()


@pytest.mark.parametrize("stream", [io.StringIO, FakeTTY])
def test_quiet_prints_nothing(stream, clock):
    out = stream()
    progress = Progress(1000, quiet=True, stream=out, every_s=0.0)
    progress.start(0)
    clock.now = 1.0
    progress.heartbeat(100, -1.0)
    progress.show(200, -1.0, 3.0, None)
    progress.close()
    assert out.getvalue() == ""


def test_bar_can_be_forced_off_on_a_terminal(clock):
    out = FakeTTY()
    progress = Progress(1000, stream=out, bar=False)
    progress.start(0)
    progress.show(500, None, None, 100.0)
    progress.close()
    assert out.getvalue() == "step  500/1000 | return         - |   100.0 steps/s | ETA 00:00:05\n"
