"""The ``dynarl`` command. The contract (users and tooling rely on it):

    dynarl train [ALGO] --env ENV [--steps N] [--seed S] [--out DIR] [--device D] [key=value ...]
    dynarl resume RUN_DIR [--steps N]
    dynarl eval RUN_DIR|CHECKPOINT [--episodes N]
    dynarl plot RUN_DIR... [--out FILE.png]
    dynarl list [ALGO]

Exit code 0 on success; on a user error a short message (no traceback) and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from dynarl.errors import DynarlError, RunInterrupted

_current_run: list = [None]  # the RunDir being written: named in the interrupt message, unlocked at exit
DEFAULT_ALGO = "pets"  # the README's first command: PETS on the continuous cart-pole


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dynarl", description="Reinforcement learning built around learned world models.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an agent and write a run folder")
    t.add_argument("words", nargs="*", metavar="[ALGO] [key=value ...]", help=f"algorithm (default {DEFAULT_ALGO}) and config overrides")
    t.add_argument("--env", help="Gymnasium environment id (default: the algorithm's default task)")
    t.add_argument("--steps", type=int, help="total environment steps")
    t.add_argument("--seed", type=int)
    t.add_argument("--out", help="run folder to create (default runs/ALGO-ENV-sSEED-TIME)")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"))

    r = sub.add_parser("resume", help="continue a run from its last good checkpoint")
    r.add_argument("run_dir")
    r.add_argument("--steps", type=int, help="new total environment steps (default: the run's own)")

    e = sub.add_parser("eval", help="evaluate a run's latest checkpoint (or a checkpoint file)")
    e.add_argument("path")
    e.add_argument("--episodes", type=int, default=10)

    pl = sub.add_parser("plot", help="plot learning curves of one or more runs")
    pl.add_argument("run_dirs", nargs="+")
    pl.add_argument("--out", default="learning_curves.png")

    ls = sub.add_parser("list", help="algorithms, tasks and presets; with ALGO, its config keys and presets")
    ls.add_argument("algo", nargs="?", metavar="ALGO", help="list this algorithm's config keys (type, default, help) and presets")
    return p


def _train(args) -> dict:
    from dynarl.algos import build_config, get_algorithm
    from dynarl.config import parse_overrides

    words = list(args.words)
    algo = words.pop(0) if words and "=" not in words[0] else DEFAULT_ALGO
    overrides = parse_overrides(words)
    for key in ("steps", "seed", "device"):
        if getattr(args, key) is not None:
            overrides[key] = str(getattr(args, key))
    cls = get_algorithm(algo)
    cfg = build_config(cls.name, args.env, overrides, raw=True)
    out = args.out or f"runs/{cls.name}-{re.sub(r'[^A-Za-z0-9.-]+', '_', cfg.env)}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    from dynarl.config import to_dict
    from dynarl.run.rundir import RunDir

    agent = cls(config=cfg)  # checks the env and its spaces before anything is written
    run = RunDir.create(out, to_dict(cfg))
    _current_run[0] = run
    if not cfg.quiet:
        print(f"dynarl: training {cls.name.upper()} on {cfg.env} for {cfg.steps} steps (seed {cfg.seed}); run folder {run.path}", flush=True)
    agent.learn(run_dir=run)
    return agent.summary() | {"run_dir": str(run.path)}


def _resume(args) -> dict:
    from dynarl import checkpoint as ckpt
    from dynarl.algos import get_algorithm
    from dynarl.algos.registry import config_from_dict
    from dynarl.config import to_dict
    from dynarl.run.logger import read_metrics
    from dynarl.run.rundir import RunDir

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
        where = f"from {path.name} (step {agent.env_steps})"
    else:  # stopped before its first checkpoint: a seeded run started again repeats itself exactly
        agent = cls(config=config_from_dict(cls.name, run.config(), overrides))
        where = "from step 0 (the run stopped before its first checkpoint)"
    if agent.env_steps >= agent.cfg.steps:
        raise DynarlError(f"'{run.path}' already finished {agent.env_steps} of {agent.cfg.steps} steps; pass --steps N with a larger total to continue")
    if args.steps is not None:
        ckpt.atomic_write_bytes(run.path / "config.json", (json.dumps(to_dict(agent.cfg), indent=2) + "\n").encode())
    if not agent.cfg.quiet:
        print(f"dynarl: resuming {cls.name.upper()} on {agent.cfg.env} {where} to {agent.cfg.steps}", flush=True)
    agent.learn(run_dir=run)
    return agent.summary() | {"run_dir": str(run.path)}


def _eval(args) -> dict:
    import dynarl
    from dynarl.run.evaluate import evaluate
    from dynarl.run.rundir import RunDir

    if args.episodes <= 0:
        raise DynarlError(f"--episodes {args.episodes} is invalid: must be > 0")
    path = Path(args.path)
    if path.is_dir():
        run = RunDir.open(path)
        path, _, state = run.load_latest(expect_algo=run.algo())
        from dynarl.algos import get_algorithm

        agent = get_algorithm(run.algo()).from_state(state)
    else:
        agent = dynarl.load(path)
    print(f"dynarl: evaluating {agent.name.upper()} on {agent.cfg.env} (step {agent.env_steps}) for {args.episodes} episodes", file=sys.stderr, flush=True)

    def report(k: int, ret: float, seconds: float) -> None:
        print(f"  episode {k + 1}/{args.episodes}: return {ret:.1f} ({seconds:.1f} s)", file=sys.stderr, flush=True)

    returns = evaluate(agent.eval_env, lambda obs: agent.policy_action(obs, deterministic=True), args.episodes, agent.cfg.seed, on_episode=report)
    return {"algo": agent.name, "env": agent.cfg.env, "checkpoint": str(path), "env_steps": agent.env_steps, "episodes": args.episodes, "eval_return_mean": float(returns.mean()), "eval_return_std": float(returns.std())}


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
    print("presets (task: source; the keys they set):")
    for env, preset in mine:
        print(f"  {env}: {preset.source}")
        print("      " + " ".join(f"{k}={json.dumps(list(v) if isinstance(v, tuple) else v, separators=(',', ':'))}" for k, v in preset.overrides.items()))


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
        if args.command == "train":
            print(json.dumps(_train(args)))
        elif args.command == "resume":
            print(json.dumps(_resume(args)))
        elif args.command == "eval":
            print(json.dumps(_eval(args)))
        elif args.command == "plot":
            from dynarl.run.plot import check_output, plot_model_diagnostics, plot_runs

            print(plot_runs(args.run_dirs, check_output(args.out)))
            for path in plot_model_diagnostics(args.run_dirs, args.out):
                print(path)
        elif args.command == "list":
            _list(args)
    except RunInterrupted as e:
        print(f"dynarl: {e}", file=sys.stderr)
        return e.exit_code
    except DynarlError as e:
        print(f"dynarl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if _current_run[0] is not None:
            print(f"dynarl: interrupted; continue with `dynarl resume {_current_run[0].path}` from the last checkpoint", file=sys.stderr)
        else:
            print("dynarl: interrupted before a run folder was written; nothing to resume", file=sys.stderr)
        return 130
    finally:
        if _current_run[0] is not None:
            _current_run[0].unlock()
    return 0


if __name__ == "__main__":
    sys.exit(main())
