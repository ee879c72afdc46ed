"""Learning from a fixed dataset: a dataset source + a learner, on the gradient-step clock.

    load the Minari dataset D; standardise its observations (mean and std of D), optionally rescale rewards
    repeat steps times:
        batch <- D.sample(batch_size)
        learner.update(batch)
    the policy acts on (s - mean) / std; evaluation runs it in the env the dataset records

Every offline method is this loop with another learner: BC (behaviour cloning), CQL (SAC's learner with the
conservative regulariser), IQL, AWAC, offline SAC (the negative control: SAC with no constraint diverges on
out-of-distribution actions) and FQI / offline DQN for discrete actions. Scores are also reported
normalised, D4RL-style: 100 (R - R_random) / (R_expert - R_random) with the dataset's reference returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces

from dynarl.algos.base import Algorithm
from dynarl.algos.registry import register
from dynarl.config import RunConfig, param, positive
from dynarl.data.datasets import DatasetError, dataset_env_id, dataset_metadata, load_episodes, normalized_score
from dynarl.envs.spaces import BOX, DISCRETE, space_kind, space_mismatch
from dynarl.errors import ConfigError, EnvError
from dynarl.learners.awac import AWACLearner, AWACLearnerConfig
from dynarl.learners.base import flat_dim
from dynarl.learners.bc import BCLearner, BCLearnerConfig, unread_batch_size
from dynarl.learners.cql import CQLLearner, CQLLearnerConfig
from dynarl.learners.dqn import DQNLearner, DQNLearnerConfig
from dynarl.learners.iql import IQLLearner, IQLLearnerConfig
from dynarl.learners.sac import SACLearner, SACLearnerConfig
from dynarl.nn.normalizer import Normalizer
from dynarl.sources.dataset import DatasetSource


@dataclass
class OfflineConfig(RunConfig):
    env: str = param("", help="Gymnasium id to evaluate in (default: the env the dataset was collected on)")
    dataset: str = param("", help="Minari dataset id under $MINARI_DATASETS_PATH, e.g. local/pendulum/medium-v0 (`dynarl dataset list`)")
    steps: int = param(100_000, positive, "total gradient steps")
    eval_every: int = param(5_000, positive, "gradient steps between evaluations")
    checkpoint_every: int = param(10_000, positive, "gradient steps between checkpoints (one is also written at the end)")
    log_every: int = param(1_000, positive, "gradient steps between metric rows / console lines")
    batch_size: int = param(256, positive, "minibatch size")
    normalize_observations: bool = param(True, help="standardise observations with the dataset's mean and std (Box observations)")
    reward_scale: float = param(1.0, help="r <- reward_scale * r + reward_shift before training")
    normalize_reward: bool = param(False, help="also scale rewards by 1000 / (max - min episode return of the dataset), CORL's locomotion setting: IQL's beta and CQL's alpha act on return-sized values")
    reward_shift: float = param(0.0, help="see reward_scale")

    def check(self) -> str | None:
        if not self.dataset:
            return f"{self.algo} learns from a dataset: pass dataset=ID (e.g. `dynarl train {self.algo} --dataset local/pendulum/medium-v0`); list them with `dynarl dataset list`"
        return None


class OfflineAlgorithm(Algorithm):
    """The loop above; a subclass names its learner (``learner_cls``) and config."""

    clock = "gradient_steps"
    action_spaces = (BOX,)
    observation_spaces = (BOX,)
    learner_cls: ClassVar[type]
    needs_rewards: ClassVar[bool] = True  # False for imitation, which learns from (s, a) alone

    @classmethod
    def default_env(cls, overrides: dict) -> str | None:
        """The env a dataset was collected on, from its metadata (so ``dataset=ID`` alone is enough)."""
        dataset = overrides.get("dataset")
        if not dataset:
            return None
        env_id = dataset_env_id(dataset)
        if env_id is None:
            raise ConfigError(f"dataset {dataset!r} records no environment; pass env=ID to evaluate in (e.g. env=Pendulum-v1)")
        return env_id

    def _setup(self) -> None:
        if self.policy_only:
            self._setup_policy()
            return
        cfg = self.cfg
        episodes = load_episodes(cfg.dataset)
        env = self.eval_env
        self._check_dataset_spaces(episodes, env.observation_space, env.action_space)
        kind = space_kind(episodes.action_space)
        if kind not in self.action_spaces:
            instead = "cql, iql, awac or bc" if kind == BOX else "fqi or bc"
            raise EnvError(f"{self.name.upper()} needs {' or '.join(self.action_spaces)} actions but dataset {cfg.dataset!r} ({self.env_name}) has {episodes.action_space}; use {instead} for this data")
        self.check_spaces(episodes.observation_space, episodes.action_space)
        self.ref_scores = (episodes.ref_min_score, episodes.ref_max_score)
        self.dataset = self._make_source(episodes)
        self.obs_normalizer = Normalizer(flat_dim(self.observation_space)).to(self.device)
        if cfg.normalize_observations and isinstance(self.observation_space, spaces.Box):
            mean, std = self.dataset.observation_stats()
            self.obs_normalizer.mean.copy_(mean)
            self.obs_normalizer.std.copy_(std)
            self.dataset.normalize_observations(mean, std)
        scale = cfg.reward_scale
        if cfg.normalize_reward and episodes.rewards is not None:
            returns = episodes.episode_returns()
            spread = float(returns.max() - returns.min())
            if spread <= 0:
                raise ConfigError(f"normalize_reward=true needs episodes with different returns, but every episode of {cfg.dataset!r} returns {returns[0]:.6g}; use reward_scale instead")
            scale *= 1000.0 / spread
        if self.needs_rewards and (scale != 1.0 or cfg.reward_shift != 0.0):  # imitation ignores rewards
            self.dataset.scale_rewards(scale, cfg.reward_shift)
        self.learner = self.learner_cls(cfg.learner, self.observation_space, self.action_space, self.device)

    def _setup_policy(self) -> None:
        """What acting needs, without the dataset: spaces from the eval env, the learner, the observation
        normaliser (both restored from the checkpoint); the reference returns for normalised scores come from the
        dataset's metadata when it is still present."""
        env = self.eval_env
        self.check_spaces(env.observation_space, env.action_space)
        try:
            meta = dataset_metadata(self.cfg.dataset)
        except DatasetError:  # the dataset is gone: evaluation needs only the env, and the score is left out
            meta = {}
        self.ref_scores = (meta.get("ref_min_score"), meta.get("ref_max_score"))
        self.dataset = None
        self.obs_normalizer = Normalizer(flat_dim(self.observation_space)).to(self.device)
        self.learner = self.learner_cls(self.cfg.learner, self.observation_space, self.action_space, self.device)

    def _make_source(self, episodes):
        """Where batches come from: the dataset's transitions, actions in the learner's [-1, 1]."""
        return DatasetSource.from_episodes(episodes, self.device, require_rewards=self.needs_rewards, actions=self.actions.from_env(episodes.actions))

    def _check_dataset_spaces(self, episodes, observation_space, action_space) -> None:
        for what, ours, theirs in (("observation", episodes.observation_space, observation_space), ("action", episodes.action_space, action_space)):
            if space_mismatch(ours, theirs):
                raise DatasetError(f"dataset {episodes.dataset_id!r} has {what} space {ours} but env {self.cfg.env} has {theirs}; evaluate in the env the data came from")

    def parts(self) -> dict[str, Any]:
        if self.policy_only:
            return {"learner": self.learner, "obs_normalizer": self.obs_normalizer}
        return {"learner": self.learner, "dataset": self.dataset, "obs_normalizer": self.obs_normalizer}

    def train_step(self) -> None:
        self._last_metrics = self.learner.update(self.dataset.sample(self.cfg.batch_size))

    def _policy_input(self, obs: np.ndarray) -> torch.Tensor:
        obs_t = torch.as_tensor(np.asarray(obs), device=self.device)
        return self.obs_normalizer.normalize(obs_t.float()) if obs_t.is_floating_point() else obs_t

    def normalized_score(self, mean_return: float) -> float | None:
        score = normalized_score(mean_return, *self.ref_scores)
        return None if score is None else float(score)

    def summary(self) -> dict:
        out = super().summary()
        out.update(dataset=self.cfg.dataset, dataset_transitions=None if self.dataset is None else len(self.dataset), normalized_score=self.normalized_score(out["eval_return_mean"]))
        return out

    def on_evaluation(self, mean_return: float, std_return: float) -> None:
        score = self.normalized_score(mean_return)
        if score is not None:
            self._last_metrics = {**getattr(self, "_last_metrics", {}), "eval/normalized_score": score}


