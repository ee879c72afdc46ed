"""``dynarl tune ALGO --env ENV --trials N --steps S --space SPACE.toml|default --out DIR``: hyper-parameter
search with Optuna, as RL Baselines3 Zoo does it (``rl_zoo3/exp_manager.py``): a TPE sampler, a median
pruner fed by the evaluations (reported through a dynarl callback, ``TrialEvalCallback`` in the Zoo), and a
journal file (``DIR/study.journal``) that several processes share, so ``--workers W`` processes (or several
``dynarl tune`` commands on the same DIR) work on one study.

The space file::

    [space]                                             # forms: dynarl.run.space
    "learner.actor_lr" = { loguniform = [1e-4, 1e-2] }
    "learner.gamma" = { choice = [0.95, 0.98, 0.99] }
    [config]                                            # fixed for every trial
    "learner.hidden_sizes" = [64, 64]

Each trial trains ``S`` steps in ``DIR/trials/trial-NNNN`` (an ordinary run folder) and is scored by its
last evaluation's mean return; ``evaluations`` evaluations are spread over the budget for the pruner.
The study stops at ``N`` complete or pruned trials, so running the command again continues an interrupted
study (a failed or interrupted trial is replaced by a new one). The best trial's values (and the fixed [config]) are written as a preset file,
``DIR/best_preset.toml``, that ``dynarl train --preset`` reads.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from dynarl.algos.registry import build_config, get_algorithm
from dynarl.config import RunConfig, flat_keys, to_dict
from dynarl.errors import ConfigError, DynarlError, RunInterrupted, TrainingDivergedError, command_status
from dynarl.run.callbacks import Callback
from dynarl.run.preset_file import write_preset
from dynarl.run.rundir import RunDir
from dynarl.run.space import Distribution, check_values, flatten, parse_distributions, read_table

OPTUNA_REQUIREMENT = "optuna>=3.1"  # JournalStorage with a file backend (JournalFileStorage < 4.0, JournalFileBackend >= 4.0)

# The default space: RL Baselines3 Zoo's hyperparams_opt.py ranges (gamma, tau and GAE lambda choices), with
# learning rates narrowed to 1e-5..1e-2 (the Zoo goes to 1); only the keys the algorithm has are searched.
_LR = {"loguniform": [1e-5, 1e-2]}
DEFAULT_SPACE = {
    "learner.lr": _LR,
    "learner.actor_lr": _LR,
    "learner.critic_lr": _LR,
    "trainer.lr": {"loguniform": [1e-4, 3e-3]},
    "learner.gamma": {"choice": [0.9, 0.95, 0.98, 0.99, 0.995, 0.999]},
    "learner.tau": {"choice": [0.001, 0.005, 0.01, 0.02, 0.05, 0.08]},
    "learner.gae_lambda": {"choice": [0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0]},
}
RUN_KEYS = {f for f in RunConfig.__dataclass_fields__}  # budget, logging and seeding: not part of a preset


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError(f"dynarl tune needs Optuna, which is not installed: pip install 'dynarl[tune]' ({OPTUNA_REQUIREMENT})") from None
    return optuna


def journal_storage(path: Path):
    """A journal-file storage that several processes can share (the class moved in Optuna 4.0)."""
    optuna = require_optuna()
    from optuna.storages import JournalStorage

    try:
        from optuna.storages.journal import JournalFileBackend as Backend
    except ImportError:  # Optuna 3.x
        from optuna.storages import JournalFileStorage as Backend
    return JournalStorage(Backend(str(path))), optuna


def load_space(space: str | Path, algo: str) -> tuple[dict[str, Distribution], dict]:
    """``(distributions, fixed overrides)`` from a space file or ``"default"``."""
    if str(space) == "default":
        keys = set(flat_keys(get_algorithm(algo).config_cls()))
        table = {k: v for k, v in DEFAULT_SPACE.items() if k in keys}
        if not table:
            raise ConfigError(f"no default search space for {algo} (it has none of {', '.join(DEFAULT_SPACE)}): the search space is empty; give --space FILE")
        return parse_distributions(table, algo, "default space"), {}
    data = read_table(space, "space file")
    extra = [k for k in data if k not in ("space", "config")]
    if extra:
        raise ConfigError(f"space file '{space}': unknown table '{extra[0]}'; write the distributions under [space] and fixed values under [config]")
    for name in ("space", "config"):
        if not isinstance(data.get(name, {}), dict):
            raise ConfigError(f"space file '{space}': {name} must be a table ([{name}])")
    dists = parse_distributions(data.get("space", {}), algo, f"space file '{space}' [space]")
    if not dists:
        raise ConfigError(f"space file '{space}': the search space is empty; list distributions under [space], e.g. \"learner.lr\" = {{ loguniform = [1e-4, 1e-2] }}")
    fixed = flatten(data.get("config", {}), algo, f"space file '{space}' [config]")
    for key in ("algo", "seed", "steps"):
        if key in dists or key in fixed:
            raise ConfigError(f"space file '{space}': {key} is set by `dynarl tune` itself (ALGO, --seed, --steps)")
    return dists, fixed


class OptunaPruning(Callback):
    """Reports every evaluation to the Optuna trial and stops training once the pruner says so (RL Zoo's
    ``TrialEvalCallback``); the step reported is the evaluation's index."""

    def __init__(self, trial):
        self.trial, self.evaluations, self.pruned = trial, 0, False

    def on_evaluation(self, algo, mean_return: float, std_return: float) -> bool:
        self.trial.report(mean_return, self.evaluations)
        self.evaluations += 1
        if self.trial.should_prune():
            self.pruned = True
            return False
        return True


