"""The runner: the clock, evaluation, logging, checkpoints, progress and callbacks around any algorithm.

    while algo.steps() < total:                        (env steps, or gradient steps for offline algorithms)
        algo.train_step()
        evaluate every eval_every, log every log_every (and at every evaluation), checkpoint every
        checkpoint_every and at the end; callbacks on each step, evaluation and checkpoint

Metric rows are namespaced as in Stable-Baselines3: ``train/`` (learner losses), ``model/`` (world-model
fit and rollouts), ``rollout/`` (episode return and length of the training episodes, exploration rate),
``eval/`` (mean and std return of the evaluation episodes), ``time/`` (speed, wall-clock, episodes).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from dynarl.algos.base import Algorithm
from dynarl.config import to_dict
from dynarl.errors import ConfigError, RunInterrupted, TrainingDivergedError
from dynarl.run.callbacks import CallbackList
from dynarl.run.evaluate import evaluate
from dynarl.run.interrupt import StopRequest
from dynarl.run.logger import MetricsLogger, Progress
from dynarl.run.plot import MODEL_DIAGNOSTICS
from dynarl.run.rundir import RunDir


def learn(algo: Algorithm, total_steps: int | None = None, run_dir=None, callbacks=None, progress_bar: bool | None = None) -> Algorithm:
    """Train ``algo`` until its clock reads ``total_steps`` (see :meth:`Algorithm.learn`)."""
    return Runner(algo, total_steps, run_dir, callbacks, progress_bar).run()


def latest_state(path: str | Path, algo_name: str) -> dict:
    """The state in a run folder's newest checkpoint that verifies (for ``Algorithm.load(run_dir)``)."""
    return RunDir.open(path).load_latest(expect_algo=algo_name)[2]


