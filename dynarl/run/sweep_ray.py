"""The Ray Tune backend of ``dynarl sweep`` (the ``distributed`` extra).

Each trial is a function trainable of 1 CPU that runs :func:`dynarl.run.sweep.run_trial` (so it starts, or
continues from the run folder's newest checkpoint, or returns at once when finished) and reports after
every evaluation through a dynarl callback. ``ray.init()`` joins the cluster named by ``RAY_ADDRESS`` or
starts a local one, so the same command runs on a laptop and on a cluster; the run folders must then be on
a filesystem every node sees. The Tune experiment lives in ``DIR/ray/sweep-<hash of the trial list>`` and
running the same sweep again continues it with ``Tuner.restore``. A trial whose worker dies is retried
(``FailureConfig(max_failures=3)``) and continues from its last dynarl checkpoint; one that fails in a way a
retry would repeat (bad config or env, divergence, a damaged checkpoint) reports the error and is not retried.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dynarl.errors import CheckpointError, ConfigError, EnvError, TrainingDivergedError
from dynarl.run.callbacks import Callback

RAY_REQUIREMENT = "ray[tune]>=2.41,<3"  # ray.tune.report(dict) / tune.RunConfig / tune.FailureConfig: Ray >= 2.41


def require_ray():
    try:
        import ray
        from ray import tune
    except ImportError:
        raise ConfigError(f"--backend ray needs Ray Tune, which is not installed: pip install 'dynarl[distributed]' ({RAY_REQUIREMENT})") from None
    if not hasattr(tune, "report") or not hasattr(tune, "RunConfig"):
        raise ConfigError(f"--backend ray needs {RAY_REQUIREMENT}; found ray {ray.__version__}: pip install -U 'dynarl[distributed]'")
    return ray, tune


def report(metrics: dict) -> None:
    """The one call into Ray's reporting API. It has had three forms: ``tune.report(**kw)`` (Ray 1.x),
    ``ray.train.report(dict)`` (2.7-2.40), ``ray.tune.report(dict)`` (>= 2.41, pinned in pyproject)."""
    from ray import tune

    tune.report(metrics)


class RayReport(Callback):
    """Reports each evaluation (mean/std return and the clock) to Ray Tune."""

    def __init__(self):
        self.reported = False

    def on_evaluation(self, algo, mean_return: float, std_return: float) -> bool:
        report({"eval_return": mean_return, "eval_return_std": std_return, "steps": algo.steps(), "env_steps": algo.env_steps})
        self.reported = True
        return True


def _trainable(config: dict, jobs: dict) -> None:
    from dynarl.run.sweep import run_trial

    spec = jobs[config["trial"]]
    callback = RayReport()
    try:
        summary = run_trial(spec["algo"], spec["env"], spec["overrides"], spec["run_dir"], callbacks=[callback])
    except (ConfigError, EnvError, CheckpointError, TrainingDivergedError) as e:  # would fail again: no retry, say why
        report({"error": str(e)})
        return
    if not callback.reported:  # finished earlier (a restored or repeated trial): one row with its final return
        report({"eval_return": summary["eval_return_mean"], "eval_return_std": summary["eval_return_std"], "steps": summary.get("env_steps"), "env_steps": summary.get("env_steps")})


def run_on_ray(sweep, out: Path, todo: list, update, workers: int | None = None) -> None:
    """Run ``todo`` (the unfinished trials) as one Ray Tune experiment; ``update(name, status, error)`` per trial."""
    from dynarl.run.sweep import job

    ray, tune = require_ray()
    if not ray.is_initialized():
        ray.init()  # RAY_ADDRESS (a cluster) if set, else a local instance
    all_trials = sweep.trials()  # the experiment is named by the whole sweep, so a rerun restores it
    jobs = {t.name: job(sweep, out, t) for t in all_trials}
    digest = hashlib.sha1(json.dumps([sweep.identity(), sorted(jobs)], sort_keys=True, default=str).encode()).hexdigest()[:10]
    name, storage = f"sweep-{digest}", out / "ray"
    trainable = tune.with_resources(tune.with_parameters(_trainable, jobs=jobs), {"cpu": 1})
    if tune.Tuner.can_restore(str(storage / name)):
        tuner = tune.Tuner.restore(str(storage / name), trainable=trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search([t.name for t in all_trials])},
            tune_config=tune.TuneConfig(max_concurrent_trials=workers),
            run_config=tune.RunConfig(name=name, storage_path=str(storage), failure_config=tune.FailureConfig(max_failures=3), verbose=0),
        )
    results = tuner.fit()  # sweep.json is brought up to date when it returns (Tune's own progress is in DIR/ray)
    for result in results:
        trial_name = (result.config or {}).get("trial")
        if trial_name not in jobs:
            continue
        if (out / trial_name / "summary.json").is_file():
            update(trial_name, "finished")
        elif (result.metrics or {}).get("error"):
            update(trial_name, "failed", str(result.metrics["error"])[:300])
        elif result.error is not None:
            update(trial_name, "failed", (str(result.error).strip().splitlines() or ["error"])[-1][:300])
        else:
            update(trial_name, "interrupted", "stopped before the end; run the sweep again to continue it")
