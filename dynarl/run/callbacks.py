"""Callbacks: user code the runner calls on every step, evaluation and checkpoint (Stable-Baselines3's idea).

A callback subclasses :class:`Callback` and overrides what it needs; returning False from ``on_step`` or
``on_evaluation`` ends training early (a checkpoint is written first when the run has a folder). A plain
function ``f(algo) -> bool | None`` is accepted too and is called on every step.
"""

from __future__ import annotations

from pathlib import Path


class Callback:
    def on_start(self, algo) -> None:
        """Before the first step of ``learn``."""

    def on_step(self, algo) -> bool:
        """After every ``train_step`` (one vector env step, one rollout, or one gradient step)."""
        return True

    def on_evaluation(self, algo, mean_return: float, std_return: float) -> bool:
        """After every evaluation."""
        return True

    def on_checkpoint(self, algo, path: Path) -> None:
        """After a checkpoint file is written."""


class StopOnRewardThreshold(Callback):
    """End training once an evaluation's mean return reaches ``threshold`` (SB3's StopTrainingOnRewardThreshold)."""

    def __init__(self, threshold: float):
        self.threshold = float(threshold)

    def on_evaluation(self, algo, mean_return: float, std_return: float) -> bool:
        return mean_return < self.threshold


class _FunctionCallback(Callback):
    def __init__(self, fn):
        self.fn = fn

    def on_step(self, algo) -> bool:
        return self.fn(algo) is not False


class CallbackList(Callback):
    """Several callbacks as one; training continues only while all of them say so."""

    def __init__(self, callbacks=None):
        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, Callback) or callable(callbacks):
            callbacks = [callbacks]
        self.callbacks = [c if isinstance(c, Callback) else _FunctionCallback(c) for c in callbacks]

    def on_start(self, algo) -> None:
        for c in self.callbacks:
            c.on_start(algo)

    def on_step(self, algo) -> bool:
        return all([c.on_step(algo) is not False for c in self.callbacks])

    def on_evaluation(self, algo, mean_return: float, std_return: float) -> bool:
        return all([c.on_evaluation(algo, mean_return, std_return) is not False for c in self.callbacks])

    def on_checkpoint(self, algo, path: Path) -> None:
        for c in self.callbacks:
            c.on_checkpoint(algo, path)
