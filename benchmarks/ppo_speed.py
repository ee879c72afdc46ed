"""PPO training throughput on CartPole-v1: dynarl against Stable-Baselines3 in the same run.

Both use SB3's default PPO settings with 8 envs (n_steps 2048 per env, batch 64, 10 epochs, lr 3e-4,
gamma 0.99, GAE 0.95, clip 0.2, separate 64x64 tanh policy and value networks, grad-norm clip 0.5; given
to dynarl explicitly, since its CartPole preset differs, and echoed as ``dynarl_settings``), ``--threads``
torch threads on both sides, no evaluation. Env steps/s counts collection and updates together (whole
iterations). After one warm-up iteration each, the two take turns, one iteration each, so that a drifting
machine load slows both alike; ``speedup_vs_sb3`` is the median of the per-turn ratios.

    python benchmarks/ppo_speed.py [--iterations 2] [--threads 1] [--n-steps 2048]

``--threads N`` is in force on both sides (dynarl gets it as ``torch_threads=N``; before, PPO's own
default of one thread overrode the script's setting process-wide); ``0`` means torch's default (one per
core, or ``OMP_NUM_THREADS``). ``dynarl_threads`` and ``sb3_threads`` are ``torch.get_num_threads()``
read inside each side's timed iterations, i.e. the count really in force.

Prints one JSON line: ``{"dynarl_steps_per_s": ..., "sb3_steps_per_s": ..., "speedup_vs_sb3": ...}``
(``sb3_steps_per_s`` and ``speedup_vs_sb3`` are null, with the reason in ``sb3``, when stable-baselines3 is
not importable).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
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


def dynarl_side(seed: int, threads: int, n_steps: int = N_STEPS):
    """(one timed iteration -> (env steps, seconds, threads in force), the learner settings in force, close)."""
    from dynarl.algos.on_policy import PPO

    agent = PPO("CartPole-v1", n_envs=N_ENVS, n_steps=n_steps, seed=seed, torch_threads=threads, quiet=True,
                eval_every=10**9, log_every=10**9, checkpoint_every=10**9, **SB3_DEFAULTS)
    settings = {key.split(".")[1]: getattr(agent.cfg.learner, key.split(".")[1]) for key in SB3_DEFAULTS}
    agent.collector.reset()
    agent.train_step()  # warm-up iteration (allocations, first-call costs)

    def iteration() -> tuple[int, float, int]:
        steps = agent.env_steps
        start = time.perf_counter()
        agent.train_step()
        seconds = time.perf_counter() - start
        return agent.env_steps - steps, seconds, torch.get_num_threads()

    return iteration, {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}, agent.close


def sb3_side(seed: int, n_steps: int = N_STEPS):
    """(one timed iteration -> (env steps, seconds, threads in force), SB3's version, close), or why SB3
    could not be measured."""
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

    env = make_vec_env("CartPole-v1", n_envs=N_ENVS, seed=seed)
    model = SB3PPO("MlpPolicy", env, n_steps=n_steps, device="cpu", seed=seed, verbose=0)
    model.learn(N_ENVS * n_steps)  # warm-up iteration

    def iteration() -> tuple[int, float, int]:
        clock = ThreadsInForce()
        steps = model.num_timesteps
        start = time.perf_counter()
        model.learn(N_ENVS * n_steps, reset_num_timesteps=False, callback=clock)
        seconds = time.perf_counter() - start
        return model.num_timesteps - steps, seconds, clock.threads

    return iteration, stable_baselines3.__version__, env.close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations of 8 x n_steps env steps each, per side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides (0: torch's default)")
    parser.add_argument("--n-steps", type=int, default=N_STEPS, help="env steps per env and iteration (SB3's default 2048; smaller for a quick check)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    use_threads(args.threads)
    ours, settings, close_ours = dynarl_side(args.seed, args.threads, args.n_steps)
    use_threads(args.threads)  # again: nothing either side builds may change it
    theirs = sb3_side(args.seed, args.n_steps)
    use_threads(args.threads)
    our_turns, their_turns = [], []
    for _ in range(args.iterations):  # A B A B: both sides see the same stretch of machine load
        our_turns.append(ours())
        if not isinstance(theirs, str):
            their_turns.append(theirs[0]())
    close_ours()

    def speed(turns):
        return sum(t[0] for t in turns) / sum(t[1] for t in turns)

    def threads(turns):
        counts = {t[2] for t in turns}
        return counts.pop() if len(counts) == 1 else sorted(counts)

    out = {
        "benchmark": "ppo_speed",
        "env": "CartPole-v1",
        "n_envs": N_ENVS,
        "n_steps": args.n_steps,
        "iterations": args.iterations,
        "threads_requested": args.threads,
        "dynarl_threads": threads(our_turns),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "dynarl_settings": settings,
        "dynarl_steps_per_s": round(speed(our_turns), 1),
    }
    if isinstance(theirs, str):
        out.update(sb3=theirs, sb3_steps_per_s=None, speedup_vs_sb3=None)
    else:
        theirs[2]()
        ratio = statistics.median((t[1] / t[0]) / (o[1] / o[0]) for o, t in zip(our_turns, their_turns))  # their s/step over ours
        out.update(sb3=f"stable-baselines3 {theirs[1]}", sb3_threads=threads(their_turns), sb3_steps_per_s=round(speed(their_turns), 1), speedup_vs_sb3=round(ratio, 2))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
