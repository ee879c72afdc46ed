"""The behaviour-cloning policy network: s -> tanh(MLP(normalise(s))), with a functional forward for populations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dynarl.nn.normalizer import Normalizer

ACTIVATIONS = {"tanh": torch.tanh, "relu": F.relu, "silu": F.silu}


class BCPolicy(nn.Module):
    """s -> tanh(MLP(normalise(s))) in [-1, 1]^|A|; the normaliser is fitted on the training states."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], activation: str = "tanh"):
        super().__init__()
        dims = (obs_dim, *hidden, act_dim)
        self.obs_normalizer = Normalizer(obs_dim)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.activation = activation
        self._act = ACTIVATIONS[activation]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.obs_normalizer.normalize(obs)
        for layer in self.layers[:-1]:
            x = self._act(layer(x))
        return torch.tanh(self.layers[-1](x))

    def flat_parameters(self) -> torch.Tensor:
        """The layers' parameters as one vector theta (weights then bias, layer by layer): [D]."""
        return torch.cat([torch.cat([layer.weight.reshape(-1), layer.bias]) for layer in self.layers]).detach()

    def functional(self, params: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Policies with parameters ``params`` [N, D] on their own rows ``obs`` [N, R, obs]: [N, R, A].

        Every policy's layer is one slice of a batched matmul, so N perturbed policies cost one kernel per layer.
        """
        x = self.obs_normalizer.normalize(obs)
        n, i = params.shape[0], 0
        for k, layer in enumerate(self.layers):
            out_f, in_f = layer.weight.shape
            w = params[:, i : i + out_f * in_f].view(n, out_f, in_f).transpose(1, 2)
            i += out_f * in_f
            b = params[:, i : i + out_f].unsqueeze(1)
            i += out_f
            x = torch.baddbmm(b, x, w)
            x = self._act(x) if k < len(self.layers) - 1 else torch.tanh(x)
        return x
