"""SIGINT / SIGTERM during a run: finish the step in progress, checkpoint it, then stop.

Schedulers and ``kill`` send SIGTERM, Ctrl-C sends SIGINT. Either one only sets a flag; the training loop
checks it after each step, writes a checkpoint exactly like a periodic one and stops, so ``dynarl
resume`` continues bit-identically. A second signal stops at once (the last checkpoint is kept).
"""

from __future__ import annotations

import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Context manager: ``signum`` is the first signal received inside it, else None."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
        if self.enabled:
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # a second signal: stop now, keeping the last checkpoint
        self.signum = signum
        name = signal.Signals(signum).name
        print(f"dynarl: {name} received; finishing the current step and saving a checkpoint (send it again to stop at once)", file=sys.stderr, flush=True)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""
