"""Offline datasets in Minari's format: read any local Minari dataset, write our own, find them by id.

Minari stores each episode with N+1 observations (the first one and every next one) and N actions, rewards,
``terminations`` and ``truncations``. :class:`Episodes` keeps that layout — every observation once — and
gives transitions as row indices: transition ``i`` goes from ``observations[obs_row[i]]`` to
``observations[next_row[i]]``, so ``obs[:-1]`` and ``obs[1:]`` of each episode stay aligned and a dataset
holds about its raw size in memory. Terminations and truncations stay apart: targets bootstrap through a
time limit and stop at a terminal state.

Datasets live under Minari's root, ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``). Writing uses
``minari.create_dataset_from_buffers`` (no JAX). The behaviour policy's log-probability, where the policy has
one, is stored per step as ``infos/behavior_log_prob`` aligned with the observations: row t holds
``log pi_b(a_t | s_t)`` and the last row (the final observation, with no action) holds 0.
"""

from __future__ import annotations

import difflib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np

from dynarl.errors import DynarlError
from dynarl.provenance import made_with

BEHAVIOR_LOG_PROB = "behavior_log_prob"
MINARI_HINT = 'offline datasets need Minari: pip install "dynarl[offline]"'


class DatasetError(DynarlError, ValueError):
    """A missing, corrupt or unusable offline dataset."""


def normalized_score(returns, ref_min: float | None, ref_max: float | None):
    """D4RL's normalised score, 100 (R - R_random) / (R_expert - R_random), of a return or an array of them.

    None without both references, or when the expert reference is not above the random one: that scale would
    rank a better policy lower."""
    if ref_min is None or ref_max is None or not ref_max > ref_min:
        return None
    return 100.0 * (np.asarray(returns, dtype=float) - ref_min) / (ref_max - ref_min)


def _minari():
    try:
        import minari
    except ImportError:
        raise DatasetError(MINARI_HINT) from None
    return minari


def dataset_root() -> Path:
    """Where Minari datasets are looked for and written: ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``."""
    return Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")


def local_dataset_ids() -> list[str]:
    """Ids of the datasets under :func:`dataset_root` (folders holding ``data/metadata.json``)."""
    root = dataset_root()
    if not root.is_dir():
        return []
    return sorted(str(p.parent.parent.relative_to(root)) for p in root.glob("**/data/metadata.json"))