class Study:
    """One tuning job: its settings, its journal and its objective."""

    def __init__(self, algo: str, env: str | None, steps: int, space: str | Path, out: str | Path, trials: int, seed: int = 0, evaluations: int = 5):
        for name, value in (("--trials", trials), ("--steps", steps), ("--evaluations", evaluations)):
            if int(value) <= 0:
                raise ConfigError(f"{name} {value} is invalid: must be > 0")
        if int(seed) < 0:
            raise ConfigError(f"--seed {seed} is invalid: must be >= 0")
        self.algo = get_algorithm(algo).name
        self.dists, self.fixed = load_space(space, self.algo)
        self.steps, self.trials, self.seed, self.evaluations = int(steps), int(trials), int(seed), int(evaluations)
        self.env = build_config(self.algo, env, self.base()).env
        check_values(self.algo, self.env, self.base(), {k: list(d.extremes()) for k, d in self.dists.items()}, f"search space of {self.algo}")
        self.out = Path(out).resolve()
        self.name = f"dynarl-{self.algo}-{self.env}"

    def base(self) -> dict:
        every = max(1, self.steps // self.evaluations)
        return {"eval_every": every, "log_every": every, "checkpoint_every": self.steps, "quiet": True, **self.fixed, "steps": self.steps, "seed": self.seed}

    def budget_notes(self) -> list[str]:
        """What the algorithm says of this budget with the fixed config (e.g. steps that end before learning
        starts), from an agent built once and closed: the trials run quietly."""
        probe = get_algorithm(self.algo)(config=build_config(self.algo, self.env, self.base()))
        try:
            return probe.budget_notes(self.steps)
        finally:
            probe.close()

    def identity(self) -> dict:
        return json.loads(json.dumps({"algo": self.algo, "env": self.env, "steps": self.steps, "seed": self.seed, "evaluations": self.evaluations, "config": self.fixed, "space": {k: d.as_json() for k, d in self.dists.items()}}))

    def open(self, worker: int = 0):
        """The shared study (created on first use); a DIR that holds a study of other settings is refused."""
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out '{self.out}' is a file, not a folder")
        journal = self.out / "study.journal"
        if not journal.exists() and self.out.is_dir() and any(p.name != "study.journal" for p in self.out.iterdir()):
            raise ConfigError(f"--out '{self.out}' is not empty and holds no study; choose a fresh --out so nothing of yours is overwritten")
        self.out.mkdir(parents=True, exist_ok=True)
        storage, optuna = journal_storage(journal)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=self.seed * 1000 + worker)  # one stream per worker, or they propose alike
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=self.evaluations // 3)
        names = [s.study_name for s in storage.get_all_studies()]
        if names and self.name not in names:
            raise ConfigError(f"'{self.out}' holds another study ({names[0]}); choose a fresh --out or tune that algorithm and env")
        if names:  # loading writes nothing to the journal (create_study(load_if_exists=True) would append to it)
            study = optuna.load_study(study_name=self.name, storage=storage, sampler=sampler, pruner=pruner)
        else:
            study = optuna.create_study(study_name=self.name, storage=storage, sampler=sampler, pruner=pruner, direction="maximize")
        theirs = study.user_attrs.get("dynarl")
        if theirs is None:
            study.set_user_attr("dynarl", self.identity())
        elif theirs != self.identity():
            raise ConfigError(f"'{self.out}' holds a study with other settings ({_first_diff(theirs, self.identity())}); choose a fresh --out or repeat its settings")
        return study, optuna

    def done(self, study, optuna) -> int:
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)  # a failed or interrupted trial is run again
        return len(study.get_trials(deepcopy=False, states=states))

    def objective(self, trial) -> float:
        import optuna

        overrides = {k: d.suggest(trial, k) for k, d in self.dists.items()}
        trial.set_user_attr("overrides", overrides)
        cls = get_algorithm(self.algo)
        cfg = build_config(self.algo, self.env, {**self.base(), **overrides})
        run_dir = self.out / "trials" / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir.relative_to(self.out)))
        agent = cls(config=cfg)
        run = RunDir.create(run_dir, to_dict(cfg))
        pruning = OptunaPruning(trial)
        try:
            agent.learn(run_dir=run, callbacks=[pruning])
        except TrainingDivergedError:
            return math.nan  # Optuna records the trial as failed and the study goes on
        finally:
            agent.close()
        if pruning.pruned:
            raise optuna.TrialPruned()
        return float(agent.last_eval[0])

    def optimize(self, n_trials: int, worker: int = 0, log=None) -> None:
        study, optuna = self.open(worker)

        def say(study, frozen) -> None:
            if log:
                value = f"{frozen.value:.2f}" if frozen.value is not None else "-"
                log(f"  trial {frozen.number}: {frozen.state.name.lower()}, value {value}, {json.dumps(frozen.user_attrs.get('overrides', {}))}")

        if n_trials > 0:
            try:
                study.optimize(self.objective, n_trials=n_trials, callbacks=[say])
            except RunInterrupted as e:  # the trial in progress is recorded as failed; a rerun replaces it
                raise RunInterrupted(f"tuning stopped by a signal. Run the same `dynarl tune` command again to continue the study in {self.out}", e.exit_code) from None


