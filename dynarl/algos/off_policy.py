"""The online off-policy loop: real env -> replay buffer -> any off-policy learner (SAC, TD3, DDPG).

    for each env step:
        a ~ uniform           while env_steps < learning_starts, else a = learner.act(s)
        s', r, terminated, truncated = env.step(a); store it; reset at the end of an episode
        every train_freq steps: updates_per_step x learner.update(buffer.sample(batch_size))
        evaluate / log / checkpoint on their intervals

Learners act in [-1, 1]^|A|; the loop rescales to the env's bounds. The checkpoint holds everything
needed to continue exactly: learner, buffer, counters, RNG states, and the current episode's reset
state and actions (replayed on resume to rebuild the env's internal state without pickling it).
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from dynarl.data.replay import ReplayBuffer
from dynarl.envs import check_continuous_actions, make_env
from dynarl.errors import CheckpointError, ConfigError, EnvError, TrainingDivergedError
from dynarl.learners.base import Learner
from dynarl.run import checkpoint as ckpt
from dynarl.run.config import RunConfig, param, positive, to_dict, validate
from dynarl.run.evaluate import evaluate
from dynarl.run.logger import MetricsLogger, Progress
from dynarl.run.rundir import RunDir
from dynarl.run.seeding import resolve_device, seed_everything, set_torch_rng_state, torch_rng_state


@dataclass
class OffPolicyConfig(RunConfig):
    buffer_size: int = param(1_000_000, positive, "replay capacity (transitions)")
    batch_size: int = param(256, positive, "minibatch size")
    learning_starts: int = param(5_000, positive, "uniform-random steps before learning starts")
    train_freq: int = param(1, positive, "env steps between update rounds")
    updates_per_step: int = param(1, positive, "gradient updates per update round (G)")
    env_kwargs: dict | None = param(None, help="extra keyword arguments for gymnasium.make (JSON object)")

    def check(self) -> str | None:
        if self.batch_size > self.buffer_size:
            return f"batch_size={self.batch_size} is larger than buffer_size={self.buffer_size}"
        return None


class OffPolicyAlgorithm:
    """``learn(total_steps)``, ``predict(obs)``, ``save(path)``; see module docstring for the loop."""

    name: ClassVar[str]
    config_cls: ClassVar[type[OffPolicyConfig]]
    learner_cls: ClassVar[type[Learner]]

    def __init__(self, env: str | None = None, config: OffPolicyConfig | None = None, **overrides):
        from dynarl.algos.registry import build_config

        if config is None:
            config = build_config(self.name, env, overrides)
        elif env is not None or overrides:
            raise ConfigError("pass either a config object or env/overrides, not both")
        else:
            validate(config)
        self.cfg = cfg = config
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        self.device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        self.env = make_env(cfg.env, **(cfg.env_kwargs or {}))
        check_continuous_actions(self.env, self.name.upper())
        self.eval_env = make_env(cfg.env, **(cfg.env_kwargs or {}))
        space = self.env.action_space
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise EnvError(f"{cfg.env} has unbounded actions {space}; {self.name.upper()} needs finite action bounds")
        self.act_low = space.low.astype(np.float32)
        self.act_scale = ((space.high - space.low) / 2).astype(np.float32)
        obs_shape = self.env.observation_space.shape
        if obs_shape is None or len(obs_shape) != 1:
            raise EnvError(f"{cfg.env} has observations of shape {obs_shape}; {self.name.upper()} takes flat vector observations")
        self.obs_dim, self.act_dim = int(obs_shape[0]), int(space.shape[0])
        self.learner = self.learner_cls(cfg.learner, self.obs_dim, self.act_dim, self.device)
        self.buffer = ReplayBuffer(cfg.buffer_size, self.obs_dim, self.act_dim, self.device)
        self.np_rng = np.random.default_rng(cfg.seed)
        self.env_steps = 0
        self.episodes = 0
        self.wall_seconds = 0.0
        self.recent_returns: deque[float] = deque(maxlen=10)
        self.last_eval: tuple[float, float] | None = None
        self._obs: np.ndarray | None = None
        self._episode_return = 0.0
        self._episode_length = 0
        self._episode_reset: dict | None = None  # how the current episode was reset (seed or rng state)
        self._episode_actions: list[np.ndarray] = []
        self._last_metrics: dict[str, torch.Tensor] = {}

    # --- acting -----------------------------------------------------------------------------------

    def _to_env_action(self, act: np.ndarray) -> np.ndarray:
        return (self.act_low + (act + 1.0) * self.act_scale).astype(np.float32)

    def predict(self, obs, deterministic: bool = True) -> np.ndarray:
        """The env-scaled action for one observation (or a batch, leading dim = rows)."""
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        act = self.learner.act(obs_t.unsqueeze(0) if obs_t.dim() == 1 else obs_t, deterministic)
        act = act.cpu().numpy()
        return self._to_env_action(act[0] if obs_t.dim() == 1 else act)

    # --- the episode, replayable ------------------------------------------------------------------

    def _reset_env(self) -> None:
        if self._episode_reset is None and self.episodes == 0 and self.env_steps == 0:
            self._episode_reset = {"seed": self.cfg.seed}
            self._obs, _ = self.env.reset(seed=self.cfg.seed)
        else:
            self._episode_reset = {"rng": self.env.unwrapped.np_random.bit_generator.state}
            self._obs, _ = self.env.reset()
        self._episode_actions = []
        self._episode_return, self._episode_length = 0.0, 0

    def _replay_episode(self, reset: dict, actions: np.ndarray) -> None:
        """Rebuild the env's state mid-episode: reset it as it was, then replay the episode's actions."""
        self.env.reset(seed=self.cfg.seed)
        if "rng" in reset:
            self.env.unwrapped.np_random.bit_generator.state = reset["rng"]
            obs, _ = self.env.reset()
        else:
            obs, _ = self.env.reset(seed=reset["seed"])
        for a in actions:
            obs, *_ = self.env.step(a)
        self._obs = obs
        self._episode_reset = reset
        self._episode_actions = list(actions)

    def _env_step(self) -> None:
        if self.env_steps < self.cfg.learning_starts:
            act = self.np_rng.uniform(-1.0, 1.0, self.act_dim).astype(np.float32)
        else:
            obs_t = torch.as_tensor(self._obs, dtype=torch.float32, device=self.device).unsqueeze(0)
            act = self.learner.act(obs_t, deterministic=False)[0].cpu().numpy()
        env_act = self._to_env_action(act)
        next_obs, reward, terminated, truncated, _ = self.env.step(env_act)
        self._episode_actions.append(env_act)
        self.buffer.add(self._obs, act, reward, next_obs, terminated, truncated)
        self._episode_return += float(reward)
        self._episode_length += 1
        self.env_steps += 1
        if terminated or truncated:
            self.recent_returns.append(self._episode_return)
            self.episodes += 1
            self._reset_env()
        else:
            self._obs = next_obs

    # --- the loop ---------------------------------------------------------------------------------

    def learn(self, total_steps: int | None = None, run_dir: str | Path | None = None) -> "OffPolicyAlgorithm":
        """Train until ``total_steps`` env steps in all (default: the config's ``steps``).

        With ``run_dir`` (a folder, or a :class:`RunDir`), metrics, TensorBoard events, checkpoints,
        the plot and ``summary.json`` are written there.
        """
        cfg = self.cfg
        total = int(cfg.steps if total_steps is None else total_steps)
        if total <= 0:
            raise ConfigError(f"total_steps={total} is invalid: must be > 0")
        run = run_dir if isinstance(run_dir, RunDir) or run_dir is None else RunDir.create(run_dir, to_dict(cfg))
        logger = MetricsLogger(run.path if run else None, resume_step=self.env_steps if self.env_steps > 0 else None)
        progress = Progress(total, quiet=cfg.quiet)
        if self._obs is None:
            self._reset_env()
        start_wall, start_steps = time.perf_counter(), self.env_steps
        wall_before = self.wall_seconds
        try:
            while self.env_steps < total:
                self._env_step()
                if self.env_steps >= cfg.learning_starts and self.env_steps % cfg.train_freq == 0:
                    for _ in range(cfg.updates_per_step):
                        self._last_metrics = self.learner.update(self.buffer.sample(cfg.batch_size))
                self.wall_seconds = wall_before + time.perf_counter() - start_wall
                step = self.env_steps
                if step % cfg.eval_every == 0 or step == total:
                    self.last_eval = self._evaluate()
                if step % cfg.log_every == 0 or step == total:
                    self._log(logger, progress, start_steps, start_wall)
                if run and (step % cfg.checkpoint_every == 0 or step == total):
                    self._checkpoint(run)
        finally:
            logger.close()
        if run:
            run.finish(self.summary())
        return self

    def _evaluate(self) -> tuple[float, float]:
        returns = evaluate(self.eval_env, self.predict, self.cfg.eval_episodes, self.cfg.seed)
        return float(returns.mean()), float(returns.std())

    def _log(self, logger: MetricsLogger, progress: Progress, start_steps: int, start_wall: float) -> None:
        self._check_finite()
        elapsed = max(time.perf_counter() - start_wall, 1e-9)
        speed = (self.env_steps - start_steps) / elapsed
        row = {k: float(v) for k, v in self._last_metrics.items()}
        recent = float(np.mean(self.recent_returns)) if self.recent_returns else None
        row.update(episode_return=recent, episodes=self.episodes, wall_seconds=round(self.wall_seconds, 3), env_steps_per_second=round(speed, 2), updates=self.learner.num_updates)
        if self.last_eval is not None and (self.env_steps % self.cfg.eval_every == 0 or self.env_steps == progress.total):
            row.update(eval_return_mean=self.last_eval[0], eval_return_std=self.last_eval[1])
        logger.log(self.env_steps, row)
        progress.show(self.env_steps, recent, row.get("eval_return_mean"), speed)

    def _check_finite(self) -> None:
        if not self.learner.all_finite():
            raise TrainingDivergedError(
                f"{self.name.upper()} on {self.cfg.env}: a loss or parameter became non-finite (NaN/inf) by env step {self.env_steps}. "
                "Training stopped; the last good checkpoint is kept. Try a lower learning rate, or check the environment's rewards and observations for NaN."
            )

    # --- state ------------------------------------------------------------------------------------

    def state_dict(self, include_buffer: bool = True) -> dict:
        return {
            "config": to_dict(self.cfg),
            "learner": self.learner.state_dict(),
            "buffer": self.buffer.state_dict() if include_buffer else None,
            "counters": {
                "env_steps": self.env_steps,
                "episodes": self.episodes,
                "wall_seconds": self.wall_seconds,
                "recent_returns": list(self.recent_returns),
                "last_eval": list(self.last_eval) if self.last_eval else None,
                "episode_return": self._episode_return,
                "episode_length": self._episode_length,
            },
            "rng": {"torch": torch_rng_state(), "numpy": self.np_rng.bit_generator.state},
            "episode": {
                "reset": self._episode_reset,
                "actions": torch.as_tensor(np.asarray(self._episode_actions, dtype=np.float32).reshape(-1, self.act_dim)),
            }
            if self._obs is not None
            else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
        if state.get("buffer") is not None:
            self.buffer.load_state_dict(state["buffer"])
        c = state["counters"]
        self.env_steps, self.episodes, self.wall_seconds = int(c["env_steps"]), int(c["episodes"]), float(c["wall_seconds"])
        self.recent_returns = deque(c["recent_returns"], maxlen=10)
        self.last_eval = tuple(c["last_eval"]) if c["last_eval"] else None
        set_torch_rng_state(state["rng"]["torch"])
        self.np_rng.bit_generator.state = state["rng"]["numpy"]
        if state.get("episode") is not None and state.get("buffer") is not None:
            self._replay_episode(state["episode"]["reset"], state["episode"]["actions"].numpy())
            self._episode_return, self._episode_length = float(c["episode_return"]), int(c["episode_length"])

    def _checkpoint(self, run: RunDir) -> None:
        self._check_finite()
        run.save_checkpoint(self.env_steps, self.name, self.state_dict(), self.cfg.keep_checkpoints)

    def save(self, path: str | Path, include_buffer: bool = False) -> None:
        """Save the agent (networks, optimisers, counters, config; the replay buffer on request)."""
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        ckpt.save_checkpoint(path, self.name, self.state_dict(include_buffer))

    @classmethod
    def from_state(cls, state: dict, **run_overrides) -> "OffPolicyAlgorithm":
        from dynarl.algos.registry import config_from_dict

        cfg = config_from_dict(cls.name, state["config"], run_overrides)
        agent = cls(config=cfg)
        try:
            agent.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise CheckpointError(f"the checkpoint does not match a {cls.name.upper()} agent with its own config ({e})") from None
        return agent

    @classmethod
    def load(cls, path: str | Path, **run_overrides) -> "OffPolicyAlgorithm":
        algo, state = ckpt.load_checkpoint(path, expect_algo=cls.name)
        return cls.from_state(state, **run_overrides)

    def summary(self) -> dict:
        mean, std = self.last_eval if self.last_eval else (math.nan, math.nan)
        return {
            "algo": self.name,
            "env": self.cfg.env,
            "seed": self.cfg.seed,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "eval_return_mean": mean,
            "eval_return_std": std,
            "eval_episodes": self.cfg.eval_episodes,
            "wall_seconds": round(self.wall_seconds, 3),
            "env_steps_per_second": round(self.env_steps / self.wall_seconds, 2) if self.wall_seconds > 0 else None,
            "gradient_updates": self.learner.num_updates,
            "device": str(self.device),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={self.cfg.env!r}, env_steps={self.env_steps}, config={json.dumps(to_dict(self.cfg))})"
