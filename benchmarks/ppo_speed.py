"""PPO training throughput on CartPole-v1: dynarl against Stable-Baselines3 in the same run.

Both use SB3's default PPO settings with 8 envs (n_steps 2048 per env, batch 64, 10 epochs, lr 3e-4,
gamma 0.99, GAE 0.95, clip 0.2, separate 64x64 tanh policy and value networks, grad-norm clip 0.5; given
to dynarl explicitly, since its CartPole preset differs, and echoed as ``dynarl_settings``), ``--threads``
torch threads on both sides, no evaluation. Env steps/s counts collection and updates together (whole
iterations).

    python benchmarks/ppo_speed.py [--iterations 2] [--threads 1] [--n-steps 2048]

``--threads N`` is set on each side right before it is timed (dynarl gets it as ``torch_threads=N``, which
PPO would otherwise set to its own default, process-wide); ``0`` means torch's default (one per core, or
``OMP_NUM_THREADS``). ``dynarl_threads`` and ``sb3_threads`` are ``torch.get_num_threads()`` read inside
each timed window, i.e. the count really in force.

Prints one JSON line: ``{"dynarl_steps_per_s": ..., "sb3_steps_per_s": ..., "speedup_vs_sb3": ...}``
(``sb3_steps_per_s`` and ``speedup_vs_sb3`` are null, with the reason in ``sb3``, when stable-baselines3 is
not importable).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

N_ENVS, N_STEPS = 8, 2048
# SB3's PPO defaults, given to dynarl explicitly: PPO("CartPole-v1") alone would take dynarl's CartPole preset
# (the RL Zoo's batch 256, 20 epochs, lr 1e-3, gamma 0.98, lambda 0.8), a different amount of work per iteration
SB3_DEFAULTS = {"learner.batch_size": 64, "learner.n_epochs": 10, "learner.lr": 3e-4, "learner.gamma": 0.99, "learner.gae_lambda": 0.95,
                "learner.clip_range": 0.2, "learner.ent_coef": 0.0, "learner.vf_coef": 0.5, "learner.max_grad_norm": 0.5, "learner.hidden_sizes": (64, 64)}
TORCH_DEFAULT_THREADS = torch.get_num_threads()  # before anything sets it: torch's own default in this process


def use_threads(threads: int) -> None:
    """Put ``threads`` torch threads in force (0: torch's default)."""
    torch.set_num_threads(threads or TORCH_DEFAULT_THREADS)


def dynarl_speed(iterations: int, seed: int, threads: int, n_steps: int = N_STEPS) -> tuple[float, int, dict]:
    """(env steps/s, torch threads in force while timed, the learner settings in force)."""
    from dynarl.algos.on_policy import PPO

    use_threads(threads)
    agent = PPO("CartPole-v1", n_envs=N_ENVS, n_steps=n_steps, seed=seed, torch_threads=threads, quiet=True,
                eval_every=10**9, log_every=10**9, checkpoint_every=10**9, **SB3_DEFAULTS)
    settings = {key: getattr(agent.cfg.learner, key.split(".")[1]) for key in SB3_DEFAULTS}
    agent._reset_env()
    agent.train_step()  # warm-up iteration (allocations, first-call costs)
    start, steps = time.perf_counter(), agent.env_steps
    for _ in range(iterations):
        agent.train_step()
    in_force = torch.get_num_threads()
    speed = (agent.env_steps - steps) / (time.perf_counter() - start)
    agent.close()
    return speed, in_force, settings


def sb3_speed(iterations: int, seed: int, threads: int, n_steps: int = N_STEPS) -> tuple[float, int, str] | str:
    """(env steps/s, torch threads in force while timed, SB3's version), or why SB3 could not be measured."""
    try:
        import stable_baselines3
        from stable_baselines3 import PPO as SB3PPO
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.env_util import make_vec_env
    except ImportError as e:
        return f"not measured: stable-baselines3 is not importable ({e}); pip install stable-baselines3"

    class ThreadsInForce(BaseCallback):
        def _on_step(self) -> bool:
            self.threads = torch.get_num_threads()
            return True

    use_threads(threads)
    env = make_vec_env("CartPole-v1", n_envs=N_ENVS, seed=seed)
    model = SB3PPO("MlpPolicy", env, n_steps=n_steps, device="cpu", seed=seed, verbose=0)
    model.learn(N_ENVS * n_steps)  # warm-up iteration
    clock = ThreadsInForce()
    start = time.perf_counter()
    model.learn(iterations * N_ENVS * n_steps, reset_num_timesteps=False, callback=clock)
    speed = iterations * N_ENVS * n_steps / (time.perf_counter() - start)
    env.close()
    return speed, clock.threads, stable_baselines3.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations of 8 x n_steps env steps each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides (0: torch's default)")
    parser.add_argument("--n-steps", type=int, default=N_STEPS, help="env steps per env and iteration (SB3's default 2048; smaller for a quick check)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ours, our_threads, settings = dynarl_speed(args.iterations, args.seed, args.threads, args.n_steps)
    theirs = sb3_speed(args.iterations, args.seed, args.threads, args.n_steps)
    out = {
        "benchmark": "ppo_speed",
        "env": "CartPole-v1",
        "n_envs": N_ENVS,
        "n_steps": args.n_steps,
        "iterations": args.iterations,
        "threads_requested": args.threads,
        "dynarl_threads": our_threads,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "dynarl_settings": {k.split(".")[1]: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
        "dynarl_steps_per_s": round(ours, 1),
    }
    if isinstance(theirs, str):
        out.update(sb3=theirs, sb3_steps_per_s=None, speedup_vs_sb3=None)
    else:
        speed, sb3_threads, version = theirs
        out.update(sb3=f"stable-baselines3 {version}", sb3_threads=sb3_threads, sb3_steps_per_s=round(speed, 1), speedup_vs_sb3=round(ours / speed, 2))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
