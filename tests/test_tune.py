"""`dynarl tune` (Optuna: TPE, median pruner, a journal file shared by worker processes) and `dynarl train
--preset FILE` reading the preset it writes."""

import json
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from dynarl.errors import ConfigError

optuna = pytest.importorskip("optuna")

from dynarl.run.preset_file import read_preset  # noqa: E402
from dynarl.run.space import read_table  # noqa: E402
from dynarl.run.tune import OptunaPruning, load_space, tune  # noqa: E402

SPACE = """
[space]
"learner.actor_lr" = { loguniform = [1e-4, 1e-2] }
"learner.gamma" = { choice = [0.95, 0.99] }
learner.hidden_sizes = { choice = [[16, 16], [8, 8]] }
[config]
learning_starts = 100
batch_size = 32
eval_episodes = 1
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Three trials of 300 SAC steps on Pendulum-v1, two worker processes sharing the study's journal."""
    root = tmp_path_factory.mktemp("tune")
    (root / "space.toml").write_text(SPACE)
    proc = run_cli("tune", "sac", "--env", "Pendulum-v1", "--trials", "3", "--steps", "300", "--space", str(root / "space.toml"), "--out", str(root / "out"), "--workers", "2", "--evaluations", "3")
    assert proc.returncode == 0, proc.stderr
    return root, json.loads(proc.stdout.strip().splitlines()[-1])


def test_study_runs_its_trials_and_writes_the_best_as_a_preset(study):
    root, result = study
    out = root / "out"
    saved = json.loads((out / "tune.json").read_text())
    trials = saved["trial_list"]
    assert result["trials"] == 3 and len(trials) == 3 and sorted(t["number"] for t in trials) == [0, 1, 2]
    assert result["complete"] + result["pruned"] == 3 and (out / "study.journal").is_file()
    for t in trials:
        assert 1e-4 <= t["overrides"]["learner.actor_lr"] <= 1e-2 and t["overrides"]["learner.gamma"] in (0.95, 0.99)
        run = out / t["run_dir"]
        config = json.loads((run / "config.json").read_text())
        assert config["learner"]["actor_lr"] == t["overrides"]["learner.actor_lr"] and config["learner"]["hidden_sizes"] == t["overrides"]["learner.hidden_sizes"]
        assert config["eval_every"] == 100 and t["evaluations"] == 3  # 300 steps / 3 evaluations, each reported to the pruner
        if t["state"] == "complete":
            assert t["value"] == json.loads((run / "summary.json").read_text())["eval_return_mean"]  # the score is the final evaluation
    best = max((t for t in trials if t["state"] == "complete"), key=lambda t: t["value"])
    assert result["best"]["number"] == best["number"] and result["best"]["overrides"] == best["overrides"]
    env, overrides, source = read_preset(result["preset"], "sac")
    assert env == "Pendulum-v1" and "dynarl tune" in source
    assert overrides == {"learning_starts": 100, "batch_size": 32, **best["overrides"]}  # eval_episodes is a run setting, not a preset


def test_train_accepts_the_preset_between_builtin_preset_and_overrides(study, tmp_path):
    _, result = study
    best = result["best"]["overrides"]
    proc = run_cli("train", "sac", "--preset", result["preset"], "--steps", "150", "--out", str(tmp_path / "run"), "learner.gamma=0.97", "eval_episodes=1", "quiet=true")
    assert proc.returncode == 0, proc.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["env"] == "Pendulum-v1"  # from the preset file (no --env)
    assert config["learner"]["actor_lr"] == best["learner.actor_lr"]  # the file beats the built-in preset's 1e-3
    assert config["learner"]["critic_lr"] == 1e-3 and config["eval_every"] == 2000  # built-in sac/Pendulum preset keys the file does not set
    assert config["learner"]["gamma"] == 0.97 and config["steps"] == 150  # the command line beats the file


def test_rerun_extends_the_study_and_other_settings_are_refused(study, tmp_path):
    root, _ = study
    out = root / "out"
    before = len(json.loads((out / "tune.json").read_text())["trial_list"])
    result = tune("sac", "Pendulum-v1", 4, 300, root / "space.toml", out, evaluations=3, log=lambda msg: None)
    assert before == 3 and result["trials"] == 4 and (out / "trials" / "trial-0003" / "summary.json").is_file()
    journal = (out / "study.journal").read_bytes()
    with pytest.raises(ConfigError, match="holds a study with other settings.*steps: 300 vs 200"):
        tune("sac", "Pendulum-v1", 5, 200, root / "space.toml", out, evaluations=3)
    with pytest.raises(ConfigError, match="holds another study"):
        tune("td3", "Pendulum-v1", 5, 300, "default", out)
    assert (out / "study.journal").read_bytes() == journal


