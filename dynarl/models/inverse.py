"""Inverse dynamics model ``a_t = f^-1(s_t, s_{t+1})`` (003, inventory M9; ICM's ``g(phi(s_t), phi(s_{t+1})) -> a_t``).

Continuous actions are regressed with MSE, squashed into the action bounds by tanh when bounds are
given; discrete actions are classified with cross-entropy. The input is ``[s, s' - s]`` standardised:
the delta carries the action's effect directly, which is what the model must invert. ``members`` > 1
gives an ensemble (one batched network) whose disagreement can serve exploration bonuses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dynarl.config import non_negative, one_of, param, positive, positive_sizes, validate
from dynarl.nn.ensemble import EnsembleNet
from dynarl.nn.normalizer import Normalizer


@dataclass
class InverseModelConfig:
    members: int = param(1, positive, "ensemble size")
    hidden_sizes: tuple[int, ...] = param((200, 200), positive_sizes, "hidden widths")
    activation: str = param("silu", one_of("silu", "swish", "relu", "tanh", "elu"), "hidden activation")
    lr: float = param(1e-3, positive, "Adam learning rate")
    weight_decay: float = param(0.0, non_negative, "L2 decay on every layer, added to the loss")


class InverseDynamicsModel(nn.Module):
    """``f^-1(s, s') -> a``. ``num_actions`` set: discrete (logits); else continuous of ``act_dim``."""

    def __init__(
        self,
        cfg: InverseModelConfig,
        obs_dim: int,
        act_dim: int,
        *,
        num_actions: int | None = None,
        act_low: torch.Tensor | None = None,
        act_high: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
    ):
        super().__init__()
        validate(cfg)
        self.cfg, self.discrete = cfg, num_actions is not None
        out = num_actions if self.discrete else act_dim
        decays = (cfg.weight_decay,) * (len(cfg.hidden_sizes) + 1)
        self.net = EnsembleNet(cfg.members, 2 * obs_dim, cfg.hidden_sizes, out, cfg.activation, decays)
        self.input_normalizer = Normalizer(2 * obs_dim)
        self.bounded = act_low is not None and act_high is not None
        if self.bounded:
            self.register_buffer("act_mid", (torch.as_tensor(act_high) + torch.as_tensor(act_low)).float() / 2)
            self.register_buffer("act_half", (torch.as_tensor(act_high) - torch.as_tensor(act_low)).float() / 2)
        self.to(device)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=cfg.lr)

    def _inputs(self, obs, next_obs):
        return torch.cat([obs, next_obs - obs], dim=-1)

    def forward(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Actions [E, N, act] (continuous) or logits [E, N, num_actions] (discrete)."""
        out = self.net(self.input_normalizer.normalize(self._inputs(obs, next_obs)))
        if self.bounded and not self.discrete:
            out = self.act_mid + self.act_half * torch.tanh(out)
        return out

    def loss(self, obs, act, next_obs) -> torch.Tensor:
        out = self(obs, next_obs)
        if self.discrete:
            a = act.long()
            a = a.squeeze(-1) if a.dim() == out.dim() else a  # [.., 1] -> [..]
            target = a.expand(out.shape[:-1]).reshape(-1)
            per = F.cross_entropy(out.reshape(-1, out.shape[-1]), target)
        else:
            per = (out - act).square().mean()
        return per * out.shape[0] + self.net.weight_decay_loss()

    @torch.no_grad()
    def predict(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """The members' mean action (continuous) or the most likely action (discrete): [N, ...]."""
        out = self(obs, next_obs)
        return out.softmax(-1).mean(0).argmax(-1) if self.discrete else out.mean(0)

    def fit(self, obs, act, next_obs, epochs: int = 20, batch_size: int = 256, generator: torch.Generator | None = None) -> list[dict]:
        """Plain minibatch Adam; every member sees its own shuffle. Returns one row per epoch."""
        self.input_normalizer.fit(self._inputs(obs, next_obs))
        n, M = obs.shape[0], self.cfg.members
        rows = []
        for epoch in range(1, epochs + 1):
            order = torch.rand((M, n), generator=generator, device=obs.device).argsort(1)
            total = torch.zeros((), device=obs.device)
            for b in range(math.ceil(n / batch_size)):
                idx = order[:, b * batch_size : (b + 1) * batch_size]
                loss = self.loss(obs[idx], act[idx], next_obs[idx])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += loss.detach()
            rows.append({"epoch": epoch, "inverse_loss": float(total) / math.ceil(n / batch_size) / M})
        return rows
