"""Making offline datasets: roll out a behaviour policy for N episodes and write them in Minari's format.

The behaviour policy is a trained agent (deterministic, or sampling from its own stochastic policy), optionally
mixed with uniformly random actions with probability epsilon, or the uniform policy itself. Where the policy
has a density, ``log pi_b(a_t | s_t)`` of the action actually taken is stored per step, for importance-sampling
off-policy evaluation:

    pi_b(a|s) = (1 - epsilon) pi(a|s) + epsilon u(a),   u = 1 / vol(A) (Box) or 1 / |A| (Discrete)

A deterministic continuous policy has no density, so no log-probability is stored for it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np

from dynarl.data.datasets import DatasetError, write_dataset
from dynarl.envs import make_env
from dynarl.envs.spaces import require_agent_fits
from dynarl.run.evaluate import evaluate
from dynarl.seeding import EVAL_SEED_OFFSET

Behavior = Callable[[np.ndarray], tuple[np.ndarray, "float | None"]]  # obs -> (env action, log pi_b(a|s) or None)


def uniform_log_density(space: gym.Space) -> float:
    if isinstance(space, gym.spaces.Discrete):
        return -float(np.log(space.n))
    return -float(np.sum(np.log(space.high.astype(np.float64) - space.low.astype(np.float64))))


def random_behavior(space: gym.Space, rng: np.random.Generator) -> Behavior:
    """The uniform policy over the action space (the D4RL "random" level)."""
    log_u = uniform_log_density(space)

    def act(obs):
        if isinstance(space, gym.spaces.Discrete):
            return np.int64(space.start + rng.integers(space.n)), log_u
        return rng.uniform(space.low, space.high).astype(space.dtype), log_u

    return act


def agent_behavior(agent, deterministic: bool, epsilon: float, rng: np.random.Generator) -> Behavior:
    """The agent's policy (its greedy action, or a sample of its stochastic policy), with an epsilon of uniform actions."""
    space = agent.action_space
    uniform = random_behavior(space, rng)
    discrete = isinstance(space, gym.spaces.Discrete)
    log_u = uniform_log_density(space)

    def act(obs):
        explore = epsilon > 0 and rng.random() < epsilon
        if discrete and deterministic:  # a point mass on the greedy action, mixed with the uniform
            greedy = agent.policy_action(obs, deterministic=True)
            action = uniform(obs)[0] if explore else greedy
            p = (1 - epsilon) * float(np.asarray(action) == np.asarray(greedy)) + epsilon * np.exp(log_u)
            return action, float(np.log(p))
        action = uniform(obs)[0] if explore else agent.policy_action(obs, deterministic=deterministic)
        if deterministic:
            return action, None
        log_pi = agent.action_log_prob(np.asarray(obs)[None], np.asarray(action)[None])
        if log_pi is None:
            return action, None
        p = (1 - epsilon) * np.exp(float(log_pi[0])) + epsilon * np.exp(log_u)
        return action, float(np.log(p)) if p > 0 else -np.inf

    return act


def rollout_episodes(env: gym.Env, behavior: Behavior, n_episodes: int, seed: int) -> list[dict]:
    """``n_episodes`` episodes (Minari layout: N+1 observations), episode k reset with seed ``seed + k``."""
    episodes = []
    for k in range(n_episodes):
        obs, _ = env.reset(seed=seed + k)
        observations, actions, rewards, terms, truncs, logps = [obs], [], [], [], [], []
        done = False
        while not done:
            action, logp = behavior(obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(float(reward))
            terms.append(bool(terminated))
            truncs.append(bool(truncated))
            logps.append(logp)
            done = terminated or truncated
        episodes.append(
            {
                "obs": np.asarray(observations),
                "act": np.asarray(actions),
                "reward": np.asarray(rewards),
                "terminated": np.asarray(terms),
                "truncated": np.asarray(truncs),
                "behavior_log_prob": None if any(lp is None for lp in logps) else np.asarray(logps, dtype=np.float64),
                "seed": seed + k,
            }
        )
    return episodes


def random_return(env: gym.Env, episodes: int, seed: int) -> float:
    """The uniform policy's mean return: the 0 of the normalised score."""
    rng = np.random.default_rng(seed)
    act = random_behavior(env.action_space, rng)
    return float(evaluate(env, lambda obs: act(obs)[0], episodes, seed).mean())


@dataclass
class CollectResult:
    dataset_id: str
    path: str
    episodes: int
    transitions: int
    return_mean: float
    return_std: float
    ref_min_score: float | None
    ref_max_score: float | None
    has_log_prob: bool

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def collect(
    agent,
    out: str,
    episodes: int,
    *,
    env_id: str | None = None,
    deterministic: bool = False,
    epsilon: float = 0.0,
    seed: int = 0,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    ref_episodes: int = 10,
    overwrite: bool = False,
) -> CollectResult:
    """Write ``episodes`` episodes of ``agent`` (None: the uniform policy on ``env_id``) as Minari dataset ``out``.

    Reference returns not given are measured: the random one by the uniform policy, the expert one by the
    agent's deterministic evaluation (pass ``ref_max_score`` when the agent is not the expert of this task).
    """
    if episodes <= 0:
        raise DatasetError(f"--episodes {episodes} is invalid: must be > 0")
    if not 0.0 <= epsilon <= 1.0:
        raise DatasetError(f"--epsilon {epsilon} is invalid: must be in [0, 1]")
    env_id = env_id or agent.cfg.env
    env = make_env(env_id)
    if agent is not None:
        require_agent_fits(f"the agent ({agent.name.upper()} on {agent.cfg.env})", (agent.observation_space, agent.action_space), f"env {env_id}",
                           (env.observation_space, env.action_space), "collect in the env it was trained on (leave out --env)")
    rng = np.random.default_rng(seed)
    behavior = random_behavior(env.action_space, rng) if agent is None else agent_behavior(agent, deterministic, epsilon, rng)
    data = rollout_episodes(env, behavior, episodes, seed)
    if ref_min_score is None:
        ref_min_score = random_return(env, ref_episodes, seed + EVAL_SEED_OFFSET)
    if ref_max_score is None and agent is not None:
        ref_max_score = float(evaluate(env, lambda obs: agent.policy_action(obs, deterministic=True), ref_episodes, seed).mean())
        if not ref_max_score > ref_min_score:  # a scale from it would rank better policies lower
            print(f"dynarl: note: the agent's deterministic return {ref_max_score:.1f} is not above the random reference {ref_min_score:.1f}, so it is "
                  "not stored as the expert reference and scores on this dataset are not normalised; pass --ref-max with the task's expert return", file=sys.stderr, flush=True)
            ref_max_score = None
    name = "random" if agent is None else f"{agent.name}{' deterministic' if deterministic else ''}{f' epsilon={epsilon}' if epsilon else ''}"
    path = write_dataset(out, data, env, algorithm_name=name, ref_min_score=ref_min_score, ref_max_score=ref_max_score, description=f"{episodes} episodes of {name} on {env_id}", overwrite=overwrite)
    returns = np.array([ep["reward"].sum() for ep in data])
    return CollectResult(out, str(path), episodes, int(sum(len(ep["act"]) for ep in data)), float(returns.mean()), float(returns.std()), ref_min_score, ref_max_score, data[0]["behavior_log_prob"] is not None)