def dataset_path(dataset_id: str) -> Path:
    """The folder of a local dataset; a one-line error naming close ids and the root when it is missing."""
    path = dataset_root() / dataset_id
    if not (path / "data" / "metadata.json").is_file():
        known = local_dataset_ids()
        close = difflib.get_close_matches(dataset_id, known, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else (f" Local datasets: {', '.join(known[:8])}." if known else "")
        raise DatasetError(
            f"no dataset {dataset_id!r} under {dataset_root()} (set MINARI_DATASETS_PATH to look elsewhere).{hint} "
            "Make one with `dynarl collect RUN_DIR --out ID` or `dynarl dataset recipe`"
        )
    return path


def dataset_metadata(dataset_id: str) -> dict:
    """The dataset's ``metadata.json`` (spaces and env spec still as JSON strings, as Minari writes them)."""
    path = dataset_path(dataset_id) / "data" / "metadata.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"dataset {dataset_id!r}: its metadata file {path} is unreadable ({e}); the dataset is damaged, make it again") from None


def dataset_env_id(dataset_id: str) -> str | None:
    """The Gymnasium id the dataset was collected on, or None when it records no env."""
    spec = dataset_metadata(dataset_id).get("env_spec")
    if not spec:
        return None
    try:
        return json.loads(spec)["id"] if isinstance(spec, str) else spec["id"]
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class Episodes:
    """A dataset as episodes, every observation stored once (see the module docstring)."""

    dataset_id: str
    observations: np.ndarray  # [N + E, *obs_shape]
    actions: np.ndarray  # [N, *act_shape]
    rewards: np.ndarray | None  # [N] float32; None for a dataset without rewards (imitation only)
    terminations: np.ndarray  # [N] bool
    truncations: np.ndarray  # [N] bool
    episode_lengths: np.ndarray  # [E] transitions per episode
    observation_space: gym.Space
    action_space: gym.Space
    behavior_log_prob: np.ndarray | None = None  # [N] log pi_b(a_t|s_t), when the data records it
    env_id: str | None = None
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def obs_row(self) -> np.ndarray:
        """Row of each transition's observation in ``observations``: episode k's rows are shifted by k."""
        return np.arange(len(self.actions)) + np.repeat(np.arange(len(self.episode_lengths)), self.episode_lengths)

    @property
    def next_row(self) -> np.ndarray:
        return self.obs_row + 1

    def __len__(self) -> int:
        return len(self.actions)

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode."""
        if self.rewards is None:
            raise DatasetError(f"dataset {self.dataset_id!r} has no rewards")
        return np.add.reduceat(self.rewards.astype(np.float64), np.r_[0, np.cumsum(self.episode_lengths)[:-1]]) if len(self.rewards) else np.zeros(0)

    def normalized_score(self, returns) -> np.ndarray | float | None:
        """D4RL-style score of ``returns`` from the metadata's reference returns (see :func:`normalized_score`)."""
        return normalized_score(returns, self.ref_min_score, self.ref_max_score)

    def split(self) -> list[dict]:
        """One dict per episode: ``obs`` [T+1], ``act``, ``reward``, ``terminated``, ``truncated``,
        ``behavior_log_prob`` [T] (the keys the data has)."""
        out, o, t = [], 0, 0
        for n in self.episode_lengths:
            ep = {"obs": self.observations[o : o + n + 1], "act": self.actions[t : t + n], "terminated": self.terminations[t : t + n], "truncated": self.truncations[t : t + n]}
            if self.rewards is not None:
                ep["reward"] = self.rewards[t : t + n]
            if self.behavior_log_prob is not None:
                ep["behavior_log_prob"] = self.behavior_log_prob[t : t + n]
            out.append(ep)
            o, t = o + n + 1, t + n
        return out

    def nbytes(self) -> int:
        arrays = (self.observations, self.actions, self.rewards, self.terminations, self.truncations, self.episode_lengths, self.behavior_log_prob)
        return sum(a.nbytes for a in arrays if a is not None)


def _flat_array(x, what: str, dataset_id: str) -> np.ndarray:
    if isinstance(x, (dict, tuple)):
        raise DatasetError(f"dataset {dataset_id!r} has {type(x).__name__} {what}; only Box and Discrete spaces are supported (flatten them first)")
    return np.asarray(x)


def load_episodes(dataset_id: str) -> Episodes:
    """Read a local Minari dataset (ours or anyone's) with Box or Discrete spaces into :class:`Episodes`."""
    path = dataset_path(dataset_id)
    meta = dataset_metadata(dataset_id)
    minari = _minari()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = minari.load_dataset(dataset_id)
            observation_space, action_space = ds.observation_space, ds.action_space
            cols = _Columns(int(meta.get("total_steps") or ds.total_steps), int(meta.get("total_episodes") or ds.total_episodes), dataset_id)
            for ep in ds.iterate_episodes():
                infos = ep.infos or {}
                cols.add(
                    _flat_array(ep.observations, "observations", dataset_id),
                    _flat_array(ep.actions, "actions", dataset_id),
                    ep.rewards,
                    ep.terminations,
                    ep.truncations,
                    infos.get(BEHAVIOR_LOG_PROB),
                    ep.id,
                )
    except DatasetError:
        raise
    except KeyError as e:
        missing = next((k for k in ("rewards", "actions", "observations", "terminations", "truncations") if repr(k)[1:-1] in str(e)), str(e))
        what = "no rewards; reinforcement learning needs them" if missing == "rewards" else f"no {missing}"
        raise DatasetError(f"dataset {dataset_id!r} at {path} has {what} (every Minari episode stores observations, actions, rewards, terminations and truncations)") from None
    except Exception as e:  # h5py/pyarrow raise many types on damaged files
        raise DatasetError(f"dataset {dataset_id!r} at {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); the file is truncated or corrupt, make it again") from None
    if cols.episodes == 0:
        raise DatasetError(f"dataset {dataset_id!r} has no episodes")
    for space, what in ((observation_space, "observation"), (action_space, "action")):
        if not isinstance(space, (gym.spaces.Box, gym.spaces.Discrete)):
            raise DatasetError(f"dataset {dataset_id!r} has a {type(space).__name__} {what} space; only Box and Discrete are supported")
    return Episodes(
        dataset_id=dataset_id,
        **cols.arrays(),
        observation_space=observation_space,
        action_space=action_space,
        env_id=dataset_env_id(dataset_id),
        ref_min_score=meta.get("ref_min_score"),
        ref_max_score=meta.get("ref_max_score"),
        metadata=meta,
    )


class _Columns:
    """Episodes copied straight into preallocated arrays (sized from the metadata's totals), so loading holds
    one copy of the data; floating-point observations, actions and rewards are kept as float32, as learners use them."""

    def __init__(self, total_steps: int, total_episodes: int, dataset_id: str):
        self.n, self.e, self.dataset_id = total_steps, total_episodes, dataset_id
        self.t = self.o = self.episodes = 0
        self.cols: dict[str, np.ndarray | None] = {}
        self.lengths = np.zeros(total_episodes, dtype=np.int64)

    def _alloc(self, name: str, rows: int, like: np.ndarray) -> None:
        dtype = np.float32 if np.issubdtype(like.dtype, np.floating) else like.dtype
        self.cols[name] = np.empty((rows, *like.shape[1:]), dtype=dtype)

    def add(self, obs, act, rew, term, trunc, logp, episode_id) -> None:
        n = len(act)
        if len(obs) != n + 1:
            raise DatasetError(f"dataset {self.dataset_id!r}: episode {episode_id} has {len(obs)} observations for {n} actions; Minari stores N+1 (the first and every next one)")
        if self.episodes >= self.e or self.t + n > self.n:
            raise DatasetError(f"dataset {self.dataset_id!r} holds more steps or episodes than its metadata says ({self.n} steps, {self.e} episodes); the dataset is damaged, make it again")
        rows = {"observations": np.asarray(obs), "actions": np.asarray(act), "rewards": None if rew is None else np.asarray(rew, dtype=np.float32),
                "terminations": np.asarray(term, dtype=bool), "truncations": np.asarray(trunc, dtype=bool),
                "behavior_log_prob": None if logp is None else np.asarray(logp, dtype=np.float32)[:n]}  # fmt: skip
        for name, value in rows.items():
            if self.episodes == 0 and value is not None:
                self._alloc(name, self.n + self.e if name == "observations" else self.n, value)
            if value is None or self.cols.get(name) is None:
                self.cols[name] = None  # absent in any episode: absent for the dataset
                continue
            at = self.o if name == "observations" else self.t
            self.cols[name][at : at + len(value)] = value
        self.lengths[self.episodes] = n
        self.t, self.o, self.episodes = self.t + n, self.o + n + 1, self.episodes + 1

    def arrays(self) -> dict:
        out = {k: (None if v is None else v[: self.o if k == "observations" else self.t]) for k, v in self.cols.items()}
        out["episode_lengths"] = self.lengths[: self.episodes]
        return out
def write_dataset(
    dataset_id: str,
    episodes: list[dict],
    env: gym.Env | str,
    *,
    algorithm_name: str,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    description: str = "",
    overwrite: bool = False,
) -> Path:
    """Write episodes (dicts with ``obs`` [T+1], ``act``, ``reward``, ``terminated``, ``truncated`` and
    optionally ``behavior_log_prob`` [T], ``seed``) as a Minari dataset; returns its folder.

    An existing dataset is never replaced unless ``overwrite``; reference returns make scores normalisable.
    """
    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    target = dataset_root() / dataset_id
    if (target / "data").exists():
        if not overwrite:
            raise DatasetError(f"dataset {dataset_id!r} already exists at {target}; choose another id (e.g. bump -v0 to -v1) or pass --overwrite")
        minari.delete_dataset(dataset_id)
    buffers = []
    for k, ep in enumerate(episodes):
        infos = None
        if ep.get("behavior_log_prob") is not None:
            infos = {BEHAVIOR_LOG_PROB: np.r_[np.asarray(ep["behavior_log_prob"], dtype=np.float64), 0.0]}
        buffers.append(
            EpisodeBuffer(
                id=k,
                seed=ep.get("seed"),
                observations=np.asarray(ep["obs"]),
                actions=np.asarray(ep["act"]),
                rewards=np.asarray(ep["reward"], dtype=np.float64),
                terminations=np.asarray(ep["terminated"], dtype=bool),
                truncations=np.asarray(ep["truncated"], dtype=bool),
                infos=infos,
            )
        )
    env_obj = gym.make(env) if isinstance(env, str) else env
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari's reminders about author, e-mail and code permalink
        minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            env=env_obj,
            algorithm_name=algorithm_name,
            ref_min_score=ref_min_score,
            ref_max_score=ref_max_score,
            description=f"{description}. Made with {made_with()}." if description else f"Made with {made_with()}.",
            author="dynarl",
            code_permalink="https://github.com/dynarl/dynarl",
        )
    return target


def episodes_from_transitions(obs, act, reward, next_obs, terminated, truncated) -> list[dict]:
    """Split a single stream of consecutive transitions (a one-env replay buffer, oldest first) into episodes in
    Minari's layout. An episode ends at a termination or truncation, or where ``next_obs`` does not continue
    into the next row's ``obs``; a cut that the env did not make is marked as a truncation (as Minari does)."""
    obs, next_obs = np.asarray(obs), np.asarray(next_obs)
    terminated, truncated = np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool).copy()
    n = len(obs)
    if n == 0:
        return []
    continues = np.zeros(n, dtype=bool)
    continues[:-1] = np.all(next_obs[:-1].reshape(n - 1, -1) == obs[1:].reshape(n - 1, -1), axis=1)
    ends = terminated | truncated | ~continues
    truncated |= ~continues & ~terminated
    episodes, start = [], 0
    for end in np.flatnonzero(ends):
        sl = slice(start, end + 1)
        episodes.append(
            {
                "obs": np.concatenate([obs[start : start + 1], next_obs[sl]]),
                "act": np.asarray(act)[sl],
                "reward": np.asarray(reward)[sl],
                "terminated": terminated[sl],
                "truncated": truncated[sl],
            }
        )
        start = end + 1
    return episodes
