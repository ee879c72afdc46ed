"""The random draws of networks and learners (policy samples, target smoothing, exploration noise).

``normal_like(x)`` and ``uniform_like(x)`` are ``torch.randn_like`` and ``torch.rand_like`` on the process's
generator, unless a :class:`NoiseTape` is playing. A vectorised learner (several seeds' networks stacked on
a leading dimension and mapped with ``torch.vmap``) cannot draw inside the map from each seed's own
generator, so it records the draws a method makes once, draws them beforehand from each seed's generator
in the same order and with the same shapes as a separate run would, and plays them back inside the map.
"""

from __future__ import annotations

import contextlib

import torch

_tape: NoiseTape | None = None


def normal_like(x: torch.Tensor) -> torch.Tensor:
    """N(0, 1) noise shaped like ``x``."""
    return torch.randn_like(x) if _tape is None else _tape.draw("normal", x)


def uniform_like(x: torch.Tensor) -> torch.Tensor:
    """U[0, 1) noise shaped like ``x``."""
    return torch.rand_like(x) if _tape is None else _tape.draw("uniform", x)


class NoiseTape:
    """Records the draws of one call (kind, shape, dtype), or plays given tensors back in that order."""

    def __init__(self, played: list[torch.Tensor] | None = None):
        self.played = played
        self.recorded: list[tuple[str, tuple[int, ...], torch.dtype]] = []

    def draw(self, kind: str, x: torch.Tensor) -> torch.Tensor:
        if self.played is None:
            self.recorded.append((kind, tuple(x.shape), x.dtype))
            return torch.zeros_like(x)
        k = len(self.recorded)
        self.recorded.append((kind, tuple(x.shape), x.dtype))
        return self.played[k]


@contextlib.contextmanager
def tape(t: NoiseTape):
    """Route ``normal_like``/``uniform_like`` through ``t`` inside the block."""
    global _tape
    previous, _tape = _tape, t
    try:
        yield t
    finally:
        _tape = previous


def draw(recorded: list[tuple[str, tuple[int, ...], torch.dtype]], device: torch.device) -> list[torch.Tensor]:
    """Fresh draws from the process's generator for a recorded list, as ``normal_like``/``uniform_like`` make them."""
    return [(torch.randn if kind == "normal" else torch.rand)(shape, dtype=dtype, device=device) for kind, shape, dtype in recorded]
