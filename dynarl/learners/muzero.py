"""MuZero's training step: the K-step unrolled loss (Schrittwieser et al. 2020, eq. 1; inventory A8).

From s^0 = h(o_t), the dynamics is unrolled along the played actions, r^k, s^k = g(s^{k-1}, a_{t+k-1}), and
every step is scored against the targets of :class:`~dynarl.data.game_segments.SegmentBatch`:

    l = sum_{k=0}^{K} [ l_r(u_{t+k}, r^k) + w_v l_v(z_{t+k}, v^k) + l_p(pi_{t+k}, p^k) ]     (no reward term at k = 0)

as in the paper's pseudocode (``update_weights``):

- the gradient of every step k >= 1 is scaled by 1/K ("total gradient magnitude stays constant");
- the hidden state fed to the next dynamics step has its gradient scaled by 0.5 (after each recurrent step;
  the predictions at step k see the unscaled state);
- l_p is the cross-entropy with the visit distribution; l_v and l_r are cross-entropies with the two-hot
  targets on the support (appendix F) for categorical heads, squared errors (z - v)^2 for scalar heads;
- weight decay c ||theta||^2 / 2 is Adam's coupled L2 (``weight_decay``: the gradient gets + c theta), c = 1e-4.

The loss is averaged over the batch. ``value_loss_weight`` w_v is 1 in the paper's equation; the paper's
Reanalyze runs and LightZero use 0.25 to keep stale, off-policy value targets from dominating. The default
here is 0.25; the CartPole-v1 preset uses 1 (it learnt faster there, see dynarl/presets/search.py). The masks
of the batch remove targets past a truncation and the policy past any episode end.

``act`` is the prior policy's argmax, without search: the search lives in the algorithm (learners and
planning are separate layers), which drives it through :meth:`initial_inference` and
:meth:`recurrent_inference`. A target copy of the network, refreshed every ``target_update_interval``
updates, is kept for reanalysis of old value targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from dynarl.config import non_negative, one_of, param, positive, positive_sizes, unit_interval_open_closed
from dynarl.data.game_segments import SegmentBatch
from dynarl.errors import EnvError
from dynarl.learners.base import Learner, target_copy
from dynarl.nn.muzero import REWARD_FROM, MuZeroNetwork, scalar_to_support, scale_gradient
from dynarl.nn.optim import FusedAdam


@dataclass
class MuZeroLearnerConfig:
    gamma: float = param(0.997, unit_interval_open_closed, "discount of the value targets and of the search's backups (paper: 0.997)")
    lr: float = param(3e-3, positive, "Adam learning rate at update 0")
    lr_decay_rate: float = param(1.0, unit_interval_open_closed, "lr = lr * lr_decay_rate ** (updates / lr_decay_steps) (muzero-general's exponential decay; 1: constant)")
    lr_decay_steps: int = param(1_000, positive, "updates per factor lr_decay_rate")
    weight_decay: float = param(1e-4, non_negative, "L2 coefficient c of c ||theta||^2 / 2 (paper: 1e-4), as Adam's coupled weight decay")
    value_loss_weight: float = param(0.25, non_negative, "w_v: weight of the value loss (paper eq. 1: 1; Reanalyze and LightZero: 0.25)")
    latent_dim: int = param(64, positive, "size of the hidden state s^k")
    hidden_sizes: tuple[int, ...] = param((64,), positive_sizes, "hidden layer widths of h, g and f")
    value_support: int = param(10, non_negative, "S of the categorical value head over {-S..S} after h(x) (0: a scalar head with squared error)")
    reward_support: int = param(10, non_negative, "S of the categorical reward head (0: scalar)")
    reward_from: str = param("transition", one_of(*REWARD_FROM), "what the reward head reads: transition (the dynamics' hidden layer on (s^{k-1}, a), one MLP for both) or next_state (its own MLP on s^k, as LightZero)")
    max_grad_norm: float = param(0.0, non_negative, "clip the gradient's global norm to this (0: no clipping)")
    target_update_interval: int = param(100, positive, "updates between copies of the network into the target network used for reanalysis")


class MuZeroLearner(Learner):
    """The MuZero network h, g, f, its optimiser and the unrolled loss; Discrete actions, flat observations."""

    name = "muzero"

    def __init__(self, cfg: MuZeroLearnerConfig, obs_space, action_space, device: torch.device):
        super().__init__(device)
        from gymnasium import spaces

        if not isinstance(action_space, spaces.Discrete):
            raise EnvError(f"MuZero needs a Discrete action space; this env has {action_space}: use SAC, TD3 or PETS for continuous actions")
        self.cfg = cfg
        self.n_actions = int(action_space.n)
        obs_dim = int(torch.tensor(obs_space.shape).prod()) if obs_space.shape else 1
        self.net = MuZeroNetwork(obs_dim, self.n_actions, cfg.latent_dim, cfg.hidden_sizes, cfg.value_support, cfg.reward_support, cfg.reward_from).to(device)
        self.target_net = target_copy(self.net)
        self.modules = {"net": self.net, "target_net": self.target_net}
        self.optimizers = {"net": FusedAdam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)}
        self._params = list(self.net.parameters())

    # --- inference for the search -----------------------------------------------------------------------------

    def initial_inference(self, obs: torch.Tensor, target: bool = False):
        """(s^0, policy logits, value) of observations [B, *obs], from the online or the target network."""
        return (self.target_net if target else self.net).initial_inference(obs)

    def recurrent_inference(self, state: torch.Tensor, action: torch.Tensor, target: bool = False):
        """(reward, s^k, policy logits, value) after ``action`` [B] from ``state``."""
        return (self.target_net if target else self.net).recurrent_inference(state, action)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """argmax of the prior p^0 = f(h(o)) (no search), long [B]."""
        return self.net.initial_inference(obs)[1].argmax(-1)

    # --- the loss -----------------------------------------------------------------------------------------------

    def _scalar_loss(self, out: torch.Tensor, target: torch.Tensor, support: int) -> torch.Tensor:
        """Cross-entropy with the two-hot target (categorical head) or (target - out)^2 (scalar head), per row."""
        if support:
            return -(scalar_to_support(target, support) * F.log_softmax(out, -1)).sum(-1)
        return (out.squeeze(-1) - target).pow(2)

    def loss(self, batch: SegmentBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The unrolled loss of the module docstring (batch mean) and its parts summed over k (batch means)."""
        net, w_v = self.net, self.cfg.value_loss_weight
        K = batch.actions.shape[1]
        z = batch.target_value
        state = net.represent(batch.obs)
        total = torch.zeros(len(batch), device=self.device)
        parts = {"value_loss": 0.0, "reward_loss": 0.0, "policy_loss": 0.0}
        for k in range(K + 1):
            l_r = torch.zeros_like(total)
            if k > 0:
                reward_out, state = net.dynamics(state, batch.actions[:, k - 1])
                l_r = self._scalar_loss(reward_out, batch.target_reward[:, k - 1], net.reward_support) * batch.reward_mask[:, k - 1]
            logits, value_out = net.predict(state)
            l_v = self._scalar_loss(value_out, z[:, k], net.value_support) * batch.value_mask[:, k]
            l_p = -(batch.target_policy[:, k] * F.log_softmax(logits, -1)).sum(-1) * batch.policy_mask[:, k]
            step = l_r + w_v * l_v + l_p
            total = total + (step if k == 0 else step / K)  # the paper scales the gradient of k >= 1 by 1/K
            if k > 0:
                state = scale_gradient(state, 0.5)
            parts["value_loss"] = parts["value_loss"] + l_v.detach().mean()
            parts["reward_loss"] = parts["reward_loss"] + l_r.detach().mean()
            parts["policy_loss"] = parts["policy_loss"] + l_p.detach().mean()
        return total.mean(), parts

    def lr(self) -> float:
        cfg = self.cfg
        return cfg.lr * cfg.lr_decay_rate ** (self.num_updates / cfg.lr_decay_steps)

    def update(self, batch: SegmentBatch) -> dict[str, torch.Tensor]:
        opt = self.optimizers["net"]
        for group in opt.param_groups:
            group["lr"] = self.lr()
        loss, parts = self.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm > 0:
            self._clip_grad_norm(self._params, self.cfg.max_grad_norm)
        opt.step()
        self._watch(loss)
        self.num_updates += 1
        if self.num_updates % self.cfg.target_update_interval == 0:
            with torch.no_grad():
                torch._foreach_copy_(list(self.target_net.parameters()), list(self.net.parameters()))
        return {"loss": loss.detach(), **parts, "value_target": batch.target_value[:, 0].mean(), "lr": torch.tensor(self.lr())}