def _first_diff(a: dict, b: dict) -> str:
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            return f"{k}: {json.dumps(a.get(k))} vs {json.dumps(b.get(k))}"
    return "settings"


def tune(algo: str, env: str | None, trials: int, steps: int, space: str | Path = "default", out: str | Path = "tune", workers: int = 1, seed: int = 0, evaluations: int = 5, log=None) -> dict:
    """Run the study until it holds ``trials`` finished trials; write ``best_preset.toml`` and ``tune.json``
    in ``out`` and return their summary (best value, its overrides, the preset's path)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if int(workers) <= 0:
        raise ConfigError(f"--workers {workers} is invalid: must be > 0")
    require_optuna()
    job = Study(algo, env, steps, space, out, trials, seed, evaluations)
    study, optuna = job.open()
    remaining = max(0, job.trials - job.done(study, optuna))
    log(f"dynarl: tuning {job.algo} on {job.env}: {job.trials} trials of {job.steps} steps ({remaining} to run, {min(workers, max(remaining, 1))} workers); study {job.out / 'study.journal'}")
    if remaining:
        for note in job.budget_notes():
            log(f"dynarl: note: {note}")
    shares = [remaining // workers + (i < remaining % workers) for i in range(workers)]
    if workers == 1:
        job.optimize(remaining, 0, log)
    else:
        spec = {
            "algo": job.algo,
            "env": job.env,
            "steps": job.steps,
            "space": str(Path(space).resolve()) if str(space) != "default" else "default",
            "out": str(job.out),
            "trials": job.trials,
            "seed": job.seed,
            "evaluations": job.evaluations,
        }
        env_vars = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        procs = [subprocess.Popen([sys.executable, "-m", "dynarl.run.tune", json.dumps({**spec, "n_trials": n, "worker": i})], env=env_vars) for i, n in enumerate(shares) if n > 0]
        try:
            codes = [proc.wait() for proc in procs]
        except KeyboardInterrupt:  # Ctrl-C reached the workers too: each stops its trial; wait for them
            codes = [proc.wait() for proc in procs]
            raise RunInterrupted(f"tuning stopped by SIGINT. Run the same `dynarl tune` command again to continue the study in {job.out}", 130) from None
        if any(codes):
            raise DynarlError(f"{sum(c != 0 for c in codes)} of {len(procs)} tuning workers failed (exit codes {codes}; their messages are above); run the same command again to continue the study")
    return write_results(job, *job.open())


def write_results(job: Study, study, optuna) -> dict:
    TS = optuna.trial.TrialState
    frozen = study.get_trials(deepcopy=False)
    rows = [{"number": t.number, "state": t.state.name.lower(), "value": t.value, "overrides": t.user_attrs.get("overrides"), "run_dir": t.user_attrs.get("run_dir"), "evaluations": len(t.intermediate_values)} for t in frozen]
    complete = [t for t in frozen if t.state == TS.COMPLETE and t.value is not None and math.isfinite(t.value)]
    result = {
        "out": str(job.out),
        "study": job.name,
        "algo": job.algo,
        "env": job.env,
        "trials": len(frozen),
        "complete": len(complete),
        "pruned": sum(t.state == TS.PRUNED for t in frozen),
        "failed": sum(t.state == TS.FAIL for t in frozen),
        "best": None,
        "preset": None,
    }
    if complete:
        best = max(complete, key=lambda t: t.value)
        hyper = {k: v for k, v in job.fixed.items() if k not in RUN_KEYS} | best.user_attrs["overrides"]
        source = f"dynarl tune: study {job.name}, best of {len(frozen)} trials (TPE + median pruner), trial {best.number}: final eval return {best.value:.2f} after {job.steps} steps, seed {job.seed}"
        preset = write_preset(job.out / "best_preset.toml", job.algo, job.env, hyper, source)
        result.update(best={"number": best.number, "value": best.value, "overrides": best.user_attrs["overrides"], "run_dir": best.user_attrs.get("run_dir")}, preset=str(preset))
    from dynarl import checkpoint as ckpt

    ckpt.atomic_write_bytes(job.out / "tune.json", (json.dumps({**result, "settings": job.identity(), "trial_list": rows}, indent=2) + "\n").encode())
    return result


def _main(argv: list[str]) -> int:
    """``python -m dynarl.run.tune JOB_JSON``: one worker process of ``tune(..., workers=W)``."""
    spec = json.loads(argv[0])

    def work() -> None:
        job = Study(spec["algo"], spec["env"], spec["steps"], spec["space"], spec["out"], spec["trials"], spec["seed"], spec["evaluations"])
        job.optimize(spec["n_trials"], spec["worker"], log=lambda msg: print(msg, file=sys.stderr, flush=True))

    return command_status(work)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
