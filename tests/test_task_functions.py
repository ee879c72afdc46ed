"""Every loop that uses a task's known functions computes, on its own observations, the real env's reward
and termination.

The task functions (:mod:`dynarl.envs.tasks`) are exact on one observation: ``reward_fn`` /
``termination_fn`` on ``make_env(id, model_obs=True)``, ``standard_termination()`` on the standard one. A
loop that hands them a different observation computes nonsense without an error (SLBO once rewarded
HalfCheetah's vertical velocity). So for each loop (PETS, POPLIN, MBPO/Dyna, SLBO) and each of the 12
registered tasks, this builds the loop as a user would, steps *the loop's own training env* with random
actions, and checks the functions the loop's model env holds against the rewards and ``terminated``
flags the env returned. Where the loop learns the reward (MBPO) or the termination (MBPO on
InvertedDoublePendulum), it checks that the model learns it instead.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_envs import MUST_TERMINATE

from dynarl.algos.mbpo import MBPO
from dynarl.algos.pets import PETS
from dynarl.algos.poplin import POPLINA
from dynarl.algos.slbo import SLBO
from dynarl.envs import get_task, registered_tasks

torch.set_num_threads(1)

_QUIET = dict(quiet=True, eval_every=10**9, log_every=10**9, checkpoint_every=10**9)
LOOPS = {
    "pets": (PETS, dict(buffer_size=1_000, **_QUIET)),
    "poplin_a": (POPLINA, dict(buffer_size=1_000, **_QUIET)),
    "mbpo": (MBPO, dict(buffer_size=1_000, rollout_batch_size=10, batch_size=32, **_QUIET)),
    "slbo": (SLBO, dict(steps=1_000, model_hidden_sizes=(16,), **_QUIET)),
}
# what each loop must take from the task registry (else it learns it): (known reward, known termination)
KNOWN = {"pets": (True, True), "poplin_a": (True, True), "slbo": (True, True), "mbpo": (False, True)}
NO_STANDARD_TERMINATION = {"InvertedDoublePendulum-v5"}  # its tip height is not in the standard observation

STEPS = {"Humanoid-v5": 100, "Ant-v5": 200}  # slow to step; random Humanoid falls within ~25 steps
DEFAULT_STEPS = 300


def _build(loop: str, env_id: str):
    cls, kwargs = LOOPS[loop]
    if loop == "mbpo" and env_id in NO_STANDARD_TERMINATION:
        kwargs = {**kwargs, "learned_termination": True}
    return cls(env_id, seed=0, **kwargs)


def _model_env(agent):
    return agent.controller.model_env if hasattr(agent, "controller") else agent.rollouts.model_env if hasattr(agent, "rollouts") else agent.model_env


def _transitions(env, steps: int, seed: int = 0):
    """Random-action transitions from ``env``: obs, act, next_obs (before any reset), reward, terminated."""
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    rows = []
    for _ in range(steps):
        act = env.action_space.sample()
        next_obs, rew, term, trunc, _ = env.step(act)
        rows.append((obs, act, next_obs, float(rew), bool(term)))
        obs = env.reset()[0] if term or trunc else next_obs
    o, a, n, r, t = (np.stack([row[i] for row in rows]) for i in range(5))
    return (*(torch.as_tensor(x, dtype=torch.float64) for x in (o, a, n)), r, t)


@pytest.mark.parametrize("env_id", registered_tasks())
@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_loop_task_functions_match_its_env(loop, env_id):
    assert len(registered_tasks()) == 12
    agent = _build(loop, env_id)
    menv = _model_env(agent)
    known_reward, known_termination = KNOWN[loop]
    if loop == "mbpo" and env_id in NO_STANDARD_TERMINATION:
        known_termination = False

    obs, act, nxt, rew, term = _transitions(agent.make_env(), STEPS.get(env_id, DEFAULT_STEPS))
    assert obs.shape[-1] == agent.obs_dim  # the loop's model sees these observations
    if env_id in MUST_TERMINATE:
        assert term.any(), f"{env_id}: the random rollout saw no termination"

    if known_reward:
        assert menv.reward_fn is not None, f"{loop} should plan with {env_id}'s known reward"
        pred = menv.reward_fn(obs, act, nxt).numpy()
        err = np.abs(pred - rew)
        assert err.max() <= 1e-5 + 1e-6 * np.abs(rew).max(), f"{loop} {env_id}: reward off by up to {err.max():.3g} (step {err.argmax()})"
    else:
        assert menv.reward_fn is None and agent.model.cfg.learn_reward, f"{loop} should learn {env_id}'s reward"

    if known_termination:
        assert menv.termination_fn is not None, f"{loop} should use {env_id}'s known termination"
        done = menv.termination_fn(obs, act, nxt).numpy()
        wrong = np.nonzero(done != term)[0]
        assert len(wrong) == 0, f"{loop} {env_id}: termination wrong on {len(wrong)}/{len(term)} steps, first at {wrong[:5]}"
    else:
        assert menv.termination_fn is None and agent.model.cfg.learn_termination, f"{loop} should learn {env_id}'s termination"


def test_the_functions_are_the_registry_ones():
    """The loops hold the registry's functions for their observation, not copies that could drift."""
    task = get_task("Hopper-v5")
    slbo, pets, mbpo = _build("slbo", "Hopper-v5"), _build("pets", "Hopper-v5"), _build("mbpo", "Hopper-v5")
    assert slbo.model_env.reward_fn is task.reward_fn and slbo.model_env.termination_fn is task.termination_fn
    assert pets.controller.model_env.termination_fn is task.termination_fn
    assert mbpo.rollouts.model_env.termination_fn is task.standard_termination()
