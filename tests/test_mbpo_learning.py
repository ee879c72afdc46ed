"""MBPO learning tests (CPU, one thread, fixed seed, final deterministic evaluation over 5 episodes).

CI-sized settings, stated here: the presets' MBPO (7 Gaussian members of 4x200, 5 elites, fit every 250
steps, 5% real data, known termination, learned reward) with SAC at 128x128 (MBPO: 256x256). Budgets are
inside the issue's: Pendulum-v1 >= -200 within 3k env steps, InvertedPendulum-v5 1000 within 5k.

- Pendulum-v1: dynarl's Pendulum preset (500 random steps, epoch 250, 10k rollouts per fit, length 1 -> 5,
  G = 10, SAC lr 1e-3), evaluated at 2,000 env steps.
- InvertedPendulum-v5: the original MBPO setting (500 random steps, epoch 250, 100k rollouts of length 1,
  target entropy -0.05) with SAC lr 1e-3 (MBPO: 3e-4) and G = 20 (MBPO: 10), evaluated every 250 env steps
  until the first evaluation at 1000 ("reaches 1000 within 5k"). It does not always *stay* there: seed 0
  reaches 1000 at 1,500 steps and is back at 128 at 2,500 (benchmarks/RESULTS.md has 5 seeds). The
  original SAC settings reach 1000 too, at 2,750-3,250 steps (2 seeds, RESULTS.md), twice this test's time.
"""

from __future__ import annotations

import pytest

from dynarl.algos.mbpo import MBPO

CI_SAC = {"learner.hidden_sizes": [128, 128], "torch_threads": 1, "quiet": True, "seed": 0}


def _final_eval(env: str, steps: int, **overrides) -> float:
    agent = MBPO(env, **{**CI_SAC, "steps": steps, "eval_every": steps, "eval_episodes": 5, **overrides})
    agent.learn()
    mean, std = agent.last_eval
    print(f"MBPO {env} {steps} steps: eval {mean:.1f} +- {std:.1f}; {agent.summary()}")
    return mean


@pytest.mark.slow
def test_mbpo_pendulum_reaches_minus_200_within_3k_steps():
    mean = _final_eval("Pendulum-v1", 2_000)
    assert mean >= -200.0, f"MBPO Pendulum-v1 reached {mean:.1f} after 2,000 steps (bar -200)"


@pytest.mark.slow
def test_mbpo_inverted_pendulum_reaches_1000_within_5k_steps():
    lr = 1e-3
    agent = MBPO("InvertedPendulum-v5", **{**CI_SAC, "updates_per_step": 20, "learner.actor_lr": lr, "learner.critic_lr": lr, "learner.alpha_lr": lr, "eval_every": 250, "eval_episodes": 5})
    history = []
    while agent.env_steps < 5_000:
        agent.learn(agent.env_steps + 250)
        history.append((agent.env_steps, agent.last_eval[0]))
        if agent.last_eval[0] >= 1000.0:
            break
    print(f"MBPO InvertedPendulum-v5 evaluations: {history}")
    assert history[-1][1] >= 1000.0, f"MBPO InvertedPendulum-v5 did not reach 1000 within 5,000 steps: {history}"
