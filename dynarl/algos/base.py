"""What every algorithm shares: a validated config, seeded generators, its data sources and learner, and a
checkpoint derived from what it declares.

An algorithm is data sources + a learner + a schedule (design.md section 2). A subclass sets ``name``,
``config_cls`` and the spaces it supports, builds its sources and learner in ``_setup()``, and implements

- ``train_step()``: one iteration of its schedule (collect, fit, update), advancing its clock;
- ``policy_action(obs, deterministic)``: the env action for observations (a batch or one); the default asks
  the learner on ``_policy_input(obs)`` and scales to the env's bounds;
- ``parts()``: what a checkpoint holds, as ``name -> object with state_dict()/load_state_dict()``; the
  names in ``run_parts`` (buffers, episodes in progress) are saved in run checkpoints but not by ``save()``.

Saving and loading are derived from ``parts()``, never written twice. The loop around ``train_step`` (the
clock, evaluation, logging, checkpoints, progress, callbacks) is the runner's (:mod:`dynarl.run.runner`),
which sits above the algorithms: ``learn()`` hands over to it.
"""

from __future__ import annotations

import abc
import json
import math
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from dynarl import checkpoint as ckpt
from dynarl.algos.registry import build_config, config_from_dict
from dynarl.config import to_dict, validate
from dynarl.envs import env_source
from dynarl.envs.spaces import BOX, ActionAdapter, require_space
from dynarl.errors import CheckpointError, ConfigError, DynarlError
from dynarl.process import keep_freed_memory
from dynarl.seeding import resolve_device, seed_everything, set_torch_rng_state, torch_rng_state
from dynarl.sources.env_collector import EnvCollector


