"""Plain and vectorised (ensemble) multilayer perceptrons."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

ROWS_PER_PASS = 512  # rows (per member) in each pass of a large forward without autograd (see in_row_passes)
SINGLE_PASS_BYTES = 1 << 20  # ... and the widest activation (per member) up to which it stays one pass (about one core's L2)


def in_row_passes(layers: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, width: int) -> torch.Tensor:
    """``layers(x)`` for rows x [..., rows, in] (an ensemble's [E, rows, in] or a plain [rows, in]). Without
    autograd it is split into passes of ``ROWS_PER_PASS`` rows once the widest activation (per member: rows x
    ``width`` values of x's dtype) would pass ``SINGLE_PASS_BYTES``; with autograd it is always one pass (the
    graph keeps every activation anyway). Model rollouts and MOPO's penalty push tens
    of thousands of rows through the ensemble and the policy; in passes of a few hundred each layer's
    activations stay in cache, where one pass over 16-50k rows streamed them from memory and was 1.3-1.8x
    slower on one CPU core (fp32 and bf16). Below the bound (PETS's bf16 planning, a SAC batch) one pass was
    as fast. The rows do not interact, so the outputs are the same."""
    if torch.is_grad_enabled() or x.shape[-2] * width * x.element_size() <= SINGLE_PASS_BYTES:
        return layers(x)
    return torch.cat([layers(part) for part in x.split(ROWS_PER_PASS, -2)], -2)


THIN = 16  # a layer with at most this many inputs or outputs stays fp32 under the CPU's bf16 autocast (see Linear)


def _fp32_if_thin(thin: bool, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``forward(x)``, in fp32 when the layer is ``thin`` and the CPU's bf16 autocast is on (see :class:`Linear`)."""
    if thin and torch.is_autocast_enabled("cpu") and x.device.type == "cpu":  # the cheap test first: acting runs this every step
        with torch.autocast("cpu", enabled=False):
            return forward(x.float())
    return forward(x)


class Linear(nn.Linear):
    """``nn.Linear`` that stays in fp32 under the CPU's bf16 autocast when it is thin (at most ``THIN`` inputs
    or outputs: an observation layer, an action or value head).

    oneDNN's bf16 matmul has a floor of about 15 us a call on one CPU core, where a thin fp32 matmul takes
    3-12 us. Forward and backward of one layer, 1 thread (fp32 / bf16): batch 64, 4 -> 256: 45 / 81 us;
    256 -> 2: 41 / 103 us; batch 256, 4 -> 256: 102 / 103 us; 256 -> 2: 67 / 121 us; 256 -> 16: 123 / 131 us
    (23 -> 256 at batch 256 is faster in bf16: 150 / 118 us). DQN's bf16 update on CartPole (4-256-256-2,
    batch 64) gains about 10% in env steps/s. Wide layers, which hold nearly all the FLOPs, run in bf16 as before.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.fp32_under_autocast = min(in_features, out_features) <= THIN

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _fp32_if_thin(self.fp32_under_autocast, super().forward, x)


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [Linear(d, h), activation()]
        d = h
    layers.append(Linear(d, out_dim))
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """``members`` independent linear layers evaluated as one batched matmul (on the CPU in fp32, a one-output
    layer is a product and sum instead, which torch runs faster there). A thin layer stays fp32 under the CPU's
    bf16 autocast, as :class:`Linear` does.

    Weights are shaped [members, in, out]. Input [B, in] is shared by all members; input
    [members, B, in] gives each member its own rows. Initialised like ``nn.Linear`` (uniform in
    +-1/sqrt(in)) so an ensemble of one equals a plain layer in distribution.
    """

    def __init__(self, members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.members, self.in_dim, self.out_dim = members, in_dim, out_dim
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim).uniform_(-bound, bound))
        self.fp32_under_autocast = min(in_dim, out_dim) <= THIN  # as Linear: SAC's bf16 update 4% faster on Pendulum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _fp32_if_thin(self.fp32_under_autocast, self._members, x)

    def _members(self, x: torch.Tensor) -> torch.Tensor:
        if self.out_dim == 1 and x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu"):
            # A value head (twin critics): one output per member. fp32 batched matmuls with one output column take
            # a slow path on the CPU (a [2, 1024, 256] x [2, 256, 1] forward and backward: 2.0 ms against 0.4 ms for
            # this product and sum, whose backward is elementwise too).
            return (x * self.weight.transpose(-1, -2)).sum(-1, keepdim=True) + self.bias
        if x.dim() == 2:  # rows shared by every member; the bias add stays fused into the matmul
            x = x.expand(self.members, *x.shape)
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"members={self.members}, in={self.in_dim}, out={self.out_dim}"


class EnsembleMLP(nn.Module):
    """An MLP of ``members`` independent copies, one batched matmul per layer (no loop over members)."""

    def __init__(self, members: int, in_dim: int, hidden: tuple[int, ...], out_dim: int, activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        dims = (in_dim, *hidden, out_dim)
        self.layers = nn.ModuleList(EnsembleLinear(members, a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = activation()
        self.members = members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)
