"""What every algorithm (a loop from a data source to a learner) shares.

:class:`Algorithm` builds the validated config, seeds every generator, makes the training and
evaluation envs, and runs the outer loop: ``train_step()`` (the subclass's one iteration, which
advances ``env_steps``) then evaluation, logging and checkpoints whenever their intervals are crossed.
It also owns the replayable training episode: how the current episode was reset and the actions taken
since, so a checkpoint rebuilds the env's internal state on resume without pickling it.

Subclasses set ``name`` and ``config_cls`` and implement ``_setup()``, ``train_step()``, ``predict()``,
``_state()`` / ``_load_state()``, and optionally ``_check_env()`` and ``_metrics()``.
"""

from __future__ import annotations

import abc
import json
import math
import sys
import time
from collections import deque
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from dynarl import checkpoint as ckpt
from dynarl.config import RunConfig, to_dict, validate
from dynarl.envs import make_env
from dynarl.errors import CheckpointError, ConfigError, EnvError, RunInterrupted, TrainingDivergedError
from dynarl.run.evaluate import evaluate
from dynarl.run.interrupt import StopRequest
from dynarl.run.logger import MetricsLogger, Progress
from dynarl.run.plot import MODEL_DIAGNOSTICS
from dynarl.run.rundir import RunDir
from dynarl.run.seeding import resolve_device, seed_everything, set_torch_rng_state, torch_rng_state


