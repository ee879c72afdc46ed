"""Ensemble dynamics models: deterministic (M1, MSE) and probabilistic Gaussian (M3, NLL), 003 / 000 2.2.

The model predicts the state *delta* ``s' - s`` (003 M2: ``s^_{t+1} ~ s_t + f(s_t, a_t)``), optionally the
reward beside it (MBPO's ``p_theta(s', r | s, a)``) and a termination logit. Inputs ``[s, a]`` and
targets ``[s' - s, r]`` are standardised with statistics of the training data; predictions are mapped
back to data units. A Gaussian model predicts ``N(mu, diag(sigma^2))`` with a log-variance softly kept
inside learned bounds (PETS/MBPO).

The ensemble's members (M4) differ by initialisation and by bootstrap samples (the trainer's job).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dynarl.config import one_of, param, positive, positive_sizes, to_dict, validate
from dynarl.errors import CheckpointError, ConfigError
from dynarl.models import losses
from dynarl.nn.ensemble import MBPO_WEIGHT_DECAYS, EnsembleNet
from dynarl.nn.normalizer import Normalizer

CHECKPOINT_TAG = "dynamics_model"


def _non_negative_all(x) -> str | None:
    return None if all(v >= 0 for v in x) else "must be a list of non-negative numbers"


@dataclass
class DynamicsModelConfig:
    kind: str = param("gaussian", one_of("gaussian", "deterministic"), "gaussian: NLL with learned variance (PETS/MBPO); deterministic: MSE")
    members: int = param(7, positive, "ensemble size M (MBPO 7, PETS 5)")
    hidden_sizes: tuple[int, ...] = param((200, 200, 200, 200), positive_sizes, "hidden widths (PETS/MBPO: 4x200)")
    activation: str = param("silu", one_of("silu", "swish", "relu", "tanh", "elu"), "hidden activation (PETS/MBPO: swish)")
    weight_decay: tuple[float, ...] = param(MBPO_WEIGHT_DECAYS, _non_negative_all, "L2 decay per layer, input to output, added to the loss")
    predict_delta: bool = param(True, help="predict s' - s (Nagabandi et al. 2018) rather than s'")
    learn_reward: bool = param(False, help="predict the reward jointly with the next state (MBPO)")
    learn_termination: bool = param(False, help="add a termination logit trained with cross-entropy")
    max_logvar_init: float = param(0.5, help="initial learned upper log-variance bound (normalised units)")
    min_logvar_init: float = param(-10.0, help="initial learned lower log-variance bound (normalised units)")
    logvar_penalty: float = param(0.01, help="coefficient of sum(max_logvar) - sum(min_logvar) in the loss")

    def check(self) -> str | None:
        if len(self.weight_decay) != len(self.hidden_sizes) + 1:
            return (
                f"weight_decay={list(self.weight_decay)} is invalid: it needs one entry per layer "
                f"({len(self.hidden_sizes) + 1} for hidden_sizes={list(self.hidden_sizes)})"
            )
        if self.min_logvar_init >= self.max_logvar_init:
            return f"min_logvar_init={self.min_logvar_init} is invalid: must be < max_logvar_init={self.max_logvar_init}"
        return None


class DynamicsModel(nn.Module):
    """An ensemble of ``members`` dynamics models evaluated as one batched network.

    Shapes: inputs are [N, dim] (shared by all members) or [E, N, dim] (one row set per member); outputs
    are [E, N, ...] where E = M, or the number of indices in ``members``. ``elite_idx`` holds the members
    chosen by the trainer on the holdout set; rollouts use only those.
    """

    def __init__(self, cfg: DynamicsModelConfig, obs_dim: int, act_dim: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None):
        super().__init__()
        validate(cfg)
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim
        self.probabilistic = cfg.kind == "gaussian"
        self.target_dim = obs_dim + int(cfg.learn_reward)
        out = self.target_dim * (2 if self.probabilistic else 1) + int(cfg.learn_termination)
        self.net = EnsembleNet(cfg.members, obs_dim + act_dim, cfg.hidden_sizes, out, cfg.activation, cfg.weight_decay, generator)
        self.input_normalizer = Normalizer(obs_dim + act_dim)
        self.target_normalizer = Normalizer(self.target_dim)
        if self.probabilistic:
            self.max_logvar = nn.Parameter(torch.full((1, 1, self.target_dim), cfg.max_logvar_init))
            self.min_logvar = nn.Parameter(torch.full((1, 1, self.target_dim), cfg.min_logvar_init))
        self.register_buffer("elite_idx", torch.arange(cfg.members))
        # per-dimension factor on the predicted (aleatoric) variance; 1 unless the trainer recalibrates
        self.register_buffer("variance_scale", torch.ones(self.target_dim))
        self.to(device)

    @property
    def members(self) -> int:
        return self.cfg.members

    @property
    def device(self) -> torch.device:
        return self.elite_idx.device

    # ------------------------------------------------------------------------------------------ data

    def targets(self, obs: torch.Tensor, next_obs: torch.Tensor, reward: torch.Tensor | None = None) -> torch.Tensor:
        """The regression target in data units: ``[s' - s (or s'), r]``, shape [..., target_dim]."""
        t = next_obs - obs if self.cfg.predict_delta else next_obs
        if self.cfg.learn_reward:
            if reward is None:
                raise ValueError("this model learns the reward (learn_reward=True): pass reward")
            t = torch.cat([t, reward.unsqueeze(-1).to(t)], dim=-1)
        return t

    @torch.no_grad()
    def fit_normalizers(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor, reward: torch.Tensor | None = None) -> None:
        self.input_normalizer.fit(torch.cat([obs, act], dim=-1))
        self.target_normalizer.fit(self.targets(obs, next_obs, reward))

    # ------------------------------------------------------------------------------------------ network

    def forward(self, obs: torch.Tensor, act: torch.Tensor, members: torch.Tensor | None = None):
        """Normalised-space outputs ``(mean, logvar or None, termination logit or None)``, each [E, N, ...]."""
        x = self.input_normalizer.normalize(torch.cat([obs, act.to(obs.dtype)], dim=-1))
        out = self.net(x, members)
        t = self.target_dim
        mean = out[..., :t]
        logvar = None
        if self.probabilistic:
            logvar = losses.soft_bound_logvar(out[..., t : 2 * t], self.max_logvar, self.min_logvar)
        term_logit = out[..., -1] if self.cfg.learn_termination else None
        return mean, logvar, term_logit

    # ------------------------------------------------------------------------------------------ losses

    def loss(self, obs, act, next_obs, reward=None, terminated=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss on per-member minibatches ([M, B, ...]): ``(total, per_member [M])``.

        total = sum_m L_m + sum_l decay_l ||W_l||^2 / 2 (+ 0.01 (sum max_logvar - sum min_logvar) if Gaussian),
        with L_m the NLL (003) or MSE (M1) of member m on normalised targets, as in PETS/MBPO.
        """
        mean, logvar, term_logit = self(obs, act)
        target = self.target_normalizer.normalize(self.targets(obs, next_obs, reward))
        if self.probabilistic:
            per_member = losses.gaussian_nll(mean, logvar, target)
        else:
            per_member = losses.mse_loss(mean, target)
        if self.cfg.learn_termination:
            if terminated is None:
                raise ValueError("this model learns termination (learn_termination=True): pass terminated")
            per_member = per_member + losses.termination_loss(term_logit, terminated)
        total = per_member.sum() + self.net.weight_decay_loss()
        if self.probabilistic:
            total = total + losses.logvar_bound_penalty(self.max_logvar, self.min_logvar, self.cfg.logvar_penalty)
        return total, per_member.detach()

    @torch.no_grad()
    def eval_mse(self, obs, act, next_obs, reward=None) -> torch.Tensor:
        """Per-member MSE of the predicted mean on normalised targets (the holdout score): [M]."""
        mean, _, _ = self(obs, act)
        target = self.target_normalizer.normalize(self.targets(obs, next_obs, reward))
        return losses.mse_loss(mean, target)

    def h_step_loss(self, obs_seq: torch.Tensor, act_seq: torch.Tensor) -> torch.Tensor:
        """SLBO's H-step delta loss (000 eq. 5) of every member's own mean rollout: [M].

        ``obs_seq`` [B, H+1, obs], ``act_seq`` [B, H, act] are real segments. Each member rolls out
        ``s^_{t+i} = s^_{t+i-1} + mu(s^_{t+i-1}, a_{t+i-1})`` from ``s_t`` (differentiably), and the loss is
        taken in normalised delta units so that every dimension counts alike. Minimise ``.sum()`` with one
        Adam step per batch as SLBO's Algorithm 2 does.
        """
        if not self.cfg.predict_delta or self.cfg.learn_reward:
            raise ConfigError("h_step_loss needs predict_delta=True and learn_reward=False (it compares state deltas only)")
        scale = self.target_normalizer.std
        s = obs_seq[:, 0].unsqueeze(0).expand(self.members, -1, -1)
        pred = [s]
        for i in range(act_seq.shape[1]):  # a loop over horizon steps, not members
            mean, _, _ = self(s, act_seq[:, i].unsqueeze(0).expand(self.members, -1, -1))
            s = s + self.target_normalizer.denormalize(mean)
            pred.append(s)
        pred_states = torch.stack(pred, dim=-2) / scale
        return losses.h_step_delta_loss(pred_states, obs_seq.unsqueeze(0) / scale)

    # ------------------------------------------------------------------------------------------ prediction

    @torch.no_grad()
    def predict(self, obs: torch.Tensor, act: torch.Tensor, members: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-member predictive distribution in data units.

        Returns ``next_obs_mean`` [E, N, obs], ``next_obs_var`` (aleatoric variance, times
        ``variance_scale``; zeros for a deterministic model), and when learned ``reward_mean``/``reward_var`` [E, N] and
        ``termination_prob`` [E, N]. ``obs`` may be [N, obs] (shared) or [E, N, obs].
        """
        mean_n, logvar_n, term_logit = self(obs, act, members)
        mean = self.target_normalizer.denormalize(mean_n)
        var = self.target_normalizer.denormalize_var(logvar_n.exp() * self.variance_scale) if logvar_n is not None else torch.zeros_like(mean)
        d = self.obs_dim
        next_mean = mean[..., :d] + obs if self.cfg.predict_delta else mean[..., :d]
        out = {"next_obs_mean": next_mean, "next_obs_var": var[..., :d]}
        if self.cfg.learn_reward:
            out["reward_mean"], out["reward_var"] = mean[..., d], var[..., d]
        if term_logit is not None:
            out["termination_prob"] = torch.sigmoid(term_logit)
        return out

    # ------------------------------------------------------------------------------------------ persistence

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # the elite set may be smaller than the ensemble: take its size from the saved state
        if "elite_idx" in state_dict:
            self.elite_idx = state_dict["elite_idx"].to(self.device, torch.long).clone()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def all_finite(self) -> bool:
        return bool(torch.stack([torch.isfinite(p).all() for p in self.parameters()]).all())

    def to_state(self) -> dict:
        """Everything needed to rebuild the model (config, sizes, tensors) for :func:`save_model`."""
        return {"config": to_dict(self.cfg), "obs_dim": self.obs_dim, "act_dim": self.act_dim, "weights": dict(self.state_dict())}

    @classmethod
    def from_state(cls, state: dict, device: torch.device | str = "cpu") -> "DynamicsModel":
        try:
            cfg = DynamicsModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["config"].items()})
            model = cls(cfg, int(state["obs_dim"]), int(state["act_dim"]), device)
            model.load_state_dict(state["weights"])
        except (KeyError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"the checkpoint does not hold a compatible dynamics model ({e})") from None
        return model


def save_model(path: str | Path, model: DynamicsModel) -> None:
    """Write a dynamics model (atomic; safetensors + JSON, tag ``dynamics_model``)."""
    from dynarl.checkpoint import save_checkpoint

    save_checkpoint(path, CHECKPOINT_TAG, model.to_state())


def load_model(path: str | Path, device: torch.device | str = "cpu") -> DynamicsModel:
    """Read a model written by :func:`save_model`; never unpickles."""
    from dynarl.checkpoint import load_checkpoint

    _, state = load_checkpoint(path, expect_algo=CHECKPOINT_TAG)
    return DynamicsModel.from_state(state, device)
