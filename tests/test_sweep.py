"""`dynarl sweep`: grid x seeds in local processes, skipping finished trials, resuming interrupted ones from
their checkpoint, random search, bad input refused before anything is written, and the Ray trainable's
reporting (in-process; the Ray Tune run itself is in test_sweep_ray.py)."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from dynarl.errors import ConfigError
from dynarl.run.space import Distribution
from dynarl.run.sweep import Sweep, job, plan, run_sweep, run_trial

TINY_SAC = """
algo = "sac"
env = "Pendulum-v1"
steps = {steps}
seeds = {seeds}
learning_starts = 100
batch_size = 32
eval_every = 150
eval_episodes = 1
log_every = 150
checkpoint_every = {ckpt}
[config.learner]
hidden_sizes = [16, 16]
[grid]
learner.actor_lr = {lrs}
"""
NAMES = {"actor_lr=0.001-s0", "actor_lr=0.001-s1", "actor_lr=0.0003-s0", "actor_lr=0.0003-s1"}


def _write(folder: Path, text: str, name: str = "sweep.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def _snapshot(folder: Path) -> dict:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """Two actor learning rates x two seeds, 300 SAC steps each, in two worker processes."""
    root = tmp_path_factory.mktemp("sweep")
    spec = _write(root, TINY_SAC.format(steps=300, seeds="[0, 1]", ckpt=150, lrs="[1e-3, 3e-4]"))
    return spec, root / "out", run_sweep(spec, root / "out", workers=2, log=lambda msg: None)


def test_grid_times_seeds_writes_a_run_folder_per_trial(swept):
    spec, out, result = swept
    assert result["trials"] == 4 and result["finished"] == 4 and result["failed"] == 0
    status = json.loads((out / "sweep.json").read_text())
    assert {t["name"] for t in status["trials"]} == NAMES
    for trial in status["trials"]:
        run = out / trial["name"]
        summary = json.loads((run / "summary.json").read_text())
        config = json.loads((run / "config.json").read_text())
        assert trial["status"] == "finished" and summary["env_steps"] == 300
        assert trial["eval_return_mean"] == summary["eval_return_mean"]  # the final return, read from the run
        assert config["seed"] == trial["seed"] and config["learner"]["actor_lr"] == trial["overrides"]["learner.actor_lr"]
        assert config["learner"]["hidden_sizes"] == [16, 16] and config["quiet"] is True
    assert status["best"] == max(status["trials"], key=lambda t: t["eval_return_mean"])["name"]
    # the same sweep again: nothing to run, nothing rewritten
    before = {p: v for p, v in _snapshot(out).items() if p.name != "sweep.json"}
    said = []
    assert run_sweep(spec, out, log=said.append)["finished"] == 4 and "4 finished, 0 to run" in said[0]
    assert {p: v for p, v in _snapshot(out).items() if p.name != "sweep.json"} == before


def test_an_interrupted_trial_resumes_from_its_checkpoint(swept, tmp_path):
    """A trial that lost its end (summary and last checkpoint) continues from step 150 and ends exactly where
    the uninterrupted run did (CPU runs resume bit-identically); its step-150 checkpoint is read, not rewritten."""
    spec, out, _ = swept
    shutil.copytree(out, tmp_path / "out")
    trial = tmp_path / "out" / "actor_lr=0.001-s1"
    expected = json.loads((trial / "summary.json").read_text())["eval_return_mean"]
    (trial / "summary.json").unlink()
    (trial / "checkpoints" / "step_000000300.safetensors").unlink()
    kept = trial / "checkpoints" / "step_000000150.safetensors"
    stamp = kept.stat().st_mtime_ns
    sweep = Sweep.load(spec)
    out2, trials, states = plan(sweep, tmp_path / "out")
    assert states == {name: "partial" if name == "actor_lr=0.001-s1" else "finished" for name in NAMES}
    spec_of = job(sweep, out2, next(t for t in trials if t.name == trial.name))  # what the worker process runs, run here
    summary = run_trial(spec_of["algo"], spec_of["env"], spec_of["overrides"], spec_of["run_dir"])
    assert summary["env_steps"] == 300 and "skipped" not in summary
    assert json.loads((trial / "summary.json").read_text())["eval_return_mean"] == expected
    assert kept.stat().st_mtime_ns == stamp and (trial / "checkpoints" / "step_000000300.safetensors").is_file()


def test_sigterm_checkpoints_the_running_trial_and_a_rerun_finishes_it(tmp_path):
    spec = _write(tmp_path, TINY_SAC.format(steps=600, seeds="[0]", ckpt=100, lrs="[1e-3]"))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "dynarl.cli", "sweep", str(spec), "--out", str(out), "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpts = out / "actor_lr=0.001-s0" / "checkpoints"
    deadline = time.time() + 60
    while not list(ckpts.glob("step_*.safetensors")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    status = json.loads((out / "sweep.json").read_text())["trials"][0]
    assert status["status"] == "interrupted" and not (out / "actor_lr=0.001-s0" / "summary.json").exists()
    last = max(ckpts.glob("step_*.safetensors"))
    stopped_at, stamp = int(last.stem.split("_")[1]), last.stat().st_mtime_ns
    assert 0 < stopped_at < 600
    assert run_sweep(spec, out, workers=1, log=lambda msg: None)["finished"] == 1
    assert json.loads((out / "actor_lr=0.001-s0" / "summary.json").read_text())["env_steps"] == 600
    assert json.loads((out / "sweep.json").read_text())["trials"][0]["status"] == "finished"
    assert not last.exists() or last.stat().st_mtime_ns == stamp  # read, never rewritten (it may be rotated out)


def test_random_search_is_seeded_and_extends():
    base = {"algo": "sac", "env": "Pendulum-v1", "seeds": [0, 1], "random": {"learner.actor_lr": {"loguniform": [1e-4, 1e-2]}, "batch_size": {"int": [32, 64]}, "learner.hidden_sizes": {"choice": [[16, 16], [32]]}}}
    three, five = Sweep.from_dict({**base, "samples": 3}).trials(), Sweep.from_dict({**base, "samples": 5}).trials()
    assert len(three) == 6 and len(five) == 10 and five[:6] == three  # the first draws do not move
    assert Sweep.from_dict({**base, "samples": 3}).trials() == three
    assert Sweep.from_dict({**base, "samples": 3, "sample_seed": 1}).trials() != three
    assert len({t.name for t in five}) == 10 and [t.seed for t in three] == [0, 1] * 3
    for t in five:
        assert 1e-4 <= t.overrides["learner.actor_lr"] <= 1e-2 and 32 <= t.overrides["batch_size"] <= 64 and t.overrides["learner.hidden_sizes"] in ([16, 16], [32])
    only_choices = Sweep.from_dict({"algo": "sac", "samples": 6, "random": {"learner.gamma": {"choice": [0.98, 0.99]}}}).trials()
    assert sorted(t.name for t in only_choices) == ["gamma=0.98-s0", "gamma=0.99-s0"]  # repeated draws run once
    # log-uniform on [1e-4, 1e-2]: log10 x is uniform on [-4, -2], mean -3, sd 2/sqrt(12) = 0.577
    rng = np.random.default_rng(0)
    logs = np.log10([Distribution("loguniform", (1e-4, 1e-2)).sample(rng) for _ in range(20_000)])
    assert abs(logs.mean() + 3) < 0.02 and abs(logs.std() - 2 / 12**0.5) < 0.02
    ints = [Distribution("int", (1, 3)).sample(rng) for _ in range(3_000)]
    assert set(ints) == {1, 2, 3} and abs(np.mean(ints) - 2) < 0.05


@pytest.mark.parametrize(
    "table, needles",
    [
        ({"grid": {"learner": {"actor_l": [1e-3]}}}, ("unknown config key 'learner.actor_l'", "Did you mean: learner.actor_lr")),
        ({"sample": 3, "grid": {"batch_size": [32]}}, ("unknown key 'sample'", "Did you mean: samples")),
        ({"grid": {"learner.actor_lr": []}}, ("search space is empty",)),
        ({}, ("search space is empty",)),
        ({"random": {"learner.tau": {"uniform": [0.01, 0.1]}}}, ("needs samples = N",)),
        ({"samples": 2, "random": {"learner.tau": {"loguniform": [0, 0.1]}}}, ("needs 0 < low",)),
        ({"samples": 2, "random": {"learner.tau": {"normal": [0, 1]}}}, ("is not a distribution", "loguniform")),
        ({"samples": 2, "random": {"batch_size": {"uniform": [32, 64]}}}, ("integer key", "{ int = [32, 64] }")),
        ({"grid": {"learner.actor_lr": [-1.0]}}, ("learner.actor_lr=-1.0 is invalid: must be > 0",)),
        ({"grid": {"seed": [1, 2]}}, ("seed is set by the sweep itself",)),
        ({"seeds": [0, 0], "grid": {"batch_size": [32]}}, ("repeats a seed",)),
        ({"grid": {"learner.tau": [0.01, 0.01]}}, ("repeats a value",)),
        ({"batch_size": 0, "grid": {"learner.tau": [0.01]}}, ("batch_size=0 is invalid: must be > 0",)),
    ],
)
def test_bad_sweep_files_are_refused_with_the_key_named(table, needles):
    with pytest.raises(ConfigError) as e:
        Sweep.from_dict({"algo": "sac", "env": "Pendulum-v1", **table}, "bad.toml")
    for n in needles:
        assert n in str(e.value)
    assert "\n" not in str(e.value)


def test_folders_of_another_sweep_are_never_overwritten(swept, tmp_path):
    spec, out, _ = swept
    before = _snapshot(out)
    other = _write(tmp_path, TINY_SAC.format(steps=300, seeds="[0, 1]", ckpt=150, lrs="[1e-3, 3e-4]").replace("batch_size = 32", "batch_size = 64"))
    with pytest.raises(ConfigError, match="holds another sweep"):
        run_sweep(other, out, workers=1)
    # without a sweep.json, each trial folder's own config is compared with the trial's
    lone = tmp_path / "lone"
    shutil.copytree(out / "actor_lr=0.001-s0", lone / "actor_lr=0.001-s0")
    with pytest.raises(ConfigError, match=r"holds a run of another sweep or config \(batch_size: 32 vs 64"):
        run_sweep(other, lone, workers=1)
    assert not (lone / "sweep.json").exists() and _snapshot(out) == before
    # the same sweep with one more seed extends it: four trials are finished, two are new
    more = _write(tmp_path, TINY_SAC.format(steps=300, seeds="[0, 1, 2]", ckpt=150, lrs="[1e-3, 3e-4]"), "more.toml")
    states = plan(Sweep.load(more), out)[2]
    assert states == {**{name: "finished" for name in NAMES}, "actor_lr=0.001-s2": "new", "actor_lr=0.0003-s2": "new"}
    # the CLI: exit 2, one line, no traceback, nothing written
    proc = run_cli("sweep", str(other), "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert _snapshot(out) == before


def test_ray_backend_missing_is_a_config_error(tmp_path, monkeypatch):
    spec = _write(tmp_path, TINY_SAC.format(steps=300, seeds="[0]", ckpt=150, lrs="[1e-3]"))
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    with pytest.raises(ConfigError, match=r"needs Ray Tune.*dynarl\[distributed\]"):
        run_sweep(spec, tmp_path / "out", backend="ray")
    assert not (tmp_path / "out").exists()


def test_the_example_sweep_file_is_valid():
    sweep = Sweep.load(Path(__file__).resolve().parents[1] / "examples" / "sweep_pendulum.toml")
    assert [t.name for t in sweep.trials()] == [f"actor_lr={lr}-s{s}" for lr in ("0.001", "0.0003") for s in (0, 1, 2)]


def test_ray_trainable_reports_each_evaluation_and_errors_without_ray(swept, tmp_path, monkeypatch):
    """The trainable's reporting, run in-process with the one Ray call replaced: a row per evaluation; a
    finished trial reports its final return once; an error a retry would repeat is reported, not raised."""
    from dynarl.run import sweep_ray

    rows = []
    monkeypatch.setattr(sweep_ray, "report", rows.append)
    spec, out, _ = swept
    sweep = Sweep.load(spec)
    trial = next(t for t in sweep.trials() if t.name == "actor_lr=0.0003-s0")
    fresh = job(sweep, tmp_path, trial)
    sweep_ray._trainable({"trial": trial.name}, {trial.name: fresh})
    final = json.loads((out / trial.name / "summary.json").read_text())["eval_return_mean"]
    assert [r["steps"] for r in rows] == [150, 300] and rows[-1]["eval_return"] == final  # same trial, same return
    rows.clear()
    sweep_ray._trainable({"trial": trial.name}, {trial.name: fresh})
    assert rows == [{"eval_return": final, "eval_return_std": 0.0, "steps": 300, "env_steps": 300}]
    rows.clear()
    broken = {**fresh, "env": "NoSuchEnv-v0", "run_dir": str(tmp_path / "broken")}
    sweep_ray._trainable({"trial": trial.name}, {trial.name: broken})
    assert len(rows) == 1 and "NoSuchEnv-v0" in rows[0]["error"]
