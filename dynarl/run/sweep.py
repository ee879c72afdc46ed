"""``dynarl sweep SWEEP.toml --out DIR``: a grid or random search over config keys x seeds, one ordinary run
folder per trial, in local processes (default) or on Ray Tune (:mod:`dynarl.run.sweep_ray`).

The sweep file::

    algo = "sac"
    env = "Pendulum-v1"
    steps = 5000
    seeds = [0, 1, 2]
    samples = 8            # random search: draws from [random], seeded by sample_seed (default 0)
    [config]               # fixed overrides for every trial
    "learner.hidden_sizes" = [64, 64]
    [grid]                 # every combination of these values ...
    "learner.actor_lr" = [1e-3, 3e-4]
    [random]               # ... crossed with `samples` draws of these (forms: dynarl.run.space)
    "learner.tau" = { loguniform = [0.001, 0.05] }

Trials are (grid point x random draw) x seed; each is named from its swept values and seed
(``actor_lr=0.001,tau=0.0123-s0``) and trained in ``DIR/<name>``. ``DIR/sweep.json`` lists every trial with
its status (pending, running, finished, failed, interrupted) and final evaluation return.

Running the same sweep again skips finished trials and resumes the others from their last checkpoint; a
trial folder whose config differs from the trial's (a different sweep, or a hand-made run) is refused
before anything runs, and nothing is overwritten. Adding seeds or samples to a sweep extends it.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dynarl import checkpoint as ckpt
from dynarl.algos.registry import build_config, config_from_dict, get_algorithm
from dynarl.config import flat_keys, to_dict
from dynarl.errors import ConfigError, RunInterrupted, command_status
from dynarl.run.interrupt import StopRequest
from dynarl.run.rundir import RunDir
from dynarl.run.space import check_values, flatten, parse_distributions, read_table

RESERVED = ("algo", "env", "steps", "seeds", "samples", "sample_seed", "config", "grid", "random")
NOT_SWEPT = ("algo", "seed", "steps", "env")  # set by the sweep's own fields, never per trial
STATUS_FILE = "sweep.json"


@dataclass(frozen=True)
class Trial:
    name: str
    seed: int
    overrides: dict  # the swept keys' values of this trial (dotted keys)

    def as_dict(self) -> dict:
        return {"name": self.name, "seed": self.seed, "overrides": self.overrides}


@dataclass
class Sweep:
    algo: str
    env: str | None
    steps: int | None
    seeds: tuple[int, ...]
    fixed: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    random: dict = field(default_factory=dict)  # key -> Distribution
    samples: int = 0
    sample_seed: int = 0
    source: str = "sweep"

    # --- reading and checking ------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> "Sweep":
        return cls.from_dict(read_table(path, "sweep file"), where=str(path))

    @classmethod
    def from_dict(cls, d: dict, where: str = "sweep") -> "Sweep":
        if not isinstance(d.get("algo"), str):
            raise ConfigError(f'{where}: needs algo = "NAME" (e.g. algo = "sac")')
        algo = get_algorithm(d["algo"]).name
        env = d.get("env")
        if env is not None and not isinstance(env, str):
            raise ConfigError(f"{where}: env = {env!r} must be a string (a Gymnasium id)")
        steps = d.get("steps")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0):
            raise ConfigError(f"{where}: steps = {steps!r} must be an integer > 0")
        seeds = d.get("seeds", [0])
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
            raise ConfigError(f"{where}: seeds = {seeds!r} must be a non-empty list of integers >= 0, e.g. seeds = [0, 1, 2]")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"{where}: seeds = {seeds!r} repeats a seed")
        for name in ("grid", "random", "config"):
            if name in d and not isinstance(d[name], dict):
                raise ConfigError(f"{where}: {name} must be a table ([{name}])")
        # top-level keys other than the sweep's own are fixed config overrides, like those in [config]
        top = {k: v for k, v in d.items() if k not in RESERVED}
        for k in top:
            near = difflib.get_close_matches(k, RESERVED, n=1, cutoff=0.75)
            if near and k not in flat_keys(get_algorithm(algo).config_cls()):
                raise ConfigError(f"{where}: unknown key '{k}'. Did you mean: {near[0]}? (a sweep file's own keys: {', '.join(RESERVED)}; any other key is a config override)")
        fixed = flatten({**top, **d.get("config", {})}, algo, f"{where} [config]")
        grid = flatten(d.get("grid", {}), algo, f"{where} [grid]")
        random = parse_distributions(d.get("random", {}), algo, f"{where} [random]")
        for table, keys in (("config", fixed), ("grid", grid), ("random", random)):
            bad = [k for k in keys if k in NOT_SWEPT]
            if bad:
                raise ConfigError(f"{where} [{table}]: {bad[0]} is set by the sweep itself; use the top-level algo / env / steps / seeds")
        for key, values in grid.items():
            if not isinstance(values, list):
                raise ConfigError(f"{where} [grid]: {key} = {json.dumps(values)} must be a list of values, e.g. {key} = [{json.dumps(values)}]")
            if not values:
                raise ConfigError(f"{where} [grid]: {key} = [] has no values: the search space is empty")
            if len({json.dumps(v) for v in values}) < len(values):
                raise ConfigError(f"{where} [grid]: {key} = {json.dumps(values)} repeats a value")
        both = sorted(set(grid) & set(random))
        if both:
            raise ConfigError(f"{where}: {both[0]} is in both [grid] and [random]; keep it in one")
        samples = d.get("samples", 0)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
            raise ConfigError(f"{where}: samples = {samples!r} must be an integer >= 0")
        if random and samples == 0:
            raise ConfigError(f"{where}: [random] needs samples = N (how many draws) > 0: the search space is empty")
        if samples and not random:
            raise ConfigError(f"{where}: samples = {samples} needs a [random] table of distributions to draw from")
        if not grid and not random:
            raise ConfigError(f"{where}: the search space is empty: give a [grid] table (key = [values]) or a [random] table with samples = N")
        sample_seed = d.get("sample_seed", 0)
        if isinstance(sample_seed, bool) or not isinstance(sample_seed, int) or sample_seed < 0:
            raise ConfigError(f"{where}: sample_seed = {sample_seed!r} must be an integer >= 0")
        sweep = cls(algo, env, steps, tuple(seeds), fixed, grid, random, samples, sample_seed, where)
        sweep.check()
        return sweep

    def base_overrides(self, seed: int) -> dict:
        base = {"quiet": True, **self.fixed, "seed": seed}  # a sweep's trials print nothing unless its file says so
        if self.steps is not None:
            base["steps"] = self.steps
        return base

    def check(self) -> None:
        """Every listed value and distribution bound makes a valid config (named errors, before any trial)."""
        base = self.base_overrides(self.seeds[0])
        try:
            build_config(self.algo, self.env, base)
        except ConfigError as e:
            raise ConfigError(f"{self.source}: {e}") from None
        check_values(self.algo, self.env, base, {**self.grid, **{k: list(d.extremes()) for k, d in self.random.items()}}, self.source)

    # --- the trials ---------------------------------------------------------------------------------------

    def points(self) -> list[dict]:
        """The swept values of each configuration: the grid's product, crossed with ``samples`` random draws.
        Draw i uses its own generator seeded (sample_seed, i), so adding samples keeps the earlier draws; a draw
        that repeats an earlier one is dropped."""
        keys = list(self.grid)
        grid_points = [dict(zip(keys, combo)) for combo in itertools.product(*(self.grid[k] for k in keys))] if keys else [{}]
        if not self.random:
            return grid_points
        draws = []
        for i in range(self.samples):
            rng = np.random.default_rng([self.sample_seed, i])
            draws.append({k: d.sample(rng) for k, d in sorted(self.random.items())})
        points, seen = [], set()
        for r in draws:  # a draw equal to an earlier one (likely when [random] holds only choices) is run once
            for g in grid_points:
                key = json.dumps({**g, **r}, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    points.append({**g, **r})
        return points

    def trials(self) -> list[Trial]:
        swept = list(self.grid) + sorted(self.random)
        short = {k: k.split(".")[-1] for k in swept}
        if len(set(short.values())) < len(short):
            short = {k: k for k in swept}
        out, names = [], set()
        for point in self.points():
            stem = ",".join(f"{short[k]}={_fmt(v)}" for k, v in point.items())
            stem = re.sub(r"[^A-Za-z0-9.=,+_-]+", "_", stem) or "default"
            digest = hashlib.sha1(json.dumps(point, sort_keys=True).encode()).hexdigest()[:8]
            if len(stem) > 120:
                stem = f"{stem[:100]}-{digest}"
            for seed in self.seeds:
                name = f"{stem}-s{seed}"
                if name in names:  # two random draws that print alike: the exact values tell them apart
                    name = f"{stem}-{digest}-s{seed}"
                names.add(name)
                out.append(Trial(name, seed, point))
        return out

    def config(self, trial: Trial):
        return build_config(self.algo, self.env, {**self.base_overrides(trial.seed), **trial.overrides})

    def identity(self) -> dict:
        """What makes two sweep files the same sweep (seeds and samples may grow)."""
        return {"algo": self.algo, "env": self.env, "steps": self.steps, "config": self.fixed, "grid": self.grid, "random": {k: d.as_json() for k, d in self.random.items()}, "sample_seed": self.sample_seed}


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "x".join(_fmt(x) for x in v)
    return str(v)


# --- one trial: create its run folder, or continue the one there ------------------------------------------


def trial_state(run_dir: Path, config: dict) -> str:
    """ "new", "partial" (started, not finished) or "finished"; a folder of another config raises ConfigError."""
    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return "new"
    if not (run_dir / "config.json").is_file():
        raise ConfigError(f"'{run_dir}' exists and is not a dynarl run folder; choose a fresh --out so nothing of yours is overwritten")
    theirs = RunDir.open(run_dir).config()
    if theirs != config:
        diff = sorted(_diff(theirs, config))
        raise ConfigError(f"'{run_dir}' holds a run of another sweep or config ({', '.join(diff[:3])} differ); choose a fresh --out so it is not overwritten")
    return "finished" if (run_dir / "summary.json").is_file() else "partial"


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = set(a) | set(b)
    out = []
    for k in keys:
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _diff(a[k], b[k], prefix + k + ".")
        elif a.get(k) != b.get(k):
            out.append(f"{prefix}{k}: {json.dumps(a.get(k))} vs {json.dumps(b.get(k))}")
    return out


def run_trial(algo: str, env: str | None, overrides: dict, run_dir: str | Path, callbacks=None) -> dict:
    """Train one trial in ``run_dir``: start it, continue it from its newest good checkpoint, or (finished)
    return its summary at once. The same resume path as ``dynarl resume``."""
    cls = get_algorithm(algo)
    cfg = build_config(cls.name, env, overrides)
    run_dir = Path(run_dir)
    state = trial_state(run_dir, to_dict(cfg))
    if state == "finished":
        return json.loads((run_dir / "summary.json").read_text()) | {"run_dir": str(run_dir), "skipped": True}
    if state == "new":
        agent = cls(config=cfg)  # checks the env before the folder is made
        run = RunDir.create(run_dir, to_dict(cfg))
    else:
        run = RunDir.open(run_dir)
        run.lock()
        if run.checkpoints():
            _, _, saved = run.load_latest(expect_algo=cls.name)
            agent = cls.from_state(saved)
        else:  # stopped before its first checkpoint: a seeded run started again repeats itself
            agent = cls(config=config_from_dict(cls.name, run.config()))
    try:
        agent.learn(run_dir=run, callbacks=callbacks)
    finally:
        run.unlock()
        agent.close()
    return agent.summary() | {"run_dir": str(run_dir)}


# --- the sweep: plan, status file, local backend ----------------------------------------------------------


def _write_status(out: Path, sweep: Sweep, rows: list[dict], backend: str) -> None:
    finished = [r for r in rows if r["status"] == "finished" and r.get("eval_return_mean") is not None]
    best = max(finished, key=lambda r: r["eval_return_mean"], default=None)
    doc = {"sweep": sweep.identity(), "seeds": list(sweep.seeds), "samples": sweep.samples, "backend": backend, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "best": best["name"] if best else None, "trials": rows}
    ckpt.atomic_write_bytes(out / STATUS_FILE, (json.dumps(doc, indent=2) + "\n").encode())


def _summary_row(out: Path, trial: Trial, status: str, error: str | None = None) -> dict:
    row = {**trial.as_dict(), "run_dir": trial.name, "status": status, "eval_return_mean": None, "env_steps": None}
    summary = out / trial.name / "summary.json"
    if status == "finished" and summary.is_file():
        s = json.loads(summary.read_text())
        row.update(eval_return_mean=s.get("eval_return_mean"), env_steps=s.get("env_steps"), wall_seconds=s.get("wall_seconds"))
    if error:
        row["error"] = error
    return row


def plan(sweep: Sweep, out: str | Path) -> tuple[Path, list[Trial], dict[str, str]]:
    """The trials and the state of each one's folder; refuses (ConfigError) before anything is written when
    ``out`` holds another sweep or a trial folder of another config."""
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out '{out}' is a file, not a folder")
    status_file = out / STATUS_FILE
    if status_file.is_file():
        try:
            theirs = json.loads(status_file.read_text()).get("sweep")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise ConfigError(f"'{status_file}' is damaged; move it away or choose a fresh --out") from None
        if theirs != json.loads(json.dumps(sweep.identity())):
            diff = sorted(_diff(theirs or {}, json.loads(json.dumps(sweep.identity()))))
            raise ConfigError(f"'{out}' holds another sweep ({', '.join(diff[:2])} differ); choose a fresh --out so it is not overwritten")
    trials = sweep.trials()
    states = {t.name: trial_state(out / t.name, to_dict(sweep.config(t))) for t in trials}
    return out, trials, states


def run_sweep(sweep: Sweep | str | Path, out: str | Path, workers: int | None = None, backend: str = "local", log=None) -> dict:
    """Run every trial not yet finished; return ``{"out", "trials", "finished", "failed", "best", ...}``.

    ``workers`` trials run at once (default: the CPU count), each in its own process with one torch thread
    (``backend="local"``), or as Ray Tune trials of 1 CPU each (``backend="ray"``: ``ray.init()`` joins the
    cluster at ``RAY_ADDRESS`` or starts a local one). SIGINT/SIGTERM stop the running trials at a
    checkpoint; running the same sweep again continues them.
    """
    if not isinstance(sweep, Sweep):
        sweep = Sweep.load(sweep)
    if backend not in ("local", "ray"):
        raise ConfigError(f"--backend {backend!r} is invalid: must be one of 'local', 'ray'")
    if workers is not None and int(workers) <= 0:
        raise ConfigError(f"--workers {workers} is invalid: must be > 0")
    if backend == "ray":
        from dynarl.run.sweep_ray import require_ray

        require_ray()  # before anything is written
    out, trials, states = plan(sweep, out)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out.mkdir(parents=True, exist_ok=True)
    rows = {t.name: _summary_row(out, t, "finished" if states[t.name] == "finished" else ("interrupted" if states[t.name] == "partial" else "pending")) for t in trials}
    todo = [t for t in trials if states[t.name] != "finished"]
    log(f"dynarl: sweep of {len(trials)} trials ({sweep.algo} on {sweep.env or 'its default env'}): {len(trials) - len(todo)} finished, {len(todo)} to run; {out / STATUS_FILE}")

    def update(name: str, status: str, error: str | None = None) -> None:
        trial = next(t for t in trials if t.name == name)
        rows[name] = _summary_row(out, trial, status, error)
        _write_status(out, sweep, list(rows.values()), backend)
        if status != "running":
            ret = rows[name]["eval_return_mean"]
            log(f"  {name}: {status}" + (f", final eval return {ret:.2f}" if ret is not None else "") + (f" ({error})" if error else ""))

    _write_status(out, sweep, list(rows.values()), backend)
    if backend == "ray":
        from dynarl.run.sweep_ray import run_on_ray

        run_on_ray(sweep, out, todo, update, workers)  # default: as many trials at once as the cluster has CPUs
    else:
        _run_local(sweep, out, todo, int(workers or os.cpu_count() or 1), update)
    result_rows = list(rows.values())
    finished = [r for r in result_rows if r["status"] == "finished"]
    best = max((r for r in finished if r["eval_return_mean"] is not None), key=lambda r: r["eval_return_mean"], default=None)
    return {
        "out": str(out),
        "trials": len(result_rows),
        "finished": len(finished),
        "failed": sum(r["status"] == "failed" for r in result_rows),
        "interrupted": sum(r["status"] == "interrupted" for r in result_rows),
        "best": best,
        "sweep_json": str(out / STATUS_FILE),
    }


def job(sweep: Sweep, out: Path, trial: Trial) -> dict:
    """What a worker needs to run one trial (JSON-able)."""
    return {"algo": sweep.algo, "env": sweep.env, "overrides": {**sweep.base_overrides(trial.seed), **trial.overrides}, "run_dir": str(out / trial.name)}


def _run_local(sweep: Sweep, out: Path, todo: list[Trial], workers: int, update) -> None:
    """A process per trial, ``workers`` at a time. Children run in their own session so a terminal's Ctrl-C
    reaches only this process, which forwards one SIGTERM to each: every child checkpoints and stops."""
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    queue, running = list(todo), {}
    interrupted_by = None
    with StopRequest() as stop:
        try:
            while queue or running:
                if stop.signum and interrupted_by is None:
                    interrupted_by = stop.signum
                    queue.clear()
                    for proc in running:
                        proc.terminate()
                while queue and len(running) < workers and not stop.signum:
                    trial = queue.pop(0)
                    log_file = open(logs / f"{trial.name}.log", "ab")
                    cmd = [sys.executable, "-m", "dynarl.run.sweep", json.dumps(job(sweep, out, trial))]
                    running[subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)] = (trial, log_file)
                    update(trial.name, "running")
                for proc in [p for p in running if p.poll() is not None]:
                    trial, log_file = running.pop(proc)
                    log_file.close()
                    if proc.returncode == 0:
                        update(trial.name, "finished")
                    elif proc.returncode in (130, 143) or proc.returncode < 0:
                        update(trial.name, "interrupted", f"stopped by a signal (exit {proc.returncode}); run the sweep again to continue it")
                    else:
                        update(trial.name, "failed", _last_line(logs / f"{trial.name}.log") + f" (log: logs/{trial.name}.log)")
                time.sleep(0.1)
        except KeyboardInterrupt:  # a second signal: stop the children at once
            for proc in running:
                proc.kill()
            raise
    if interrupted_by:
        raise RunInterrupted(f"sweep stopped by a signal; running trials were checkpointed. Continue with the same `dynarl sweep` command (status in {out / STATUS_FILE})", 128 + interrupted_by)


def _last_line(path: Path) -> str:
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def _main(argv: list[str]) -> int:
    """``python -m dynarl.run.sweep JOB_JSON``: one trial, in its own process (the local backend's worker)."""
    spec = json.loads(argv[0])
    return command_status(lambda: print(json.dumps(run_trial(spec["algo"], spec["env"], spec["overrides"], spec["run_dir"]))))


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