# --- the offline family: one learner each -------------------------------------------------------------------


@dataclass
class BCConfig(OfflineConfig):
    algo: str = "bc"
    steps: int = 20_000
    learner: BCLearnerConfig = field(default_factory=lambda: BCLearnerConfig(hidden_sizes=(256, 256), activation="relu", lr=1e-3))

    def check(self) -> str | None:
        return unread_batch_size(self.learner, self.algo) or super().check()


@register
class BC(OfflineAlgorithm):
    """Behaviour cloning: fit a policy to the dataset's actions; needs no rewards.

    max_theta E_(s,a)~D log pi_theta(a|s) (seed 001); ``learner.loss=mse`` fits a deterministic policy by min E ||pi(s) - a||^2, ``nll`` a Gaussian; discrete actions use the
    categorical likelihood. Rewards are not needed."""

    name, config_cls, learner_cls = "bc", BCConfig, BCLearner
    action_spaces = (BOX, DISCRETE)
    needs_rewards = False


@dataclass
class CQLConfig(OfflineConfig):
    algo: str = "cql"
    learner: CQLLearnerConfig = field(default_factory=CQLLearnerConfig)


@register
class CQL(OfflineAlgorithm):
    """Conservative Q-learning (Kumar et al. 2020): SAC plus a regulariser that pushes down Q off the data.

    The CQL(H) regulariser (seed 001) added to SAC's critic loss: alpha (E_s log sum_a exp Q(s, a) - E_(s,a)~D Q(s, a))."""

    name, config_cls, learner_cls = "cql", CQLConfig, CQLLearner