class _FakeTrial:
    def __init__(self, prune_after: int):
        self.reports, self.prune_after = [], prune_after

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return len(self.reports) >= self.prune_after


def test_pruning_callback_reports_each_evaluation_and_stops_training():
    trial = _FakeTrial(prune_after=2)
    cb = OptunaPruning(trial)
    assert cb.on_evaluation(None, -500.0, 1.0) is True and not cb.pruned
    assert cb.on_evaluation(None, -400.0, 1.0) is False and cb.pruned  # False ends learn() (after a checkpoint)
    assert trial.reports == [(0, -500.0), (1, -400.0)]


def test_default_space_has_only_the_algorithms_keys():
    dists, fixed = load_space("default", "sac")
    assert set(dists) == {"learner.actor_lr", "learner.critic_lr", "learner.gamma", "learner.tau"} and fixed == {}
    dists, _ = load_space("default", "ppo")
    assert set(dists) == {"learner.lr", "learner.gamma", "learner.gae_lambda"}


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[space]\n", "search space is empty"),
        ("[config]\nbatch_size = 32\n", "search space is empty"),
        ('[space]\n"learner.actor_l" = { loguniform = [1e-4, 1e-2] }\n', "unknown config key 'learner.actor_l'. Did you mean: learner.actor_lr"),
        ('[space]\n"learner.tau" = { uniform = [0.1, 0.01] }\n', "needs low < high"),
        ('[spaces]\n"learner.tau" = { uniform = [0.01, 0.1] }\n', "unknown table 'spaces'"),
        ('[space]\n"learner.gamma" = { choice = [0.99, 1.5] }\n', "learner.gamma=1.5 is invalid"),
    ],
)
def test_bad_space_files_are_refused_before_anything_is_written(tmp_path, text, needle):
    (tmp_path / "space.toml").write_text(text)
    with pytest.raises(ConfigError) as e:
        tune("sac", "Pendulum-v1", 2, 100, tmp_path / "space.toml", tmp_path / "out")
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_cli_errors_exit_2_without_traceback(tmp_path, monkeypatch):
    (tmp_path / "space.toml").write_text("[space]\n")
    proc = run_cli("tune", "sac", "--trials", "2", "--steps", "100", "--space", str(tmp_path / "space.toml"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "search space is empty" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "p.toml").write_text('algo = "td3"\n[overrides]\n"learner.tau" = 0.01\n')
    proc = run_cli("train", "sac", "--preset", str(tmp_path / "p.toml"), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "is for 'td3', not 'sac'" in proc.stderr and not (tmp_path / "r").exists()
    (tmp_path / "p.toml").write_text('[overrides]\n"learner.tauu" = 0.01\n')
    with pytest.raises(ConfigError, match="unknown config key 'learner.tauu'"):
        read_preset(tmp_path / "p.toml", "sac")
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if Optuna were not installed
    with pytest.raises(ConfigError, match=r"needs Optuna.*dynarl\[tune\]"):
        tune("sac", "Pendulum-v1", 2, 100, "default", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_preset_file_round_trip_json_and_toml(tmp_path):
    from dynarl.run.preset_file import write_preset

    overrides = {"learner.actor_lr": 3e-4, "learner.hidden_sizes": [64, 64], "env_kwargs": {"g": 9.81}, "learner.tau": None}
    for name in ("p.toml", "p.json"):
        path = write_preset(tmp_path / name, "sac", "Pendulum-v1", overrides, "hand-made")
        env, flat, source = read_preset(path, "sac")
        assert (env, source) == ("Pendulum-v1", "hand-made") and flat == {"learner.actor_lr": 3e-4, "learner.hidden_sizes": [64, 64], "env_kwargs": {"g": 9.81}}
    assert read_table(Path(tmp_path / "p.toml"), "preset")["overrides"]["learner.actor_lr"] == 3e-4


def test_the_example_space_file_is_valid():
    dists, fixed = load_space(Path(__file__).resolve().parents[1] / "examples" / "tune_space_sac.toml", "sac")
    assert set(dists) == {"learner.actor_lr", "learner.critic_lr", "learner.tau", "learner.gamma"} and fixed == {"learner.hidden_sizes": [64, 64], "eval_episodes": 5}


def test_a_budget_that_ends_before_learning_starts_is_noted(tmp_path):
    """Every trial of 50 steps would end before SAC's first update and score the same: tune says so once."""
    from dynarl.run.tune import Study

    (tmp_path / "space.toml").write_text(SPACE)
    notes = Study("sac", "Pendulum-v1", 50, tmp_path / "space.toml", tmp_path / "out", 2).budget_notes()
    assert any("end before learning_starts=100" in note for note in notes), notes
    assert Study("sac", "Pendulum-v1", 300, tmp_path / "space.toml", tmp_path / "out", 2).budget_notes() == []
    assert not (tmp_path / "out").exists()
