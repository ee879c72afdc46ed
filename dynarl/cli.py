"""The ``dynarl`` command. The contract (users and tooling rely on it):

    dynarl train [ALGO] --env ENV [--steps N] [--seed S] [--out DIR] [--device D] [--preset FILE] [key=value ...]
    dynarl resume RUN_DIR [--steps N]
    dynarl eval RUN_DIR|CHECKPOINT [--episodes N] [--stochastic] [--seed S]
    dynarl plot RUN_DIR... [--out FILE.png] [--group algo,env]
    dynarl list [ALGO]
    dynarl collect RUN_DIR|CHECKPOINT|random --episodes N --out ID [--env ENV] [--deterministic] [--epsilon E]
    dynarl dataset list | info ID | recipe --env ENV --prefix NS [--steps N] [--episodes N]
    dynarl ope RUN_DIR|CHECKPOINT --dataset ID
    dynarl compare RUN_DIR... [--group algo,env] [--out DIR]
    dynarl sweep SWEEP.toml --out DIR [--workers N] [--backend local|ray]
    dynarl tune ALGO [--env ENV] --trials N --steps S [--space SPACE.toml|default] --out DIR [--workers N] [--seed S]

Exit code 0 on success; on a user error a short message (no traceback) and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from dynarl.errors import ConfigError, DynarlError, command_status

_current_run: list = [None]  # the RunDir being written: named in the interrupt message, unlocked at exit
DEFAULT_ALGO = "pets"  # the README's first command: PETS on the continuous cart-pole


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dynarl", description="Reinforcement learning built around learned world models.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an agent and write a run folder")
    t.add_argument("words", nargs="*", metavar="[ALGO] [key=value ...]", help=f"algorithm (default {DEFAULT_ALGO}) and config overrides")
    t.add_argument("--env", help="Gymnasium environment id (default: the algorithm's default task; with --dataset: the env the data came from, used for evaluation)")
    t.add_argument("--steps", type=int, help="total steps of the run's clock: env steps, or gradient steps for the algorithms that learn from a dataset")
    t.add_argument("--seed", type=int)
    t.add_argument("--seeds", metavar="LIST", help="train several seeds as one vectorised agent in this process (e.g. 0-7 or 0,3,5): one run folder per seed under --out; SAC, TD3, DDPG, DQN, Double DQN, PPO, A2C, REINFORCE, and MBPO / Dyna-TD3 / Dyna-DDPG")
    t.add_argument("--out", help="run folder to create (default runs/ALGO-ENV-sSEED-TIME)")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"))
    t.add_argument("--dataset", help="Minari dataset id for offline algorithms (bc, cql, iql, awac, fqi, ...)")
    t.add_argument("--preset", metavar="FILE", help="a preset file (TOML/JSON, e.g. the best_preset.toml of `dynarl tune`), applied after the built-in preset and before key=value overrides")

    r = sub.add_parser("resume", help="continue a run from its last good checkpoint")
    r.add_argument("run_dir")
    r.add_argument("--steps", type=int, help="new total of the run's clock, env or gradient steps (default: the run's own)")

    e = sub.add_parser("eval", help="evaluate a run's latest checkpoint (or a checkpoint file)")
    e.add_argument("path")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--stochastic", action="store_true", help="sample the agent's own policy instead of its greedy action (DQN's is greedy either way)")
    e.add_argument("--seed", type=int, help="the evaluation's seed: episode k resets with a seed made from it and k, and a stochastic policy draws from torch seeded with it (default: the run's seed, as in training's evaluations)")

    pl = sub.add_parser("plot", help="plot learning curves of one or more runs")
    pl.add_argument("run_dirs", nargs="+")
    pl.add_argument("--out", default="learning_curves.png")
    pl.add_argument("--group", help="draw one line per group of runs (e.g. algo,env: the mean over seeds, with a 95%% bootstrap band) instead of one per run")

    c = sub.add_parser("collect", help="write a Minari dataset from a trained agent (or the uniform policy: random)")
    c.add_argument("source", metavar="RUN_DIR|CHECKPOINT|random")
    c.add_argument("--episodes", type=int, required=True)
    c.add_argument("--out", required=True, metavar="ID", help="dataset id, e.g. local/pendulum/medium-v0 (under $MINARI_DATASETS_PATH)")
    c.add_argument("--env", help="env to collect in (default: the agent's; required for random)")
    c.add_argument("--deterministic", action="store_true", help="the agent's greedy action instead of a sample of its own policy")
    c.add_argument("--epsilon", type=float, default=0.0, help="probability of a uniformly random action at each step")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--ref-min", type=float, help="reference return of the random policy (default: measured)")
    c.add_argument("--ref-max", type=float, help="reference return of the expert (default: the agent's deterministic evaluation)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing dataset with this id")

    d = sub.add_parser("dataset", help="local offline datasets: list, info, or build the standard levels of a task")
    dsub = d.add_subparsers(dest="dataset_command", required=True)
    dsub.add_parser("list", help="datasets under $MINARI_DATASETS_PATH")
    di = dsub.add_parser("info", help="size, spaces, returns and reference scores of one dataset")
    di.add_argument("id")
    dr = dsub.add_parser("recipe", help="train an agent and write random / medium / medium-replay / expert / medium-expert")
    dr.add_argument("--env", required=True)
    dr.add_argument("--prefix", required=True, help="dataset namespace, e.g. local/pendulum")
    dr.add_argument("--algo", default="sac")
    dr.add_argument("--steps", type=int, default=50_000, help="env steps of the behaviour agent's training")
    dr.add_argument("--episodes", type=int, default=100, help="episodes per collected level")
    dr.add_argument("--checkpoints", type=int, default=10)
    dr.add_argument("--medium-fraction", type=float, default=1 / 3, help="the medium policy's normalised return (D4RL: about 1/3 of the expert's)")
    dr.add_argument("--levels", default=",".join(("random", "medium", "medium-replay", "expert", "medium-expert")))
    dr.add_argument("--seed", type=int, default=0)
    dr.add_argument("--work-dir", default="runs", help="where the behaviour agent's run folder goes")
    dr.add_argument("--ref-min", type=float, help="reference random return for the metadata (default: measured), e.g. D4RL's")
    dr.add_argument("--ref-max", type=float, help="reference expert return for the metadata (default: the best checkpoint's), e.g. D4RL's")
    dr.add_argument("--overwrite", action="store_true")

    o = sub.add_parser("ope", help="off-policy evaluation of an agent on a dataset, beside its true return")
    o.add_argument("path", metavar="RUN_DIR|CHECKPOINT")
    o.add_argument("--dataset", required=True)
    o.add_argument("--gamma", type=float, default=0.99)
    o.add_argument("--fqe-steps", type=int, default=5_000)
    o.add_argument("--bootstrap", type=int, default=1_000, help="bootstrap resamples for the intervals")
    o.add_argument("--episodes", type=int, default=10, help="episodes for the true return in the env")
    o.add_argument("--seed", type=int, default=0)

    cm = sub.add_parser("compare", help="mean, median, IQM and optimality gap per group with stratified bootstrap intervals; curves and interval plots")
    cm.add_argument("run_dirs", nargs="+")
    cm.add_argument("--group", default="algo,env", help="config/summary keys that define a group (dotted keys work, e.g. learner.tau)")
    cm.add_argument("--out", default="compare", help="folder for results.md, results.csv, curves.png, intervals.png")
    cm.add_argument("--reps", type=int, default=50_000, help="bootstrap resamples (rliable: 50,000)")
    cm.add_argument("--seed", type=int, default=0)

    sw = sub.add_parser("sweep", help="grid or random search over config keys x seeds, one run folder per trial (see examples/sweep_pendulum.toml)")
    sw.add_argument("sweep_file", metavar="SWEEP.toml")
    sw.add_argument("--out", required=True, help="sweep folder: a run folder per trial and sweep.json; rerun the same command to resume")
    sw.add_argument("--workers", type=int, help="trials at once (default: the CPU count locally, the cluster's CPUs on Ray)")
    sw.add_argument("--backend", choices=("local", "ray"), default="local", help="local processes, or Ray Tune (pip install 'dynarl[distributed]'; RAY_ADDRESS joins a cluster)")

    tu = sub.add_parser("tune", help="hyper-parameter search with Optuna (TPE, median pruning); writes a preset for `dynarl train --preset`")
    tu.add_argument("algo", metavar="ALGO")
    tu.add_argument("--env", help="Gymnasium environment id (default: the algorithm's default task)")
    tu.add_argument("--trials", type=int, required=True, help="complete or pruned trials in the study")
    tu.add_argument("--steps", type=int, required=True, help="environment steps per trial")
    tu.add_argument("--space", default="default", metavar="SPACE.toml|default", help="search space file ([space] distributions, [config] fixed values), or the built-in default")
    tu.add_argument("--out", required=True, help="study folder: study.journal, trials/, tune.json, best_preset.toml")
    tu.add_argument("--workers", type=int, default=1, help="processes sharing the study through its journal file")
    tu.add_argument("--seed", type=int, default=0, help="the trials' training seed and the sampler's seed")
    tu.add_argument("--evaluations", type=int, default=5, help="evaluations per trial, reported to the median pruner")

    ls = sub.add_parser("list", help="algorithms, tasks and presets; with ALGO, its config keys and presets")
    ls.add_argument("algo", nargs="?", metavar="ALGO", help="list this algorithm's config keys (type, default, help) and presets")
    return p


def _train(args) -> dict:
    from dynarl.algos import build_config, get_algorithm
    from dynarl.config import parse_overrides

    words = list(args.words)
    algo = words.pop(0) if words and "=" not in words[0] else DEFAULT_ALGO
    overrides = parse_overrides(words)
    for key in ("steps", "seed", "device", "dataset"):
        if getattr(args, key) is not None:
            if key in overrides and overrides[key] != str(getattr(args, key)):
                raise ConfigError(f"--{key} {getattr(args, key)} and {key}={overrides[key]} disagree; give {key} once")
            overrides[key] = str(getattr(args, key))
    cls = get_algorithm(algo)
    if args.dataset is not None and not _takes_dataset(cls):
        from dynarl.algos import ALGORITHMS

        offline = sorted(name for name in ALGORITHMS if _takes_dataset(get_algorithm(name)))
        raise ConfigError(f"{cls.name} learns online from its env and takes no --dataset; the algorithms that learn from a dataset are {', '.join(offline)}")
    env = args.env
    if args.preset:
        from dynarl.run.preset_file import as_cli_strings, read_preset

        preset_env, preset_overrides, _ = read_preset(args.preset, cls.name)
        env = env or overrides.pop("env", None) or preset_env
        overrides = as_cli_strings(preset_overrides) | overrides  # built-in preset < preset file < command line
    cfg = build_config(cls.name, env, overrides, raw=True)
    if args.seeds is not None:
        return _train_seeds(args, cls, cfg)
    out = args.out or f"runs/{cls.name}-{re.sub(r'[^A-Za-z0-9.-]+', '_', cfg.env)}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    from dynarl.config import to_dict
    from dynarl.run.rundir import RunDir

    agent = cls(config=cfg)  # checks the env and its spaces before anything is written
    run = RunDir.create(out, to_dict(cfg))
    _current_run[0] = run
    if not cfg.quiet:
        print(f"dynarl: training {cls.name.upper()} on {cfg.env} for {cfg.steps} steps (seed {cfg.seed}); run folder {run.path}", flush=True)
        _say_preset(cls, cfg)
    agent.learn(run_dir=run)
    return agent.summary() | {"run_dir": str(run.path)}


def _say_preset(cls, cfg) -> None:
    """Name the built-in preset a run started from, so a changed default is never a surprise."""
    from dynarl.presets import get_preset

    preset = get_preset(cls.name, cfg.env, getattr(cfg, "dataset", ""))
    if preset is not None:
        print(f"dynarl: preset from {preset.source}; `dynarl list {cls.name}` shows its keys, key=value overrides win", flush=True)


def _takes_dataset(cls) -> bool:
    from dataclasses import fields

    return any(f.name == "dataset" for f in fields(cls.config_cls))


def _train_seeds(args, cls, cfg) -> dict:
    """``train --seeds``: the seeds as one vectorised agent, a run folder per seed under one seeds folder."""
    from dataclasses import replace

    from dynarl.algos.seeds import SeedVector
    from dynarl.run.seeds import create_seed_runs, learn_seeds, parse_seeds

    if args.seed is not None:
        raise DynarlError("give either --seed N (one run) or --seeds LIST (vectorised seeds), not both")
    seeds = parse_seeds(args.seeds)
    out = Path(args.out or f"runs/{cls.name}-{re.sub(r'[^A-Za-z0-9.-]+', '_', cfg.env)}-seeds{args.seeds.replace(',', '_')}-{time.strftime('%Y%m%d-%H%M%S')}")
    vector = SeedVector.from_configs(cls, [replace(cfg, seed=s) for s in seeds])  # checks the env, spaces and support first
    runs = create_seed_runs(out, vector)
    if not cfg.quiet:
        print(f"dynarl: training {cls.name.upper()} on {cfg.env} for {cfg.steps} steps, seeds {seeds} vectorised in one process; seeds folder {out}", flush=True)
        _say_preset(cls, cfg)
    learn_seeds(vector, runs, resume_hint=str(out))
    return _seeds_summary(vector, out)


def _seeds_summary(vector, out: Path) -> dict:
    import numpy as np

    per_seed = [a.summary() | {"run_dir": str(out / f"s{a.cfg.seed}")} for a in vector.agents]
    returns = [s["eval_return_mean"] for s in per_seed]
    return {"algo": vector.agents[0].name, "env": vector.agents[0].cfg.env, "seeds": [a.cfg.seed for a in vector.agents], "run_dir": str(out),
            "eval_return_mean": float(np.mean(returns)), "eval_return_per_seed": returns, "runs": per_seed}


def _resume_seeds(args) -> dict:
    """``resume SEEDS_DIR``: every seed from its newest good checkpoint, together (they must be at one step)."""
    from dynarl import checkpoint as ckpt
    from dynarl.algos import get_algorithm
    from dynarl.algos.registry import config_from_dict
    from dynarl.algos.seeds import SeedVector
    from dynarl.config import to_dict
    from dynarl.run.seeds import learn_seeds, open_seed_runs

    info, runs = open_seed_runs(args.run_dir)
    cls = get_algorithm(str(info.get("algo")))
    overrides = {} if args.steps is None else {"steps": args.steps}
    have = [bool(run.checkpoints()) for run in runs]
    if all(have):
        vector = SeedVector.from_states(cls, [run.load_latest(expect_algo=cls.name)[2] for run in runs], **overrides)
    elif not any(have):  # stopped before the first checkpoint: seeded runs started again repeat themselves exactly
        vector = SeedVector.from_configs(cls, [config_from_dict(cls.name, run.config(), overrides) for run in runs])
    else:
        missing = ", ".join(str(run.path) for run, h in zip(runs, have, strict=True) if not h)
        raise DynarlError(f"some seeds have no checkpoint yet ({missing}); resume each seed's folder alone with `dynarl resume FOLDER`")
    first = vector.agents[0]
    if first.steps() >= first.cfg.steps:
        raise DynarlError(f"'{args.run_dir}' already finished {first.steps()} of {first.cfg.steps} steps; pass --steps N with a larger total to continue")
    if args.steps is not None:
        for run, agent in zip(runs, vector.agents, strict=True):
            ckpt.atomic_write_bytes(run.path / "config.json", (json.dumps(to_dict(agent.cfg), indent=2) + "\n").encode())
    if not first.cfg.quiet:
        print(f"dynarl: resuming {cls.name.upper()} seeds {[a.cfg.seed for a in vector.agents]} on {first.cfg.env} from step {first.steps()} to {first.cfg.steps}", flush=True)
    learn_seeds(vector, runs, resume_hint=str(args.run_dir))
    return _seeds_summary(vector, Path(args.run_dir))


def _resume(args) -> dict:
    from dynarl import checkpoint as ckpt
    from dynarl.algos import get_algorithm
    from dynarl.algos.registry import config_from_dict
    from dynarl.config import to_dict
    from dynarl.run.logger import read_metrics
    from dynarl.run.rundir import RunDir
    from dynarl.run.seeds import is_seeds_folder

    if is_seeds_folder(args.run_dir):
        return _resume_seeds(args)
    run = RunDir.open(args.run_dir)
    run.lock()  # before anything is read or written: a second `dynarl resume` of the same run stops here
    _current_run[0] = run
    if (run.path / "metrics.csv").exists():
        read_metrics(run.path / "metrics.csv")  # a damaged log is reported before anything is changed
    cls = get_algorithm(run.algo())
    overrides = {} if args.steps is None else {"steps": args.steps}
    if run.checkpoints():
        path, _, state = run.load_latest(expect_algo=cls.name)
        agent = cls.from_state(state, **overrides)
        where = f"from {path.name} (step {agent.steps()})"
    else:  # stopped before its first checkpoint: a seeded run started again repeats itself exactly
        agent = cls(config=config_from_dict(cls.name, run.config(), overrides))
        where = "from step 0 (the run stopped before its first checkpoint)"
    if agent.steps() >= agent.cfg.steps:
        raise DynarlError(f"'{run.path}' already finished {agent.steps()} of {agent.cfg.steps} steps; pass --steps N with a larger total to continue")
    if args.steps is not None:
        ckpt.atomic_write_bytes(run.path / "config.json", (json.dumps(to_dict(agent.cfg), indent=2) + "\n").encode())
    if not agent.cfg.quiet:
        print(f"dynarl: resuming {cls.name.upper()} on {agent.cfg.env} {where} to {agent.cfg.steps}", flush=True)
    agent.learn(run_dir=run)
    return agent.summary() | {"run_dir": str(run.path)}


def _load_agent(path_arg: str):
    """An agent that acts (policy-only: an offline agent needs no dataset) from a run folder's newest good
    checkpoint or a checkpoint file: (agent, checkpoint path)."""
    import dynarl
    from dynarl.run.rundir import RunDir

    path = Path(path_arg)
    if path.is_dir():
        run = RunDir.open(path)
        path, _, state = run.load_latest(expect_algo=run.algo())
        from dynarl.algos import get_algorithm

        return get_algorithm(run.algo()).from_state(state, policy_only=True), path
    return dynarl.load(path, policy_only=True), path


def _eval(args) -> dict:
    import torch

    from dynarl.run.evaluate import evaluate

    if args.episodes <= 0:
        raise DynarlError(f"--episodes {args.episodes} is invalid: must be > 0")
    agent, path = _load_agent(args.path)
    print(f"dynarl: evaluating {agent.name.upper()} on {agent.cfg.env} (step {agent.steps()}) for {args.episodes} episodes", file=sys.stderr, flush=True)

    def report(k: int, ret: float, seconds: float) -> None:
        print(f"  episode {k + 1}/{args.episodes}: return {ret:.1f} ({seconds:.1f} s)", file=sys.stderr, flush=True)

    seed = agent.cfg.seed if args.seed is None else args.seed
    torch.manual_seed(seed)  # the draws of a stochastic policy
    returns = evaluate(agent.eval_env, lambda obs: agent.policy_action(obs, deterministic=not args.stochastic), args.episodes, seed, on_episode=report)
    out = {"algo": agent.name, "env": agent.cfg.env, "checkpoint": str(path), "env_steps": agent.env_steps, "gradient_steps": agent.gradient_steps, "episodes": args.episodes,
           "deterministic": not args.stochastic, "seed": seed, "eval_return_mean": float(returns.mean()), "eval_return_std": float(returns.std())}  # fmt: skip
    if hasattr(agent, "normalized_score"):
        out["normalized_score"] = agent.normalized_score(out["eval_return_mean"])
    return out


def _collect(args) -> dict:
    from dynarl.run.collect import collect

    if args.source == "random":
        if not args.env:
            raise DynarlError("`dynarl collect random` needs --env ENV (the env to act uniformly in)")
        agent = None
    else:
        agent, _ = _load_agent(args.source)
    result = collect(agent, args.out, args.episodes, env_id=args.env, deterministic=args.deterministic, epsilon=args.epsilon, seed=args.seed, ref_min_score=args.ref_min, ref_max_score=args.ref_max, overwrite=args.overwrite)
    return result.as_dict()


def _dataset(args):
    import numpy as np

    from dynarl.data import datasets

    if args.dataset_command == "list":
        ids = datasets.local_dataset_ids()
        print(f"datasets under {datasets.dataset_root()}:" if ids else f"no datasets under {datasets.dataset_root()} (set MINARI_DATASETS_PATH, or make some with `dynarl collect` / `dynarl dataset recipe`)")
        for dataset_id in ids:
            print(f"  {dataset_id}")
        return None
    if args.dataset_command == "info":
        ep = datasets.load_episodes(args.id)
        returns = ep.episode_returns() if ep.rewards is not None else np.zeros(0)
        scores = ep.normalized_score(returns) if len(returns) else None
        return {
            "id": args.id,
            "env": ep.env_id,
            "episodes": len(ep.episode_lengths),
            "transitions": len(ep),
            "observation_space": str(ep.observation_space),
            "action_space": str(ep.action_space),
            "terminations": int(ep.terminations.sum()),
            "truncations": int(ep.truncations.sum()),
            "return_mean": float(returns.mean()) if len(returns) else None,
            "normalized_score": None if scores is None else float(np.mean(scores)),
            "ref_min_score": ep.ref_min_score,
            "ref_max_score": ep.ref_max_score,
            "behavior_log_prob": ep.behavior_log_prob is not None,
            "description": ep.metadata.get("description"),
        }
    from dynarl.run.recipe import make_levels

    levels = tuple(lv.strip() for lv in args.levels.split(",") if lv.strip())
    return make_levels(args.env, args.prefix, algo=args.algo, steps=args.steps, episodes=args.episodes, checkpoints=args.checkpoints, medium_fraction=args.medium_fraction, seed=args.seed, work_dir=args.work_dir, levels=levels, ref_min_score=args.ref_min, ref_max_score=args.ref_max, overwrite=args.overwrite)


def _ope(args) -> dict:
    from dynarl.run.ope import evaluate_agent_off_policy

    agent, path = _load_agent(args.path)
    return evaluate_agent_off_policy(agent, args.dataset, gamma=args.gamma, fqe_steps=args.fqe_steps, n_boot=args.bootstrap, episodes=args.episodes, seed=args.seed) | {"checkpoint": str(path)}


def _list(args) -> None:
    from dynarl.algos import ALGORITHMS, get_algorithm
    from dynarl.presets import all_presets

    if args.algo is not None:
        _list_algorithm(get_algorithm(args.algo), all_presets())
        return
    from dynarl.envs import registered_tasks

    print("algorithms:")
    for name in sorted(ALGORITHMS):
        doc = (get_algorithm(name).__doc__ or "").strip().splitlines()
        print(f"  {name:9s} {doc[0] if doc else ''}")
    print("tasks with known reward and termination functions:")
    for task in registered_tasks():
        print(f"  {task}")
    print("presets (algorithm, task: source):")
    for (algo, env), preset in sorted(all_presets().items()):
        print(f"  {algo:5s} {env:27s} {preset.source}")
        for level, variant in preset.levels.items():
            print(f"  {'':5s} {'  ' + level + ' data':27s} {variant.source}")


def _list_algorithm(cls, presets: dict) -> None:
    """Every config key of ``cls`` (key = default, type, help), run keys first, then one group per nested section, then its presets."""
    from dynarl.config import describe

    rows = describe(cls.config_cls())
    groups: dict[str, list] = {"run": [r for r in rows if "." not in r[0]]}
    for row in rows:
        if "." in row[0]:
            groups.setdefault(row[0].split(".")[0], []).append(row)
    doc = (cls.__doc__ or "").strip().splitlines()
    key_w = max(len(r[0]) for r in rows)
    value_w = min(max(len(r[2]) for r in rows), 24)  # a long default (a list) pushes only its own line
    type_w = max(len(r[1]) for r in rows)
    print(f"{cls.name}: {doc[0] if doc else ''}")
    print(f"config keys (set with `dynarl train {cls.name} key=value`):")
    for group, members in groups.items():
        print(f"{group}:")
        for key, typ, value, text in members:
            print(f"  {key:{key_w}s} = {value:{value_w}s}  {typ:{type_w}s}  {text}".rstrip())
    mine = sorted(((env, preset) for (algo, env), preset in presets.items() if algo == cls.name), key=lambda item: item[0])
    if not mine:
        print(f"presets: none for {cls.name} (the defaults above apply to every task)")
        return
    print("presets (task: source; the keys they set; a dataset of another level picks that level's):")
    for env, preset in mine:
        for name, variant in [(env, preset)] + [(f"{env}, {level} data", v) for level, v in preset.levels.items()]:
            print(f"  {name}: {variant.source}")
            print("      " + " ".join(f"{k}={json.dumps(list(v) if isinstance(v, tuple) else v, separators=(',', ':'))}" for k, v in variant.overrides.items()))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after the options; anything else unknown is an error
    unknown = [w for w in extra if w.startswith("-") or "=" not in w or args.command != "train"]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.words = list(args.words) + extra
    _current_run[0] = None
    try:
        return command_status(lambda: _command(args))
    except KeyboardInterrupt:
        if _current_run[0] is not None:
            print(f"dynarl: interrupted; continue with `dynarl resume {_current_run[0].path}` from the last checkpoint", file=sys.stderr)
        else:
            print("dynarl: interrupted before a run folder was written; nothing to resume", file=sys.stderr)
        return 130
    finally:
        if _current_run[0] is not None:
            _current_run[0].unlock()


def _command(args) -> int | None:
    """The body of ``main``: run the parsed command (errors are reported by ``command_status``)."""
    if args.command in ("plot", "compare"):  # a folder of vectorised seeds stands for its run folders
        from dynarl.run.seeds import expand_run_dirs

        args.run_dirs = expand_run_dirs(args.run_dirs)
    if args.command == "train":
        print(json.dumps(_train(args)))
    elif args.command == "resume":
        print(json.dumps(_resume(args)))
    elif args.command == "eval":
        print(json.dumps(_eval(args)))
    elif args.command == "plot":
        from dynarl.run.plot import check_output, plot_model_diagnostics, plot_runs

        if args.group:
            from dynarl.run.stats import plot_grouped_curves

            print(plot_grouped_curves(args.run_dirs, tuple(k.strip() for k in args.group.split(",") if k.strip()), check_output(args.out)))
        else:
            print(plot_runs(args.run_dirs, check_output(args.out)))
            for path in plot_model_diagnostics(args.run_dirs, args.out):
                print(path)
    elif args.command == "list":
        _list(args)
    elif args.command == "collect":
        print(json.dumps(_collect(args)))
    elif args.command == "dataset":
        result = _dataset(args)
        if result is not None:
            print(json.dumps(result))
    elif args.command == "ope":
        print(json.dumps(_ope(args)))
    elif args.command == "compare":
        from dynarl.run.stats import compare

        if args.reps <= 0:
            raise DynarlError(f"--reps {args.reps} is invalid: must be > 0")
        out = compare(args.run_dirs, group=tuple(k.strip() for k in args.group.split(",") if k.strip()), out_dir=args.out, reps=args.reps, seed=args.seed)
        print(Path(out["files"]["results.md"]).read_text(), end="")
    elif args.command == "sweep":
        from dynarl.run.sweep import run_sweep

        result = run_sweep(args.sweep_file, args.out, workers=args.workers, backend=args.backend)
        print(json.dumps(result))
        if result["failed"]:
            return 1
    elif args.command == "tune":
        from dynarl.run.tune import tune

        print(json.dumps(tune(args.algo, args.env, args.trials, args.steps, args.space, args.out, workers=args.workers, seed=args.seed, evaluations=args.evaluations)))


if __name__ == "__main__":
    sys.exit(main())
