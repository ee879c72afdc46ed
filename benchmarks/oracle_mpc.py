"""The planner with a perfect model: CEM MPC through the true MuJoCo dynamics (``mujoco.rollout``).

    python benchmarks/oracle_mpc.py --env InvertedPendulum-v5 --horizon 25 --seeds 0 1 [key=value ...]

PETS's objective (the task registry's reward and termination, summed over the horizon; a terminated
rollout stops earning) is optimised exactly as PETS does, by the same optimiser, but every candidate is
simulated by MuJoCo itself from the real state instead of by a learned ensemble. What this planner
cannot do, PETS cannot do with any model: it separates failures of the objective and horizon from
failures of the learned model. One JSON line per seed: return, steps, the largest |cart x| and the first step
with |x| >= 0.99 (the rail ends at 1), seconds.
``key=value`` overrides set the planner (``population_size=500``, ``num_iterations=5``, ``optimizer=icem``).

Only for MuJoCo tasks whose observation is ``[qpos, qvel]`` and whose registry reward reads that
observation (InvertedPendulum-v5); the script checks this and stops with a clear error otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import gymnasium as gym
import mujoco
import numpy as np
import torch
from mujoco import rollout

from dynarl.config import apply_overrides, parse_overrides
from dynarl.envs import get_task
from dynarl.planning.mpc import OpenLoopActions, PlannerConfig
from dynarl.planning.optimizers import make_optimizer


class TrueDynamicsObjective:
    """PETS's planning objective for a batch of action sequences [N, H, A], simulated by MuJoCo."""

    def __init__(self, env: gym.Env, task, gamma: float):
        self.env, self.task, self.gamma = env.unwrapped, task, gamma
        self.model, self.data = self.env.model, self.env.data
        self.spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self.nq, self.nv = self.model.nq, self.model.nv
        self.workers = [mujoco.MjData(self.model)]

    def observation(self, state: np.ndarray) -> np.ndarray:
        """[qpos, qvel] from full-physics states (their first entry is the time)."""
        return state[..., 1 : 1 + self.nq + self.nv]

    def __call__(self, solutions: torch.Tensor) -> torch.Tensor:
        n, horizon = solutions.shape[:2]
        start = np.empty(mujoco.mj_stateSize(self.model, self.spec))
        mujoco.mj_getState(self.model, self.data, start, self.spec)
        skip = self.env.frame_skip
        control = np.repeat(solutions.double().numpy(), skip, axis=1)  # each action held for frame_skip steps
        states, _ = rollout.rollout(self.model, self.workers, np.tile(start, (n, 1)), control)
        obs = torch.as_tensor(self.observation(states[:, skip - 1 :: skip]), dtype=torch.float32)  # [N, H, obs]
        prev = torch.cat([torch.as_tensor(self.observation(start), dtype=torch.float32).expand(n, 1, -1), obs[:, :-1]], 1)
        reward = self.task.reward_fn(prev, solutions, obs)
        terminated = self.task.termination_fn(prev, solutions, obs)
        alive = torch.cumprod(torch.cat([torch.ones(n, 1, dtype=torch.bool), ~terminated[:, :-1]], 1), 1)  # earns until its terminating step
        discount = self.gamma ** torch.arange(horizon, dtype=torch.float32)
        return (reward * alive * discount).sum(1)


def run_seed(env_id: str, seed: int, cfg: PlannerConfig) -> dict:
    env = gym.make(env_id)
    task = get_task(env_id)
    obs, _ = env.reset(seed=seed)
    data = getattr(env.unwrapped, "data", None)
    state_obs = None if data is None else np.concatenate([data.qpos, data.qvel])
    if task is None or state_obs is None or obs.shape != state_obs.shape or not np.allclose(obs, state_obs):
        raise SystemExit(f"{env_id!r}: the oracle needs a MuJoCo task whose observation is [qpos, qvel] and whose reward dynarl knows (InvertedPendulum-v5)")
    objective = TrueDynamicsObjective(env, task, cfg.gamma)
    low, high = (torch.as_tensor(b, dtype=torch.float32) for b in (env.action_space.low, env.action_space.high))
    optimizer = make_optimizer(cfg, low, high, torch.Generator().manual_seed(seed))
    proposal = OpenLoopActions(low, high, cfg.horizon)  # PETS's solution: the action sequence, warm-started shifted
    solution, total, xs, start = None, 0.0, [], time.perf_counter()
    while True:
        init = proposal.initial(None) if solution is None else proposal.shift(solution, None)
        solution = optimizer.optimize(objective, init)
        obs, reward, terminated, truncated, _ = env.step(solution[0].numpy())
        total += float(reward)
        xs.append(float(obs[0]))
        if terminated or truncated:
            break
    return {"benchmark": "oracle_mpc", "env": env_id, "seed": seed, "horizon": cfg.horizon, "return": total, "steps": len(xs),
            "max_abs_cart_x": round(max(map(abs, xs)), 3), "first_step_at_rail": next((i + 1 for i, x in enumerate(xs) if abs(x) >= 0.99), None),
            "final_cart_x": round(xs[-1], 3), "terminated": bool(terminated),
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="InvertedPendulum-v5")
    parser.add_argument("--horizon", type=int, default=25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.epilog = "planner overrides: key=value words anywhere, e.g. population_size=500 num_iterations=5 optimizer=icem"
    words = sys.argv[1:]
    rest = [w for w in words if "=" in w and not w.startswith("-")]  # planner key=value overrides
    args = parser.parse_args([w for w in words if w not in rest])
    # the CPU-sized PETS planner of tests/test_pets.py: population 200, 3 CEM iterations
    cfg = PlannerConfig(horizon=args.horizon, population_size=200, num_iterations=3)
    apply_overrides(cfg, parse_overrides(rest), raw=True)
    torch.set_num_threads(1)
    for seed in args.seeds:
        print(json.dumps(run_seed(args.env, seed, cfg)), flush=True)


if __name__ == "__main__":
    main()