class Algorithm(abc.ABC):
    name: ClassVar[str]
    config_cls: ClassVar[type]
    clock: ClassVar[str] = "env_steps"  # what learn(total) counts: "env_steps", or "gradient_steps" (offline)
    action_spaces: ClassVar[tuple[str, ...]] = (BOX,)
    observation_spaces: ClassVar[tuple[str, ...]] = (BOX,)
    run_parts: ClassVar[tuple[str, ...]] = ()
    runner: ClassVar[Any] = None  # dynarl.run.runner, bound when dynarl is imported: learn() and run folders go through it

    def __init__(self, env=None, config=None, *, policy_only: bool = False, **overrides):
        """``policy_only``: build only what acting and evaluation need (an offline agent then reads no dataset);
        such an agent cannot be trained."""
        # an Env object or a factory is used as given (an id is built with _env_options, e.g. the model observation)
        given = None if env is None or isinstance(env, str) else env_source(env)
        if config is None:
            config = build_config(self.name, env if given is None else given[0], overrides)
        elif overrides or isinstance(env, str):
            raise ConfigError("pass either a config object or env/overrides, not both")
        else:
            validate(config)
        self.cfg = cfg = config
        self.policy_only = policy_only
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        if cfg.keep_freed_memory:
            keep_freed_memory()
        self.device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        self.np_rng = np.random.default_rng(cfg.seed)
        self.env_name, self.make_env = given or env_source(cfg.env, getattr(cfg, "env_kwargs", None), **self._env_options())
        self.collector: EnvCollector | None = None
        self._eval_env: gym.Env | None = None
        self.wall_seconds = 0.0
        self.last_eval: tuple[float, float] | None = None
        self._model_log = None  # set by the runner: where log_model_fit rows go
        self._setup()

    # --- what a subclass provides --------------------------------------------------------------------------

    @classmethod
    def default_env(cls, overrides: dict) -> str | None:
        """The env to use when none is given, from the other overrides (offline: the dataset's env); None: the config's default."""
        return None

    def _env_options(self) -> dict:
        """Options for building the env from an id (e.g. ``model_obs=True`` for planners)."""
        return {}

    @abc.abstractmethod
    def _setup(self) -> None:
        """Build the sources, buffers, models and learner."""

    @abc.abstractmethod
    def train_step(self) -> None:
        """One iteration of the algorithm; must advance its clock."""

    def policy_action(self, obs, deterministic: bool = True) -> np.ndarray:
        """The env action for one observation or a batch (leading dim = rows): by default the learner's action on
        ``_policy_input(obs)``, scaled to the env's bounds (planners and loops with their own input override it)."""
        obs = np.asarray(obs)
        single = obs.shape == self.observation_space.shape
        act = self.actions.to_env(self.learner.act(self._policy_input(obs[None] if single else obs), deterministic).cpu().numpy())
        return act[0] if single else act

    def parts(self) -> dict[str, Any]:
        """What a checkpoint holds beyond the config, counters and RNGs: name -> stateful object."""
        return {}

    def metrics(self) -> dict[str, float]:
        """The latest training metrics (learner losses, model diagnostics) for the log row, as floats: by default
        the learner's last ``update`` (``self._last_metrics``)."""
        return {k: float(v) for k, v in getattr(self, "_last_metrics", {}).items()}

    def all_finite(self) -> bool:
        """No NaN/inf in the learner's losses or parameters (algorithms with a model add its check)."""
        learner = getattr(self, "learner", None)
        return learner.all_finite() if learner is not None else True

    def on_evaluation(self, mean_return: float, std_return: float) -> None:
        """Called after every evaluation (e.g. to compare the model's predicted return with the real one)."""

    def budget_notes(self, total: int) -> list[str]:
        """What a user should know about this budget before training (e.g. it ends before learning starts)."""
        return []

    # --- sources and spaces ---------------------------------------------------------------------------------

    def env_collector(self, n_envs: int = 1, **kwargs) -> EnvCollector:
        """The env collector on this algorithm's env (``n_envs`` copies), its spaces checked."""
        collector = EnvCollector(self.make_env, self.env_name, n_envs, self.cfg.seed, **kwargs)
        self.check_spaces(collector.observation_space, collector.action_space)
        return collector

    def check_spaces(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        require_space(self.env_name, observation_space, action_space, self.name.upper(), actions=self.action_spaces, observations=self.observation_spaces)
        self.observation_space, self.action_space = observation_space, action_space
        self.actions = ActionAdapter(action_space)

    @property
    def eval_env(self) -> gym.Env:
        if self._eval_env is None:
            self._eval_env = self.make_env()
        return self._eval_env

    # --- counters -------------------------------------------------------------------------------------------

    @property
    def env_steps(self) -> int:
        return self.collector.env_steps if self.collector is not None else 0

    @property
    def episodes(self) -> int:
        return self.collector.episodes if self.collector is not None else 0

    @property
    def gradient_steps(self) -> int:
        learner = getattr(self, "learner", None)
        return learner.num_updates if learner is not None else 0

    def steps(self) -> int:
        """The clock: env steps, or gradient steps for algorithms that learn from a fixed dataset."""
        return self.env_steps if self.clock == "env_steps" else self.gradient_steps

    def recent_return(self) -> float | None:
        return self.collector.recent_return() if self.collector is not None else None

    def log_model_fit(self, row: dict[str, float]) -> None:
        """Append one row (one model fit: holdout loss, k-step error, calibration, ...) to the run's
        ``model_diagnostics.csv``, which ``dynarl plot RUN`` draws. A no-op outside ``learn(run_dir=...)``."""
        if self._model_log is not None:
            self._model_log.log(self.steps(), row)

    # --- the user's surface ---------------------------------------------------------------------------------

    def predict(self, obs, state=None, episode_start=None, deterministic: bool = False) -> tuple[np.ndarray, None]:
        """``(action, state)`` as in Stable-Baselines3: the env action for ``obs`` (one observation or a batch);
        ``state`` is None (no recurrent policies yet)."""
        return self.policy_action(obs, deterministic), None

    def action_log_prob(self, obs, env_act) -> np.ndarray | None:
        """log pi(a|s) [B] of env actions under this agent's stochastic policy (density in env units), or None
        when its learner has no density (deterministic policies, planners)."""
        log_prob = getattr(getattr(self, "learner", None), "log_prob", None)
        if log_prob is None:
            return None
        act = torch.as_tensor(self.actions.from_env(np.asarray(env_act)), device=self.device)
        if self.actions.continuous:
            act = act.clamp(-1.0, 1.0)
        elif int(self.action_space.start):
            act = act - int(self.action_space.start)
        try:
            lp = log_prob(self._policy_input(np.asarray(obs)), act).cpu().numpy().astype(np.float64)
        except ValueError:  # a deterministic variant of a learner that can have a density (BC mse, IQL deterministic)
            return None
        if self.actions.continuous:  # a = low + (u + 1) scale: p_env(a) = p(u) / prod(scale)
            lp = lp - float(np.log(self.actions.scale.astype(np.float64)).sum())
        return lp

    def _policy_input(self, obs: np.ndarray) -> torch.Tensor:
        """Observations as the learner's input tensor."""
        return torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)

    def learn(self, total_steps: int | None = None, run_dir=None, callbacks=None, progress_bar: bool | None = None) -> "Algorithm":
        """Train until the clock reads ``total_steps`` (env steps; gradient steps for offline algorithms;
        default: the config's ``steps``).

        With ``run_dir`` (a new or empty folder, an open run folder, or the folder this agent's earlier
        ``learn`` wrote, to continue it), metrics, TensorBoard events, model diagnostics, checkpoints, the
        plot and ``summary.json`` are written there; SIGINT or SIGTERM then checkpoint the step in progress
        and raise :class:`dynarl.errors.RunInterrupted`. ``callbacks`` (see :mod:`dynarl.run.callbacks`) are
        called on every step, evaluation and checkpoint; ``progress_bar`` forces the live bar on or off.
        """
        if self.policy_only:
            raise DynarlError(f"this {self.name.upper()} agent was loaded policy-only (for acting and evaluation) and cannot be trained; load it with dynarl.load or `dynarl resume` to continue its training")
        return self.runner.learn(self, total_steps, run_dir, callbacks, progress_bar)

    def save(self, path: str | Path, include_buffer: bool = False) -> Path:
        """Save the agent (networks, optimisers, counters, config; buffers and episodes on request)."""
        path = Path(path)
        if path.suffix != ckpt.SUFFIX:
            path = path.with_name(path.name + ckpt.SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        ckpt.save_checkpoint(path, self.name, self.state_dict(include_buffer))
        return path

    @classmethod
    def load(cls, path: str | Path, *, policy_only: bool = False, **run_overrides) -> "Algorithm":
        """Load what ``save(path)`` wrote (``path`` with or without ``.safetensors``), a checkpoint file,
        or a run folder's newest good checkpoint. ``policy_only``: only what acting needs (an offline agent
        then does not read its dataset, which may be absent); it cannot be trained."""
        if Path(path).is_dir():
            state = cls.runner.latest_state(path, cls.name)
        else:
            _, state = ckpt.load_checkpoint(path, expect_algo=cls.name)
        return cls.from_state(state, policy_only=policy_only, **run_overrides)

    @classmethod
    def from_state(cls, state: dict, *, policy_only: bool = False, **run_overrides) -> "Algorithm":
        if not isinstance(state.get("config"), dict):
            raise CheckpointError(f"the checkpoint holds no {cls.name.upper()} config; it is damaged or was not written by dynarl")
        agent = cls(config=config_from_dict(cls.name, state["config"], run_overrides), policy_only=policy_only)
        try:
            agent.load_state_dict(state)
        except DynarlError:
            raise  # a part that says itself what is wrong (e.g. a dataset that changed since)
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError, AttributeError) as e:
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"the checkpoint does not match a {cls.name.upper()} agent with its own config ({first_line}); it was written by another dynarl version or is damaged") from None
        return agent

    # --- state, derived from parts() ------------------------------------------------------------------------

    def _all_parts(self) -> dict[str, Any]:
        parts = dict(self.parts())
        if self.collector is not None:
            parts.setdefault("collector", self.collector)
            parts.setdefault("episodes", self.collector.open_episodes)
        return parts

    def state_dict(self, include_buffer: bool = True) -> dict:
        """Config, counters, the RNG states and every declared part (run parts only with ``include_buffer``).

        The torch RNG is the process's global one (as in Stable-Baselines3): take an agent's state before
        building another agent in the same process, which reseeds it."""
        run_only = set(self.run_parts) | {"episodes"}
        parts = {k: (v.state_dict() if include_buffer or k not in run_only else None) for k, v in self._all_parts().items()}
        counters = {"wall_seconds": self.wall_seconds, "last_eval": list(self.last_eval) if self.last_eval else None}
        return {"config": to_dict(self.cfg), "counters": counters, "rng": {"torch": torch_rng_state(), "numpy": self.np_rng.bit_generator.state}, "parts": parts}

    def load_state_dict(self, state: dict) -> None:
        for name, part in self._all_parts().items():
            if state["parts"][name] is not None:
                part.load_state_dict(state["parts"][name])
        c = state["counters"]
        self.wall_seconds = float(c["wall_seconds"])
        self.last_eval = tuple(c["last_eval"]) if c["last_eval"] else None
        set_torch_rng_state(state["rng"]["torch"])
        self.np_rng.bit_generator.state = state["rng"]["numpy"]
        self.after_load()

    def after_load(self) -> None:
        """Called once a checkpoint is restored (e.g. to refresh a compiled copy of a restored model)."""

    def summary(self) -> dict:
        mean, std = self.last_eval if self.last_eval else (math.nan, math.nan)
        return {
            "algo": self.name,
            "env": self.cfg.env,
            "seed": self.cfg.seed,
            "env_steps": self.env_steps,
            "gradient_steps": self.gradient_steps,
            "episodes": self.episodes,
            "eval_return_mean": mean,
            "eval_return_std": std,
            "eval_episodes": self.cfg.eval_episodes,
            "wall_seconds": round(self.wall_seconds, 3),
            "env_steps_per_second": round(self.env_steps / self.wall_seconds, 2) if self.wall_seconds > 0 else None,
            "device": str(self.device),
        }

    def close(self) -> None:
        if self.collector is not None:
            self.collector.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={self.cfg.env!r}, {self.clock}={self.steps()}, config={json.dumps(to_dict(self.cfg))})"


class Attributes:
    """Plain attributes of an object (counters, schedules) as one checkpoint part."""

    def __init__(self, owner: Any, *names: str):
        self.owner, self.names = owner, names

    def state_dict(self) -> dict:
        return {k: _saveable(getattr(self.owner, k)) for k in self.names}

    def load_state_dict(self, state: dict) -> None:
        for k in self.names:
            value = state[k]
            if isinstance(getattr(self.owner, k), np.ndarray):
                value = value.numpy().copy()
            setattr(self.owner, k, value)


def _saveable(value):
    """numpy arrays as tensors (a checkpoint holds tensors and JSON); everything else as it is."""
    return torch.as_tensor(value) if isinstance(value, np.ndarray) else value


class GeneratorState:
    """A ``torch.Generator`` as a checkpoint part."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self) -> dict:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["state"])
