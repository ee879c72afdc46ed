"""Fitting an ensemble dynamics model: bootstrap minibatches, holdout, per-member early stopping, elites.

The procedure of MBPO's ``BNN.train`` (and mbrl-lib's ``ModelTrainer``), the reference point for PETS-family
reproductions:

1. hold out ``min(holdout_ratio * N, max_holdout)`` random transitions; fit the normalisers on the rest;
2. give every member its own bootstrap sample (N draws with replacement, 000 "differently sampled data"),
   reshuffled each epoch; one minibatch step trains all members at once ([M, B, ...] inputs);
3. after each epoch score every member on the holdout set (MSE of normalised targets); a member whose
   score improved by more than ``improvement_threshold`` (relative) saves its *own* snapshot;
4. stop once ``patience`` epochs pass with no member improving; restore each member's best snapshot;
5. the elites are the ``num_elites`` members with the best holdout score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from dynarl.config import non_negative, param, positive, unit_interval_open_closed, validate
from dynarl.errors import ConfigError, TrainingDivergedError
from dynarl.models.dynamics import DynamicsModel


def _positive_or_none(x) -> str | None:
    return None if x > 0 else "must be > 0 (or null to use elite_fraction)"


def _holdout_share(x) -> str | None:
    return None if 0 <= x < 1 else "must be in [0, 1): some data must be left to train on"


@dataclass
class ModelTrainerConfig:
    batch_size: int = param(256, positive, "minibatch rows per member (MBPO: 256)")
    lr: float = param(1e-3, positive, "Adam learning rate (MBPO: 1e-3)")
    holdout_ratio: float = param(0.2, _holdout_share, "share of the data held out for early stopping and elites, in [0, 1)")
    max_holdout: int = param(5000, non_negative, "cap on the holdout size (MBPO: 5000)")
    max_epochs: int = param(200, positive, "hard cap on epochs per fit")
    patience: int = param(5, positive, "stop after this many epochs with no member improving")
    improvement_threshold: float = param(0.01, non_negative, "relative holdout improvement that counts (0.01 = 1%)")
    bootstrap: bool = param(True, help="per-member bootstrap resampling of the training set")
    num_elites: int | None = param(None, _positive_or_none, "elite count; null = round(elite_fraction * members)")
    elite_fraction: float = param(1.0, unit_interval_open_closed, "share of members kept as elites when num_elites is null")
    recalibrate: bool = param(
        False,
        help="after training, fit a per-dimension scale of the predicted variance on the holdout so that the "
        "elites' predictive covers the Gaussian 1/1.5/2 sigma shares (Kuleshov et al. 2018; Malik et al. 2019); "
        "off in PETS/MBPO",
    )


@dataclass
class FitResult:
    """``rows``: one dict per epoch (train loss and holdout MSE, mean and per member) for the logger;
    ``metrics``: the final summary (holdout MSE of the restored members, elites, epochs)."""

    rows: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


class ModelTrainer:
    """Trains a :class:`DynamicsModel` in place; owns its Adam optimiser and its seeded generator."""

    def __init__(self, model: DynamicsModel, cfg: ModelTrainerConfig | None = None, generator: torch.Generator | None = None, seed: int = 0):
        self.cfg = cfg or ModelTrainerConfig()
        validate(self.cfg)
        self.model = model
        if self.cfg.num_elites is not None and self.cfg.num_elites > model.members:
            raise ConfigError(f"num_elites={self.cfg.num_elites} is invalid: must be <= members={model.members}")
        self.generator = generator if generator is not None else torch.Generator(device=model.device).manual_seed(seed)
        # fused Adam: one kernel for all parameters; the L2 term is in the loss, so this is plain Adam as in MBPO
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.cfg.lr, fused=model.device.type in ("cpu", "cuda"))
        self.num_fits = 0

    @property
    def num_elites(self) -> int:
        if self.cfg.num_elites is not None:
            return self.cfg.num_elites
        return max(1, round(self.cfg.elite_fraction * self.model.members))

    # ------------------------------------------------------------------------------------------ fit

    def fit(self, obs, act, next_obs, reward=None, terminated=None) -> FitResult:
        """Fit on transitions [N, ...] (tensors on the model's device). Returns per-epoch rows and a summary."""
        cfg, model, g = self.cfg, self.model, self.generator
        dev = model.device
        data = {"obs": obs, "act": act, "next_obs": next_obs}
        if reward is not None:
            data["reward"] = reward
        if terminated is not None:
            data["terminated"] = terminated.float()
        data = {k: v.to(dev, torch.float32) for k, v in data.items()}
        n = data["obs"].shape[0]
        M = model.members

        perm = torch.randperm(n, generator=g, device=dev)
        n_hold = min(int(n * cfg.holdout_ratio), cfg.max_holdout)
        hold = {k: v[perm[:n_hold]] for k, v in data.items()}
        train = {k: v[perm[n_hold:]] for k, v in data.items()}
        n_train = n - n_hold
        if n_hold == 0:  # too little data for a holdout: score on the training set instead
            hold = train
        model.fit_normalizers(train["obs"], train["act"], train["next_obs"], train.get("reward"))
        model.variance_scale.fill_(1.0)

        if cfg.bootstrap:
            member_idx = torch.randint(n_train, (M, n_train), generator=g, device=dev)
        else:
            member_idx = torch.arange(n_train, device=dev).expand(M, n_train)

        member_params = list(model.net.parameters())  # all shaped [M, ...]
        best_params = [p.detach().clone() for p in member_params]
        best_score = torch.full((M,), math.inf, device=dev)
        rows: list[dict] = []
        since_update = 0
        batches = math.ceil(n_train / cfg.batch_size)

        for epoch in range(1, cfg.max_epochs + 1):
            # reshuffle each member's bootstrap sample independently (argsort of uniforms = M permutations at once)
            order = torch.rand((M, n_train), generator=g, device=dev).argsort(dim=1)
            epoch_idx = member_idx.gather(1, order)
            loss_sum = torch.zeros(M, device=dev)
            for b in range(batches):  # loop over minibatches; all members train in the same step
                idx = epoch_idx[:, b * cfg.batch_size : (b + 1) * cfg.batch_size]
                batch = {k: v[idx] for k, v in train.items()}
                total, per_member = model.loss(**batch)
                self.optimizer.zero_grad(set_to_none=True)
                total.backward()
                self.optimizer.step()
                loss_sum += per_member
            score = self._holdout_score(hold)
            train_loss = loss_sum / batches
            if not bool(torch.isfinite(train_loss).all() & torch.isfinite(score).all()):
                raise TrainingDivergedError(
                    f"model training diverged at epoch {epoch}: non-finite loss (train {train_loss.tolist()}, holdout {score.tolist()}); "
                    "lower trainer.lr or check the data for NaN/inf"
                )
            improved = (best_score - score) / best_score.abs().clamp_min(1e-12) > cfg.improvement_threshold
            improved |= torch.isinf(best_score)
            with torch.no_grad():
                for p, best in zip(member_params, best_params):  # loop over layers; members are masked at once
                    best[improved] = p.detach()[improved]
            best_score = torch.where(improved, score, best_score)
            since_update = 0 if bool(improved.any()) else since_update + 1
            rows.append(self._row(epoch, train_loss, score, best_score, since_update))
            if since_update >= cfg.patience:
                break

        with torch.no_grad():
            for p, best in zip(member_params, best_params):
                p.copy_(best)
        score = self._holdout_score(hold)
        elites = torch.argsort(score)[: self.num_elites].sort().values
        model.elite_idx = elites.to(dev)
        if cfg.recalibrate and model.probabilistic:
            from dynarl.models.diagnostics import fit_variance_scale

            model.variance_scale = fit_variance_scale(model, hold["obs"], hold["act"], hold["next_obs"], hold.get("reward"))
        self.num_fits += 1
        metrics = {
            "model_epochs": len(rows),
            "model_train_loss": rows[-1]["train_loss"],
            "model_holdout_mse": float(score[elites].mean()),
            "model_elites": elites.tolist(),
            "model_holdout_size": n_hold,
            **({"model_variance_scale": model.variance_scale.tolist()} if cfg.recalibrate else {}),
            **{f"model_holdout_mse_m{i}": v for i, v in enumerate(score.tolist())},
        }
        return FitResult(rows, metrics)

    def fit_replay(self, buffer) -> FitResult:
        """Fit on everything in a :class:`dynarl.data.replay.ReplayBuffer`."""
        s = {k: v[: len(buffer)] for k, v in buffer.storage.items()}
        reward = s["reward"] if self.model.cfg.learn_reward else None
        term = s["terminated"] if self.model.cfg.learn_termination else None
        return self.fit(s["obs"], s["act"], s["next_obs"], reward, term)

    @torch.no_grad()
    def _holdout_score(self, hold: dict, chunk: int = 8192) -> torch.Tensor:
        n = hold["obs"].shape[0]
        total = torch.zeros(self.model.members, device=self.model.device)
        for i in range(0, n, chunk):
            part = {k: v[i : i + chunk] for k, v in hold.items() if k != "terminated"}
            total += self.model.eval_mse(**part) * part["obs"].shape[0]
        return total / max(n, 1)

    @staticmethod
    def _row(epoch, train_loss, score, best_score, since_update) -> dict:
        row = {
            "epoch": epoch,
            "train_loss": float(train_loss.mean()),
            "holdout_mse": float(score.mean()),
            "best_holdout_mse": float(best_score.mean()),
            "epochs_since_update": since_update,
        }
        row.update({f"train_loss_m{i}": v for i, v in enumerate(train_loss.tolist())})
        row.update({f"holdout_mse_m{i}": v for i, v in enumerate(score.tolist())})
        return row

    # ------------------------------------------------------------------------------------------ persistence

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(), "num_fits": self.num_fits}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.num_fits = int(state["num_fits"])
