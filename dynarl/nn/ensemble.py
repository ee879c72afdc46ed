"""The vectorised ensemble network behind every learned world model (PETS, MBPO, SLBO, MOPO ...).

One module holds ``members`` independent MLPs. Each layer's weight is one tensor shaped
[members, in, out] and is applied with a single batched matmul, so the cost of an ensemble is one
kernel per layer whatever the number of members (design rule 5: no Python loop over members).

Details kept from the original PETS (kchua/handful-of-trials) and MBPO (jannerm/mbpo) code, because
public ports that drop them do not reproduce the papers:

- swish/SiLU activations;
- weights from a normal truncated at two standard deviations with std 1/(2 sqrt(in)), biases zero;
- weight decay set per layer and added to the *loss* as ``decay * ||W||^2 / 2`` (TensorFlow's
  ``l2_loss``), not as AdamW's decoupled decay, so Adam sees the same gradients as the originals.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dynarl.nn.mlp import EnsembleLinear, in_row_passes

# MBPO's per-layer decays for its 4x200 model, from input to output (mbpo/models/constructor.py).
MBPO_WEIGHT_DECAYS = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)

# name -> (out-of-place, in-place); the in-place form is used when no autograd graph is recorded
_ACTIVATIONS = {
    "silu": (F.silu, lambda x: F.silu(x, inplace=True)),
    "swish": (F.silu, lambda x: F.silu(x, inplace=True)),
    "relu": (F.relu, torch.relu_),
    "tanh": (torch.tanh, torch.tanh_),
    "elu": (F.elu, lambda x: F.elu(x, inplace=True)),
}


def truncated_normal_init_(layer: EnsembleLinear, generator: torch.Generator | None = None) -> None:
    """The PETS/MBPO initialisation: W ~ N(0, 1/(2 sqrt(in)))^2 truncated at +-2 std, b = 0."""
    std = 1.0 / (2.0 * math.sqrt(layer.in_dim))
    with torch.no_grad():
        nn.init.trunc_normal_(layer.weight, 0.0, std, -2.0 * std, 2.0 * std, generator=generator)
        layer.bias.zero_()


class EnsembleNet(nn.Module):
    """``members`` MLPs ``in_dim -> hidden -> out_dim`` evaluated as one batched matmul per layer.

    ``forward(x, members=None)`` takes a shared input [B, in] or per-member inputs [E, B, in] and
    returns [E, B, out]. ``members`` (a long tensor of E indices) evaluates only those members, e.g. the
    elites during model rollouts; their weights are gathered once per layer, never looped over.
    """

    def __init__(
        self,
        members: int,
        in_dim: int,
        hidden: tuple[int, ...],
        out_dim: int,
        activation: str = "silu",
        weight_decay: tuple[float, ...] | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not one of {', '.join(_ACTIVATIONS)}")
        dims = (in_dim, *hidden, out_dim)
        self.layers = nn.ModuleList(EnsembleLinear(members, a, b) for a, b in zip(dims[:-1], dims[1:]))
        for layer in self.layers:
            truncated_normal_init_(layer, generator)
        decays = tuple(weight_decay) if weight_decay is not None else (0.0,) * len(self.layers)
        if len(decays) != len(self.layers):
            raise ValueError(f"weight_decay has {len(decays)} entries but the network has {len(self.layers)} layers")
        self.weight_decay = decays
        self.members, self.in_dim, self.out_dim = members, in_dim, out_dim
        self._act, self._act_ = _ACTIVATIONS[activation]
        self._act_name = activation

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        n = self.members if members is None else members.numel()
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(n, *x.shape)  # a view: the shared input is not copied
        grad = torch.is_grad_enabled()
        params = [(layer.weight, layer.bias) if members is None else (layer.weight[members], layer.bias[members]) for layer in self.layers]
        return in_row_passes(lambda part: self._layers(part, params, grad), x, max(w.shape[-1] for w, _ in params))

    def _layers(self, x: torch.Tensor, params: list[tuple[torch.Tensor, torch.Tensor]], grad: bool) -> torch.Tensor:
        last = len(params) - 1
        for i, (w, b) in enumerate(params):
            x = torch.baddbmm(b, x, w)
            if i < last:
                # in place when no graph is recorded: one memory pass less per layer during rollouts
                x = self._act(x) if grad else self._act_(x)
        return x

    def weight_decay_loss(self) -> torch.Tensor:
        """sum_l decay_l * ||W_l||^2 / 2 over all members (biases are not decayed, as in MBPO)."""
        total = self.layers[0].weight.new_zeros(())
        for decay, layer in zip(self.weight_decay, self.layers):
            if decay:
                total = total + decay * 0.5 * layer.weight.square().sum()
        return total

    def extra_repr(self) -> str:
        return f"activation={self._act_name}, weight_decay={self.weight_decay}"