@dataclass
class IQLConfig(OfflineConfig):
    algo: str = "iql"
    learner: IQLLearnerConfig = field(default_factory=IQLLearnerConfig)


@register
class IQL(OfflineAlgorithm):
    """Implicit Q-learning (Kostrikov et al. 2021): expectile V and advantage-weighted policy extraction.

    V is an upper expectile of Q over the data's actions, Q(s, a) <- r + gamma V(s') (seed 001), and advantage-weighted regression for the policy; no out-of-distribution action is ever queried."""

    name, config_cls, learner_cls = "iql", IQLConfig, IQLLearner


@dataclass
class AWACConfig(OfflineConfig):
    algo: str = "awac"
    learner: AWACLearnerConfig = field(default_factory=AWACLearnerConfig)


@register
class AWAC(OfflineAlgorithm):
    """Advantage-weighted actor-critic (Nair et al. 2020): weighted likelihood of the dataset's actions.

    pi <- argmax E_D[log pi(a|s) exp(A(s, a) / lambda)] (seed 001)."""

    name, config_cls, learner_cls = "awac", AWACConfig, AWACLearner


@dataclass
class OfflineSACConfig(OfflineConfig):
    algo: str = "offline_sac"
    learner: SACLearnerConfig = field(default_factory=SACLearnerConfig)


@register
class OfflineSAC(OfflineAlgorithm):
    """Plain SAC on a fixed dataset: the negative control of offline RL, expected to collapse.

    Its target queries Q at actions the
    data never took, overestimates them and the policy follows the error (seed 001's distribution shift)."""

    name, config_cls, learner_cls = "offline_sac", OfflineSACConfig, SACLearner


@dataclass
class FQIConfig(OfflineConfig):
    algo: str = "fqi"
    batch_size: int = param(256, positive, "minibatch size")
    learner: DQNLearnerConfig = field(default_factory=lambda: DQNLearnerConfig(lr=3e-4, hidden_sizes=(256, 256), target_update_interval=1_000))


@register
class FQI(OfflineAlgorithm):
    """Fitted Q iteration / offline DQN (Ernst et al. 2005, Riedmiller 2005) on discrete-action datasets.

    Each block of ``target_update_interval`` gradient steps regresses Q on the frozen target
    y = r + gamma (1 - terminated) max_a' Q'(s', a'); then Q' <- Q."""

    name, config_cls, learner_cls = "fqi", FQIConfig, DQNLearner
    action_spaces = (DISCRETE,)
    observation_spaces = (BOX, DISCRETE)