class Algorithm(abc.ABC):
    name: ClassVar[str]
    config_cls: ClassVar[type[RunConfig]]

    def __init__(self, env: str | None = None, config: RunConfig | None = None, **overrides):
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
        env_kwargs = getattr(cfg, "env_kwargs", None) or {}
        self.env = make_env(cfg.env, **env_kwargs)
        self._check_env(self.env)
        self.eval_env = make_env(cfg.env, **env_kwargs)
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
        self._model_log: MetricsLogger | None = None
        self._setup()

    # --- hooks --------------------------------------------------------------------------------------

    def _check_env(self, env) -> None:
        """Raise EnvError when the algorithm cannot drive ``env``."""

    def _setup(self) -> None:
        """Build learners, buffers and models (after the envs exist)."""

    @abc.abstractmethod
    def train_step(self) -> None:
        """One iteration of the algorithm; must advance ``env_steps``."""

    @abc.abstractmethod
    def predict(self, obs, deterministic: bool = True) -> np.ndarray:
        """The env-scaled action for ``obs`` (used by evaluation)."""

    def _metrics(self) -> dict[str, float]:
        """The latest training metrics, as floats, for the log row."""
        return {}

    def all_finite(self) -> bool:
        return True

    def log_model_fit(self, row: dict[str, float]) -> None:
        """Append one row (one model fit: holdout loss, k-step error, calibration, ...) to the run's
        ``model_diagnostics.csv``, which ``dynarl plot RUN`` draws. A no-op outside ``learn(run_dir=...)``."""
        if self._model_log is not None:
            self._model_log.log(self.env_steps, row)

    def _state(self, include_buffer: bool) -> dict:
        return {}

    def _load_state(self, state: dict) -> None:
        pass

    # --- the replayable training episode -------------------------------------------------------------

    def _reset_env(self) -> None:
        if self.episodes == 0 and self.env_steps == 0:
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

    def _env_step(self, env_act: np.ndarray):
        """Step the training env, keep the episode replayable, count steps and episodes.

        Returns ``(obs, next_obs, reward, terminated, truncated)`` with the true ``next_obs`` (before any
        reset); ``self._obs`` moves on to the next episode's first observation when one ends.
        """
        obs = self._obs
        next_obs, reward, terminated, truncated, _ = self.env.step(env_act)
        self._require_finite_env_output(next_obs, reward)
        self._episode_actions.append(env_act)
        self._episode_return += float(reward)
        self._episode_length += 1
        self.env_steps += 1
        if terminated or truncated:
            self.recent_returns.append(self._episode_return)
            self.episodes += 1
            self._reset_env()
        else:
            self._obs = next_obs
        return obs, next_obs, reward, terminated, truncated

    # --- the loop -------------------------------------------------------------------------------------

    def learn(self, total_steps: int | None = None, run_dir: str | Path | RunDir | None = None) -> "Algorithm":
        """Train until ``total_steps`` env steps in all (default: the config's ``steps``).

        With ``run_dir`` (a new or empty folder, an open :class:`RunDir`, or the folder this agent's earlier
        ``learn`` wrote, to continue it), metrics, TensorBoard events, model diagnostics, checkpoints, the
        plot and ``summary.json`` are written there; SIGINT or SIGTERM then checkpoint the step in progress
        and raise :class:`RunInterrupted`.
        """
        cfg = self.cfg
        total = int(cfg.steps if total_steps is None else total_steps)
        if total <= 0:
            raise ConfigError(f"total_steps={total} is invalid: must be > 0")
        run = self._open_run(run_dir)
        if not cfg.quiet:
            notes = self._budget_notes(total)
            if total - self.env_steps < cfg.log_every:
                notes.append(f"log_every={cfg.log_every} is more than the {total - self.env_steps} steps to run: metrics.csv gets one row, at the end; pass log_every=N for more")
            for note in notes:
                print(f"dynarl: note: {note}", file=sys.stderr, flush=True)
        resume_step = self.env_steps if run and (run.path / "metrics.csv").exists() else None
        logger = MetricsLogger(run.path if run else None, resume_step=resume_step)
        self._model_log = MetricsLogger(run.path, resume_step, filename=MODEL_DIAGNOSTICS, tensorboard=False) if run else None
        progress = Progress(total, quiet=cfg.quiet)
        progress.start(self.env_steps)
        if self._obs is None:
            self._reset_env()
        start_wall = time.perf_counter()
        wall_before = self.wall_seconds
        try:
            with StopRequest(enabled=run is not None) as stop:
                while self.env_steps < total:
                    before = self.env_steps
                    self.train_step()
                    step, done = self.env_steps, self.env_steps >= total

                    def crossed(every: int) -> bool:
                        return step // every > before // every or done

                    evaluated = crossed(cfg.eval_every)
                    if evaluated:
                        self.last_eval = self._evaluate()
                    self.wall_seconds = wall_before + time.perf_counter() - start_wall
                    if crossed(cfg.log_every) or evaluated:  # an evaluation always gets its row
                        self._log(logger, progress, evaluated)
                    else:
                        progress.heartbeat(step, self._recent_return())
                    if run and (crossed(cfg.checkpoint_every) or stop.signum):
                        self._save_checkpoint(run)
                    if stop.signum:
                        raise RunInterrupted(
                            f"stopped by {stop.name} at step {self.env_steps} of {total}; checkpoint saved. Continue with `dynarl resume {run.path}`",
                            128 + stop.signum,
                        )
            if run:
                run.finish(self.summary())
        finally:
            logger.close()
            self._model_log = None
            if run:
                run.unlock()
        return self

    def _open_run(self, run_dir: str | Path | RunDir | None) -> RunDir | None:
        """The run folder to write, locked for this process (see :meth:`learn`)."""
        if run_dir is None or isinstance(run_dir, RunDir):
            if run_dir is not None:
                run_dir.lock()
            return run_dir
        config = to_dict(self.cfg)
        if self.env_steps > 0 and (Path(run_dir) / "config.json").is_file():
            run = RunDir.open(run_dir)
            if run.config() == config:  # this agent's own folder: continue it
                run.lock()
                return run
        return RunDir.create(run_dir, config, flag="run_dir")

    def _budget_notes(self, total: int) -> list[str]:
        """What a user should know about this budget before training (e.g. it ends before learning starts)."""
        return []

    def _recent_return(self) -> float | None:
        return float(np.mean(self.recent_returns)) if self.recent_returns else None

    def _save_checkpoint(self, run: RunDir) -> None:
        """Checkpoint the current step, never from a non-finite state (the last good checkpoint stays)."""
        self._check_finite()
        state = self.state_dict()
        bad = _non_finite_entries(state)
        if bad:
            raise TrainingDivergedError(
                f"{self.name.upper()} on {self.cfg.env}: the state to checkpoint at env step {self.env_steps} holds NaN/inf in {', '.join(bad[:3])}. "
                "Training stopped; the last good checkpoint is kept. Check the environment's observations and rewards, or lower the learning rate."
            )
        run.save_checkpoint(self.env_steps, self.name, state, self.cfg.keep_checkpoints)

    def _evaluate(self) -> tuple[float, float]:
        returns = evaluate(self.eval_env, self.predict, self.cfg.eval_episodes, self.cfg.seed)
        return float(returns.mean()), float(returns.std())

    def _log(self, logger: MetricsLogger, progress: Progress, evaluated: bool) -> None:
        self._check_finite()
        row = self._metrics()
        recent = self._recent_return()
        speed = progress.speed(self.env_steps)
        row.update(episode_return=recent, episodes=self.episodes, wall_seconds=round(self.wall_seconds, 3), env_steps_per_second=round(speed, 2))
        if evaluated and self.last_eval is not None:
            row.update(eval_return_mean=self.last_eval[0], eval_return_std=self.last_eval[1])
        logger.log(self.env_steps, row)
        progress.show(self.env_steps, recent, row.get("eval_return_mean"), speed)

    def _require_finite_env_output(self, next_obs, reward) -> None:
        """Stop on NaN/inf observations or rewards from the env, like a non-finite loss (nothing is stored)."""
        if not (np.all(np.isfinite(next_obs)) and np.all(np.isfinite(reward))):
            what = "observation" if not np.all(np.isfinite(next_obs)) else "reward"
            raise TrainingDivergedError(
                f"{self.cfg.env} returned a non-finite (NaN/inf) {what} at env step {self.env_steps + 1}. "
                "Training stopped; the last good checkpoint is kept. Check the environment (its parameters, env_kwargs) for values that overflow."
            )

    def _check_finite(self) -> None:
        if not self.all_finite():
            raise TrainingDivergedError(
                f"{self.name.upper()} on {self.cfg.env}: a loss or parameter became non-finite (NaN/inf) by env step {self.env_steps}. "
                "Training stopped; the last good checkpoint is kept. Try a lower learning rate, or check the environment's rewards and observations for NaN."
            )

    # --- state ------------------------------------------------------------------------------------------

    def state_dict(self, include_buffer: bool = True) -> dict:
        episode = None
        if self._obs is not None and include_buffer:
            act_dim = int(np.prod(self.env.action_space.shape or (1,)))
            actions = np.asarray(self._episode_actions, dtype=np.float32).reshape(-1, act_dim)
            episode = {"reset": self._episode_reset, "actions": torch.as_tensor(actions)}
        return {
            "config": to_dict(self.cfg),
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
            "episode": episode,
            **self._state(include_buffer),
        }

    def load_state_dict(self, state: dict) -> None:
        self._load_state(state)
        c = state["counters"]
        self.env_steps, self.episodes, self.wall_seconds = int(c["env_steps"]), int(c["episodes"]), float(c["wall_seconds"])
        self.recent_returns = deque(c["recent_returns"], maxlen=10)
        self.last_eval = tuple(c["last_eval"]) if c["last_eval"] else None
        set_torch_rng_state(state["rng"]["torch"])
        self.np_rng.bit_generator.state = state["rng"]["numpy"]
        if state.get("episode") is not None:
            self._replay_episode(state["episode"]["reset"], state["episode"]["actions"].numpy())
            self._episode_return, self._episode_length = float(c["episode_return"]), int(c["episode_length"])

    def save(self, path: str | Path, include_buffer: bool = False) -> Path:
        """Save the agent (networks, optimisers, counters, config; buffers and the episode on request)."""
        path = Path(path)
        if path.suffix != ckpt.SUFFIX:
            path = path.with_name(path.name + ckpt.SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        ckpt.save_checkpoint(path, self.name, self.state_dict(include_buffer))
        return path

    @classmethod
    def from_state(cls, state: dict, **run_overrides) -> "Algorithm":
        from dynarl.algos.registry import config_from_dict

        if not isinstance(state.get("config"), dict):
            raise CheckpointError(f"the checkpoint holds no {cls.name.upper()} config; it is damaged or was not written by dynarl")
        cfg = config_from_dict(cls.name, state["config"], run_overrides)
        agent = cls(config=cfg)
        try:
            agent.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as e:
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"the checkpoint does not match a {cls.name.upper()} agent with its own config ({first_line}); it was written by another dynarl version or is damaged") from None
        return agent

    @classmethod
    def load(cls, path: str | Path, **run_overrides) -> "Algorithm":
        """Load what ``save(path)`` wrote (``path`` with or without ``.safetensors``), a checkpoint file,
        or a run folder's newest good checkpoint."""
        if Path(path).is_dir():
            _, _, state = RunDir.open(path).load_latest(expect_algo=cls.name)
        else:
            _, state = ckpt.load_checkpoint(path, expect_algo=cls.name)
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
            "device": str(self.device),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={self.cfg.env!r}, env_steps={self.env_steps}, config={json.dumps(to_dict(self.cfg))})"


def _non_finite_entries(state, path: str = "") -> list[str]:
    """Paths of the floating-point tensors in a (nested) state that hold NaN or inf."""
    if isinstance(state, torch.Tensor):
        return [path or "/"] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return []
    return [p for k, v in items for p in _non_finite_entries(v, f"{path}/{k}")]


def require_box_actions(env, algo: str) -> tuple[np.ndarray, np.ndarray]:
    """The finite bounds of a continuous action space, or EnvError saying what to use instead."""
    from dynarl.envs import check_continuous_actions

    check_continuous_actions(env, algo)
    space = env.action_space
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise EnvError(f"{env.spec.id if env.spec else env} has unbounded actions {space}; {algo} needs finite action bounds")
    return space.low.astype(np.float32), space.high.astype(np.float32)


def require_flat_obs(env, algo: str) -> int:
    shape = env.observation_space.shape
    if shape is None or len(shape) != 1:
        raise EnvError(f"{env.spec.id if env.spec else env} has observations of shape {shape}; {algo} takes flat vector observations")
    return int(shape[0])
