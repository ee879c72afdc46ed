"""Learning tests: real Pendulum-v1, fixed seed, the presets' settings (RL Zoo) with 64x64 networks, final
deterministic evaluation over 10 episodes. The issue's bars (SAC and TD3 >= -250 within 15k env steps, DDPG
>= -400 within 20k) are met within 8k steps: seeds 0 and 1 gave SAC -193 / -190, TD3 -211 / -207 and DDPG
-325 / -324 (about 30-75 s each on one core). The full-size runs are in benchmarks/learning.py."""

import pytest

import dynarl


@pytest.mark.slow
@pytest.mark.parametrize("algo,steps,bar", [("sac", 8_000, -250.0), ("td3", 8_000, -250.0), ("ddpg", 8_000, -400.0)])
def test_pendulum_learns(algo, steps, bar):
    cls = {"sac": dynarl.SAC, "td3": dynarl.TD3, "ddpg": dynarl.DDPG}[algo]
    agent = cls("Pendulum-v1", seed=0, steps=steps, eval_every=steps, eval_episodes=10, quiet=True, **{"learner.hidden_sizes": (64, 64)})
    agent.learn()
    mean, std = agent.last_eval
    print(f"{algo} Pendulum-v1 {steps} steps: eval {mean:.1f} +- {std:.1f}")
    assert mean >= bar, f"{algo.upper()} reached {mean:.1f} after {steps} steps (bar {bar})"
