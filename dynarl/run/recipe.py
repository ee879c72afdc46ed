"""The standard dataset levels for a task, D4RL's recipe made locally (Fu et al. 2020):

    train an online agent (SAC by default), checkpointing it ``checkpoints`` times along the way
    evaluate every checkpoint; R_random = the uniform policy's return, R_expert = the best checkpoint's
    random         the uniform policy
    medium         the checkpoint whose normalised return (with the reference returns) is closest to
                   ``medium_fraction`` (chosen by evaluated return band, not by step count), sampling from its
                   own stochastic policy
    medium-replay  that checkpoint's replay buffer: everything the agent saw until then
    expert         the best checkpoint, sampling from its stochastic policy
    medium-expert  medium and expert together

Every level gets R_random and R_expert as Minari's reference scores, so scores normalise the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dynarl.algos import build_config, get_algorithm
from dynarl.data.datasets import DatasetError, episodes_from_transitions, write_dataset
from dynarl.envs import make_env
from dynarl.errors import ConfigError
from dynarl.run.collect import agent_behavior, random_behavior, random_return, rollout_episodes
from dynarl.run.evaluate import evaluate
from dynarl.run.rundir import RunDir
from dynarl.seeding import EVAL_SEED_OFFSET

LEVELS = ("random", "medium", "medium-replay", "expert", "medium-expert")


def replay_episodes(agent) -> list[dict]:
    """The episodes in a loaded run checkpoint's replay buffer, oldest first, actions in env units."""
    buffer = getattr(agent, "buffer", None)
    if buffer is None or len(buffer) == 0:
        raise ConfigError(f"this {agent.name.upper()} checkpoint holds no replay buffer; medium-replay needs a run checkpoint of an off-policy agent such as sac")
    data = {k: v.cpu().numpy() for k, v in buffer.recent(len(buffer)).items()}
    return episodes_from_transitions(data["obs"], agent.actions.to_env(data["act"]), data["reward"], data["next_obs"], data["terminated"], data["truncated"])


def make_levels(
    env_id: str,
    prefix: str,
    *,
    algo: str = "sac",
    steps: int = 50_000,
    episodes: int = 100,
    checkpoints: int = 10,
    medium_fraction: float = 1 / 3,
    eval_episodes: int = 10,
    seed: int = 0,
    work_dir: str | Path = "runs",
    levels: tuple[str, ...] = LEVELS,
    overrides: dict | None = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> dict:
    """Train, choose, collect and write ``prefix/<level>-v0`` for every level; returns what was chosen.

    ``ref_min_score`` / ``ref_max_score`` replace the measured reference returns (e.g. D4RL's, to compare normalised
    scores with published ones): in the datasets' metadata and in the band the medium checkpoint is chosen from.
    """
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown:
        raise ConfigError(f"unknown dataset level(s) {', '.join(unknown)}; choose from {', '.join(LEVELS)}")
    if not 0 < medium_fraction < 1:
        raise ConfigError(f"medium_fraction={medium_fraction} is invalid: must be in (0, 1)")
    cls = get_algorithm(algo)
    every = max(steps // checkpoints, 1)
    run_overrides = {"steps": steps, "seed": seed, "checkpoint_every": every, "keep_checkpoints": checkpoints + 1, "eval_every": steps, "quiet": quiet, **(overrides or {})}
    cfg = build_config(cls.name, env_id, run_overrides)
    run_path = Path(work_dir) / f"recipe-{cls.name}-{env_id.replace('/', '_')}-s{seed}"
    agent = cls(config=cfg)
    agent.learn(run_dir=run_path)

    env = make_env(env_id)
    r_random = random_return(env, eval_episodes, seed + EVAL_SEED_OFFSET)
    scored = []
    for step, path in RunDir.open(run_path).checkpoints():
        candidate = cls.load(path)
        ret = float(evaluate(env, lambda obs, a=candidate: a.policy_action(obs, deterministic=True), eval_episodes, seed).mean())
        scored.append((step, path, ret))
    step_e, path_e, r_expert = max(scored, key=lambda s: s[2])
    ref_min = r_random if ref_min_score is None else ref_min_score
    ref_max = r_expert if ref_max_score is None else ref_max_score
    if not ref_max > ref_min:
        raise DatasetError(f"the expert reference {ref_max:.1f} is not above the random reference {ref_min:.1f} (the best checkpoint of {run_path} returns {r_expert:.1f}, "
                           f"the uniform policy {r_random:.1f}), so no level can be chosen by normalised return; train longer (--steps) or pass --ref-min / --ref-max with the task's references")
    norm = [(s, p, r, (r - ref_min) / (ref_max - ref_min)) for s, p, r in scored]
    step_m, path_m, r_medium, n_medium = min(norm, key=lambda s: abs(s[3] - medium_fraction))

    rng = np.random.default_rng(seed)
    medium, expert = cls.load(path_m), cls.load(path_e)
    made: dict[str, list[dict]] = {}

    def level_data(level: str) -> list[dict]:
        if level not in made:
            if level == "random":
                made[level] = rollout_episodes(env, random_behavior(env.action_space, rng), episodes, seed)
            elif level == "medium":
                made[level] = rollout_episodes(env, agent_behavior(medium, False, 0.0, rng), episodes, seed + 10_000)
            elif level == "expert":
                made[level] = rollout_episodes(env, agent_behavior(expert, False, 0.0, rng), episodes, seed + 20_000)
            elif level == "medium-replay":
                made[level] = replay_episodes(medium)  # a run checkpoint restores the buffer it held
            else:
                made[level] = level_data("medium") + level_data("expert")
        return made[level]

    written = {}
    for level in levels:
        data = level_data(level)
        dataset_id = f"{prefix}/{level}-v0"
        write_dataset(dataset_id, data, env_id, algorithm_name=f"{cls.name} recipe: {level}", ref_min_score=ref_min, ref_max_score=ref_max, description=f"{level} level of {env_id} ({cls.name}, {steps} steps, seed {seed})", overwrite=overwrite)
        returns = np.array([ep["reward"].sum() for ep in data])
        written[level] = {"id": dataset_id, "episodes": len(data), "transitions": int(sum(len(ep["act"]) for ep in data)), "return_mean": float(returns.mean()), "normalized_score": float(100 * (returns.mean() - ref_min) / (ref_max - ref_min))}
    summary = {
        "env": env_id,
        "behavior_run": str(run_path),
        "random_return": r_random,
        "best_checkpoint_return": r_expert,
        "ref_min_score": ref_min,
        "ref_max_score": ref_max,
        "checkpoints": [{"step": s, "eval_return": r} for s, _, r in scored],
        "medium_step": step_m,
        "medium_return": r_medium,
        "expert_step": step_e,
        "datasets": written,
    }
    (run_path / "recipe.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