class Runner:
    def __init__(self, algo: Algorithm, total_steps: int | None, run_dir, callbacks, progress_bar: bool | None, show_progress: bool = True):
        cfg = algo.cfg
        self.algo = algo
        self.total = int(cfg.steps if total_steps is None else total_steps)
        if self.total <= 0:
            raise ConfigError(f"total_steps={self.total} is invalid: must be > 0")
        self.callbacks = CallbackList(callbacks)
        self.progress_bar = progress_bar
        self.show_progress = show_progress  # False: no console lines (the other seeds of a vectorised run)
        self.run_dir = run_dir

    # --- the loop -------------------------------------------------------------------------------------------

    def run(self) -> Algorithm:
        algo = self.algo
        self.start()
        try:
            with StopRequest(enabled=self.folder is not None) as stop:
                while algo.steps() < self.total:
                    before = algo.steps()
                    algo.train_step()
                    signum = stop.signum  # read once: a signal that lands during after_step is handled (saved) next step
                    keep_going = self.after_step(before, signum)
                    if signum:
                        raise RunInterrupted(
                            f"stopped by {stop.name} at step {algo.steps()} of {self.total}; checkpoint saved. Continue with `dynarl resume {self.folder.path}`",
                            128 + signum,
                        )
                    if not keep_going:
                        break
            self.finish()
        finally:
            self.close()
        return algo

    def start(self, notes: bool = True) -> None:
        """Open the run folder, the logs and the progress display; ``notes``: print the budget notes."""
        algo, cfg = self.algo, self.algo.cfg
        self.folder = run = self._open_run(self.run_dir)
        if notes and not cfg.quiet:
            for note in self._notes():
                print(f"dynarl: note: {note}", file=sys.stderr, flush=True)
        resume_step = algo.steps() if run and (run.path / "metrics.csv").exists() else None
        self.logger = MetricsLogger(run.path if run else None, resume_step=resume_step, step_name=algo.clock)
        algo._model_log = MetricsLogger(run.path, resume_step, filename=MODEL_DIAGNOSTICS, tensorboard=False, step_name=algo.clock) if run else None
        self.progress = Progress(self.total, quiet=cfg.quiet or not self.show_progress, bar=self.progress_bar)
        self.progress.start(algo.steps())
        self.callbacks.on_start(algo)
        self.start_wall, self.wall_before = time.perf_counter(), algo.wall_seconds

    def after_step(self, before: int, stop_signum: int = 0) -> bool:
        """Evaluate, log, call back and checkpoint as the clock moved from ``before``; False: a callback asked to stop."""
        algo, cfg = self.algo, self.algo.cfg
        step, done = algo.steps(), algo.steps() >= self.total

        def crossed(every: int) -> bool:
            return step // every > before // every or done

        evaluated = crossed(cfg.eval_every)
        if evaluated:
            algo.last_eval = self._evaluate()
        algo.wall_seconds = self.wall_before + time.perf_counter() - self.start_wall
        if crossed(cfg.log_every) or evaluated:  # an evaluation always gets its row
            self._log(self.logger, self.progress, evaluated)
        else:
            self.progress.heartbeat(step, algo.recent_return())
        keep_going = self.callbacks.on_step(algo)
        if evaluated:
            keep_going = self.callbacks.on_evaluation(algo, *algo.last_eval) and keep_going
        if self.folder and (crossed(cfg.checkpoint_every) or stop_signum or not keep_going):
            self.callbacks.on_checkpoint(algo, self._save_checkpoint(self.folder))
        return keep_going

    def finish(self) -> None:
        if self.folder:
            self.folder.finish(self.algo.summary())

    def close(self) -> None:
        self.progress.close()
        self.logger.close()
        self.algo._model_log = None
        if self.folder:
            self.folder.unlock()

    def _notes(self) -> list[str]:
        algo, cfg, total = self.algo, self.algo.cfg, self.total
        notes = algo.budget_notes(total)
        if total - algo.steps() < cfg.log_every:
            notes.append(f"log_every={cfg.log_every} is more than the {total - algo.steps()} steps to run: metrics.csv gets one row, at the end; pass log_every=N for more")
        return notes

    def _open_run(self, run_dir) -> RunDir | None:
        """The run folder to write, locked for this process (see :meth:`Algorithm.learn`)."""
        algo = self.algo
        if run_dir is None or isinstance(run_dir, RunDir):
            if run_dir is not None:
                run_dir.lock()
            return run_dir
        config = to_dict(algo.cfg)
        if algo.steps() > 0 and (Path(run_dir) / "config.json").is_file():
            run = RunDir.open(run_dir)
            if run.config() == config:  # this agent's own folder: continue it
                run.lock()
                return run
        return RunDir.create(run_dir, config, flag="run_dir")

    def _evaluate(self) -> tuple[float, float]:
        algo = self.algo
        returns = evaluate(algo.eval_env, lambda obs: algo.policy_action(obs, deterministic=True), algo.cfg.eval_episodes, algo.cfg.seed)
        mean, std = float(returns.mean()), float(returns.std())
        algo.on_evaluation(mean, std)
        return mean, std

    def _log(self, logger: MetricsLogger, progress: Progress, evaluated: bool) -> None:
        algo = self.algo
        self._check_finite()
        speed = progress.speed(algo.steps())
        row = {key if "/" in key else f"train/{key}": value for key, value in algo.metrics().items()}
        if algo.collector is not None:
            row.update({"rollout/ep_rew_mean": algo.recent_return(), "rollout/ep_len_mean": algo.collector.recent_length()})
        row.update({"time/episodes": algo.episodes, "time/gradient_steps": algo.gradient_steps, "time/wall_seconds": round(algo.wall_seconds, 3), "time/steps_per_second": round(speed, 2)})
        if evaluated and algo.last_eval is not None:
            row.update({"eval/mean_reward": algo.last_eval[0], "eval/std_reward": algo.last_eval[1]})
        logger.log(algo.steps(), row)
        progress.show(algo.steps(), algo.recent_return(), row.get("eval/mean_reward"), speed)

    # --- checkpoints, never from a non-finite state ------------------------------------------------------------

    def _save_checkpoint(self, run: RunDir) -> Path:
        algo = self.algo
        self._check_finite()
        state = algo.state_dict()
        bad = non_finite_entries(state)
        if bad:
            raise TrainingDivergedError(
                f"{algo.name.upper()} on {algo.cfg.env}: the state to checkpoint at step {algo.steps()} holds NaN/inf in {', '.join(bad[:3])}. "
                "Training stopped; the last good checkpoint is kept. Check the environment's observations and rewards, or lower the learning rate."
            )
        return run.save_checkpoint(algo.steps(), algo.name, state, algo.cfg.keep_checkpoints)

    def _check_finite(self) -> None:
        algo = self.algo
        if not algo.all_finite():
            raise TrainingDivergedError(
                f"{algo.name.upper()} on {algo.cfg.env}: a loss or parameter became non-finite (NaN/inf) by step {algo.steps()}. "
                "Training stopped; the last good checkpoint is kept. Try a lower learning rate, or check the environment's rewards and observations for NaN."
            )


def non_finite_entries(state, path: str = "") -> list[str]:
    """Paths of the floating-point tensors in a (nested) state that hold NaN or inf."""
    if isinstance(state, torch.Tensor):
        return [path or "/"] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, np.ndarray):
        return [path or "/"] if np.issubdtype(state.dtype, np.floating) and not np.all(np.isfinite(state)) else []
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return []
    return [p for k, v in items for p in non_finite_entries(v, f"{path}/{k}")]


Algorithm.runner = sys.modules[__name__]  # learn() and Algorithm.load(run_dir) go through this module
