"""The CLI contract and its bad-input rules: non-zero exit, a short message naming problem and fix,
no traceback, and existing run files untouched."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import TINY, run_cli


def _assert_user_error(proc, *needles):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in proc.stderr, proc.stderr


def _snapshot(folder: Path) -> dict:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sac"
    proc = run_cli("train", "sac", "--env", "Pendulum-v1", "--steps", "600", "--seed", "1", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def test_train_writes_the_run_folder(finished_run):
    out, summary = finished_run
    for name in ("config.json", "metrics.csv", "learning_curve.png", "summary.json"):
        assert (out / name).is_file(), name
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert list((out / "checkpoints").glob("step_*.safetensors"))
    saved = json.loads((out / "summary.json").read_text())
    for key in ("algo", "env", "seed", "env_steps", "eval_return_mean", "eval_return_std", "wall_seconds", "env_steps_per_second"):
        assert key in saved
    assert saved["env_steps"] == 600 and saved["algo"] == "sac" and summary["run_dir"] == str(out)
    # what made the run: versions, and the commit when dynarl runs from a git checkout
    import dynarl

    versions = saved["versions"]
    assert versions["dynarl"] == dynarl.__version__ and versions["torch"] == torch.__version__ and versions["gymnasium"]
    head = subprocess.run(["git", "-C", str(Path(dynarl.__file__).parent), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert versions["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    config = json.loads((out / "config.json").read_text())
    assert config["learner"]["hidden_sizes"] == [32, 32] and config["learner"]["gamma"] == 0.99  # resolved, defaults filled


def test_train_names_the_preset_it_started_from(tmp_path):
    proc = run_cli("train", "sac", "--env", "Pendulum-v1", "--steps", "20", "--out", str(tmp_path / "run"), *[a for a in TINY if a != "quiet=true"])
    assert proc.returncode == 0, proc.stderr
    assert "dynarl: preset from RL Baselines3 Zoo sac.yml" in proc.stdout and "`dynarl list sac`" in proc.stdout, proc.stdout


def test_eval_plot_list_and_resume_finished(finished_run, tmp_path):
    out, _ = finished_run
    proc = run_cli("eval", str(out), "--episodes", "2")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["episodes"] == 2
    # stateless: one episode at the run's seed is the run's own final evaluation; a stochastic one repeats at a given seed
    ours = json.loads(run_cli("eval", str(out), "--episodes", "1").stdout)
    assert ours["deterministic"] and ours["eval_return_mean"] == pytest.approx(json.loads((out / "summary.json").read_text())["eval_return_mean"])
    sampled = [json.loads(run_cli("eval", str(out), "--episodes", "1", "--stochastic", "--seed", "3").stdout) for _ in range(2)]
    assert sampled[0] == sampled[1] and not sampled[0]["deterministic"] and sampled[0]["seed"] == 3
    assert sampled[0]["eval_return_mean"] != json.loads(run_cli("eval", str(out), "--episodes", "1", "--seed", "3").stdout)["eval_return_mean"]
    proc = run_cli("plot", str(out), "--out", str(tmp_path / "c.png"))
    assert proc.returncode == 0 and (tmp_path / "c.png").stat().st_size > 0
    proc = run_cli("list")
    assert proc.returncode == 0 and "sac" in proc.stdout and "HalfCheetah-v5" in proc.stdout and "Zoo" in proc.stdout
    before = _snapshot(out)
    proc = run_cli("resume", str(out))
    _assert_user_error(proc, "already finished", "--steps")
    assert _snapshot(out) == before


@pytest.mark.parametrize(
    "args,needles",
    [
        (["train", "sac", "--env", "Pendulum-v9"], ["unknown environment 'Pendulum-v9'", "Pendulum-v1"]),
        (["train", "td3", "--env", "CartPole-v1"], ["TD3 takes Box (flat) actions", "Discrete(2)", "DQN"]),
        (["train", "sac", "learner.actor_lrr=1e-3"], ["unknown config key 'learner.actor_lrr'", "learner.actor_lr"]),
        (["train", "sac", "learner.actor_lr=-1e-3"], ["learner.actor_lr=", "must be > 0"]),
        (["train", "ddpg", "learner.gamma=1.5"], ["learner.gamma=", "(0, 1]"]),
        (["train", "sac", "batch_size=big"], ["batch_size='big'", "expected an integer"]),
        (["train", "ppo5"], ["unknown algorithm 'ppo5'"]),
        (["train", "dqn", "--env", "Pendulum-v1"], ["DQN takes Discrete actions", "Box", "use a continuous-action algorithm (SAC"]),
        (["train", "q_learning", "--env", "CartPole-v1"], ["Q_LEARNING takes Discrete observations", "Box", "DQN"]),
        (["train", "sac", "--env", "CartPole-v1"], ["SAC takes Box (flat) actions", "Discrete(2)", "DQN"]),
        (["train", "dqn", "epsilon_start=0.1", "epsilon_end=0.5"], ["epsilon_end=0.5 is above epsilon_start=0.1", "must decay"]),
        (["train", "sac", "steps=200"], ["--steps 100 and steps=200 disagree", "give steps once"]),
    ],
)
def test_bad_input_is_a_short_clear_error(args, needles, tmp_path):
    proc = run_cli(*args, "--out", str(tmp_path / "new"), "--steps", "100")
    _assert_user_error(proc, *needles)
    assert not (tmp_path / "new").exists()  # validated before any work


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    proc = run_cli("train", "sac", "--steps", "100", "--out", str(blocker / "run"))
    _assert_user_error(proc, "cannot write to output folder", "--out")
    assert blocker.read_text() == "a file, not a folder"


def test_existing_run_is_never_overwritten(finished_run):
    out, _ = finished_run
    before = _snapshot(out)
    proc = run_cli("train", "sac", "--steps", "100", "--out", str(out))
    _assert_user_error(proc, "already holds a run", "dynarl resume")
    assert _snapshot(out) == before


def test_corrupt_truncated_and_foreign_checkpoints(finished_run, tmp_path):
    out, _ = finished_run
    ckpt = sorted((out / "checkpoints").glob("*.safetensors"))[-1]
    data = ckpt.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    _assert_user_error(run_cli("eval", str(tmp_path / "trunc.safetensors")), "truncated or corrupt")
    (tmp_path / "junk.safetensors").write_bytes(os.urandom(256))
    _assert_user_error(run_cli("eval", str(tmp_path / "junk.safetensors")), "not a dynarl checkpoint")
    # a run folder whose only checkpoint is damaged: resume refuses and leaves the files alone
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "checkpoints").mkdir()
    (damaged / "config.json").write_text((out / "config.json").read_text())
    (damaged / "checkpoints" / ckpt.name).write_bytes(data[:-100])
    before = _snapshot(damaged)
    _assert_user_error(run_cli("resume", str(damaged), "--steps", "2000"), "no usable checkpoint", "truncated or corrupt")
    assert _snapshot(damaged) == before


def test_checkpoint_of_another_algorithm(finished_run):
    import dynarl

    out, _ = finished_run
    ckpt = sorted((out / "checkpoints").glob("*.safetensors"))[-1]
    with pytest.raises(dynarl.CheckpointError, match="is a SAC checkpoint, not TD3"):
        dynarl.TD3.load(ckpt)
    agent = dynarl.load(ckpt)  # the generic loader picks the right class
    assert isinstance(agent, dynarl.SAC) and agent.env_steps == 600


def test_resume_with_checkpoint_of_another_algorithm(finished_run, tmp_path):
    out, _ = finished_run
    ckpt = sorted((out / "checkpoints").glob("*.safetensors"))[-1]
    other = tmp_path / "td3run"
    (other / "checkpoints").mkdir(parents=True)
    config = json.loads((out / "config.json").read_text())
    config["algo"] = "td3"
    (other / "config.json").write_text(json.dumps(config))
    (other / "checkpoints" / ckpt.name).write_bytes(ckpt.read_bytes())
    before = _snapshot(other)
    _assert_user_error(run_cli("resume", str(other), "--steps", "5000"), "is a SAC checkpoint, not TD3")
    assert _snapshot(other) == before


def test_python_api_save_load_predict(tmp_path):
    import numpy as np

    import dynarl

    agent = dynarl.SAC("Pendulum-v1", steps=300, learning_starts=100, batch_size=32, **{"learner.hidden_sizes": (32, 32)}, eval_every=300, eval_episodes=1, quiet=True)
    agent.learn(300)
    obs, _ = agent.eval_env.reset(seed=0)
    act, state = agent.predict(obs, deterministic=True)  # Stable-Baselines3's (action, state)
    assert act.shape == (1,) and -2 <= act[0] <= 2 and state is None
    agent.save(tmp_path / "agent")
    loaded = dynarl.load(tmp_path / "agent.safetensors")
    assert np.allclose(loaded.predict(obs, deterministic=True)[0], act)
    assert all(torch.equal(p, q) for p, q in zip(agent.learner.actor.parameters(), loaded.learner.actor.parameters()))
    assert loaded.predict(np.stack([obs, obs]))[0].shape == (2, 1)
