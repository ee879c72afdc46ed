"""PETS learning tests (CPU, one thread, fixed seed).

CI-sized settings, smaller than the papers' and stated here: an ensemble of 5 members of 3x64 SiLU (PETS:
5-7 of 4x200), CEM population 200 with 3 iterations (PETS: 400-500, 5), 5 particles (PETS: 20).

- Pendulum-v1, Gaussian ensemble, TS1, horizon 25: mean evaluation return >= -250 after 5 trials (1,000 env
  steps: one random trial, then four planned ones), with the planner's model in float32 and in bfloat16
  (the bf16 planner must plan as well as the fp32 one). About 1.5 minutes each.
PETS on InvertedPendulum-v5 (1,000 within 5 trials) is not claimed, so there is no test for it: at CI-sized
settings the first trials are too short to learn from, and with enough data the cart random-walks to the
end of its rail under the constant alive reward (benchmarks/RESULTS.md, "Decision-time planning").
"""

from __future__ import annotations

import pytest
import torch

from dynarl.algos.pets import PETS
from dynarl.presets.planning import _SMALL_MODEL

SMALL = {
    **_SMALL_MODEL,
    "planner.population_size": 200,
    "planner.particles": 5,
    "planner.num_iterations": 3,
    "torch_threads": 1,
    "quiet": True,
    "seed": 0,
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_pets_pendulum_reaches_minus_250_within_5_episodes(precision):
    agent = PETS("Pendulum-v1", steps=1000, eval_every=1000, eval_episodes=3, **SMALL, **{"planner.horizon": 25, "planner.precision": precision})
    agent.learn()
    mean, _ = agent.last_eval
    print(f"PETS Pendulum-v1 ({precision}): eval return {mean:.1f} after {agent.episodes} episodes / {agent.env_steps} steps, {agent.wall_seconds:.0f} s")
    assert agent.episodes == 5
    assert mean >= -250
