"""`dynarl sweep --backend ray`: a small sweep on Ray Tune under ray.init(num_cpus=2), and its restore.
Skipped only when Ray Tune is not importable (it is the `distributed` extra, not part of `dev`)."""

import json

import pytest

from dynarl.run.sweep import run_sweep

SPEC = """
algo = "sac"
env = "Pendulum-v1"
steps = 200
seeds = [0, 1]
learning_starts = 100
batch_size = 32
eval_every = 100
eval_episodes = 1
log_every = 100
checkpoint_every = 200
[config.learner]
hidden_sizes = [16, 16]
[grid]
learner.actor_lr = [1e-3]
"""


def test_ray_backend_runs_and_restores(tmp_path):
    """Two trials on Ray Tune with ray.init(num_cpus=2); the rerun restores the experiment (Tuner.restore)
    and finds nothing to do."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    spec = tmp_path / "sweep.toml"
    spec.write_text(SPEC)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # a new local instance, whatever `ray start` left
    try:
        result = run_sweep(spec, tmp_path / "out", backend="ray", log=lambda msg: None)
        assert result["finished"] == 2 and result["failed"] == 0
        experiments = list((tmp_path / "out" / "ray").iterdir())
        assert len(experiments) == 1
        again = run_sweep(spec, tmp_path / "out", backend="ray", log=lambda msg: None)
        assert again["finished"] == 2 and list((tmp_path / "out" / "ray").iterdir()) == experiments
    finally:
        ray.shutdown()
    status = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert status["backend"] == "ray" and {t["name"] for t in status["trials"]} == {"actor_lr=0.001-s0", "actor_lr=0.001-s1"}
    for t in status["trials"]:
        summary = json.loads((tmp_path / "out" / t["name"] / "summary.json").read_text())
        assert t["status"] == "finished" and summary["env_steps"] == 200 and t["eval_return_mean"] == summary["eval_return_mean"]
    reported = [[json.loads(line) for line in f.read_text().splitlines()] for f in experiments[0].glob("*/result.json")]
    assert len(reported) == 2 and all([r["steps"] for r in rows] == [100, 200] for rows in reported)  # a row per evaluation, via Tune
    assert sorted(rows[-1]["eval_return"] for rows in reported) == sorted(t["eval_return_mean"] for t in status["trials"])
