"""Creating environments with errors a user can act on."""

from __future__ import annotations

import copy
import difflib
import re
from functools import partial
from typing import Any, Callable

import gymnasium as gym

from dynarl.envs.tasks import get_task, registered_tasks
from dynarl.errors import EnvError

_MUJOCO_HINT = 'MuJoCo tasks need the mujoco package: pip install "dynarl[mujoco]"'
_ALE_HINT = "Atari ids (ALE/...) are registered by the ale-py package, which is not installed: pip install ale-py"


def _suggestions(env_id: str) -> list[str]:
    ids = list(gym.registry.keys())
    by_lower: dict[str, str] = {}
    for i in ids:
        by_lower.setdefault(i.lower(), i)
    matches = difflib.get_close_matches(env_id.lower(), list(by_lower), n=3, cutoff=0.6)
    return [by_lower[m] for m in matches]


def _unknown(env_id: str) -> EnvError:
    close = _suggestions(env_id)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return EnvError(f"unknown environment {env_id!r}.{hint} Run 'dynarl list' to see the tasks.")


def _is_ale(env_id: str) -> bool:
    return env_id.lower().startswith("ale/") or "noframeskip" in env_id.lower()


def _register_ale(env_id: str) -> None:
    """Gymnasium >= 1.0 knows Atari ids only once ``ale_py`` is imported: import it for ``ALE/...`` ids
    (so ``dynarl train ... --env ALE/Pong-v5`` works from the command line), or say how to install it."""
    try:
        import ale_py  # noqa: F401  (importing registers the ALE ids)
    except ImportError as e:
        raise EnvError(f"unknown environment {env_id!r}: {_ALE_HINT}") from e


def _is_mujoco(env_id: str) -> bool:
    spec = gym.registry.get(env_id)
    entry = getattr(spec, "entry_point", None)
    return isinstance(entry, str) and "mujoco" in entry


def make_env(env_id: str, *, model_obs: bool = False, **kwargs: Any) -> gym.Env:
    """Create ``gymnasium.make(env_id, **kwargs)``, turning failures into :class:`EnvError`.

    With ``model_obs=True`` the task's :attr:`TaskSpec.env_kwargs` and :attr:`TaskSpec.wrappers` are
    applied so the observation holds everything the task's ``reward_fn``/``termination_fn`` need to be
    exact (e.g. the x position for forward-velocity rewards). The default gives the standard observation
    used by model-free algorithms.
    """
    if not isinstance(env_id, str) or not env_id:
        raise EnvError(f"environment id must be a non-empty string, got {env_id!r}")
    if env_id not in gym.registry and ":" not in env_id and _is_ale(env_id):
        _register_ale(env_id)
    if env_id not in gym.registry and ":" not in env_id:
        raise _unknown(env_id)

    wrappers: tuple = ()
    if model_obs:
        task = get_task(env_id)
        if task is None:
            raise EnvError(
                f"model_obs=True needs a task with a known reward function, but dynarl has none for {env_id!r}. "
                f"Known tasks: {', '.join(registered_tasks())}."
            )
        for key, value in task.env_kwargs.items():
            if key in kwargs and kwargs[key] != value:
                raise EnvError(
                    f"{env_id}: {key}={kwargs[key]!r} conflicts with model_obs=True, whose reward function "
                    f"needs {key}={value!r}. Drop the argument or use model_obs=False."
                )
        kwargs = {**kwargs, **task.env_kwargs}
        wrappers = task.wrappers

    try:
        env = gym.make(env_id, **kwargs)
    except TypeError as e:
        m = re.search(r"unexpected keyword argument '([^']+)'", str(e))
        if m:
            raise EnvError(f"{env_id} has no argument {m.group(1)!r}; remove it from the env arguments.") from e
        raise EnvError(f"invalid arguments for {env_id} ({', '.join(sorted(kwargs)) or 'none'}): {e}") from e
    except gym.error.DependencyNotInstalled as e:
        if _is_mujoco(env_id):
            raise EnvError(f"cannot create {env_id}: {_MUJOCO_HINT} ({e})") from e
        raise EnvError(f"cannot create {env_id}: {e}") from e
    except ImportError as e:
        if _is_mujoco(env_id) or "mujoco" in str(e).lower():
            raise EnvError(f"cannot create {env_id}: {_MUJOCO_HINT} ({e})") from e
        raise EnvError(f"cannot create {env_id}: {e}") from e
    except (gym.error.NameNotFound, gym.error.NamespaceNotFound, gym.error.VersionNotFound) as e:
        raise _unknown(env_id) from e
    except gym.error.Error as e:
        raise EnvError(f"cannot create {env_id}: {e}") from e

    for wrap in wrappers:
        env = wrap(env)
    return env


def env_source(env, env_kwargs: dict | None = None, *, model_obs: bool = False) -> tuple[str, Callable[[], gym.Env]]:
    """``(name, make)`` for what a user passes as an env: a registered id, a ``gymnasium.Env`` or a factory.

    ``make()`` builds a fresh instance each call (an id through :func:`make_env`; an Env object is used
    as is for its first call, then re-made from its spec, or deep-copied when it has none). The name is what
    configs and run folders record.
    """
    if isinstance(env, str):
        return env, partial(make_env, env, model_obs=model_obs, **(env_kwargs or {}))
    if env_kwargs:
        raise EnvError("env_kwargs apply to an environment id only; build the env with its arguments yourself when you pass an object or a factory")
    if isinstance(env, gym.Env):
        first = [env]

        def make_copy() -> gym.Env:
            if first:
                return first.pop()
            if env.spec is not None and env.spec.entry_point is not None:
                return gym.make(env.spec)
            return copy.deepcopy(env)

        return (env.spec.id if env.spec is not None else type(env.unwrapped).__name__), make_copy
    if callable(env):
        probe = env()
        if not isinstance(probe, gym.Env):
            raise EnvError(f"the env factory {env!r} returned {type(probe).__name__}, not a gymnasium.Env")
        first = [probe]

        def make_fresh() -> gym.Env:
            return first.pop() if first else env()

        return (probe.spec.id if probe.spec is not None else type(probe.unwrapped).__name__), make_fresh
    raise EnvError(f"env must be a Gymnasium id, a gymnasium.Env or a function returning one, not {type(env).__name__}")
