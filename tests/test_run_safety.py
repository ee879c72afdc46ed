"""The run layer under bad input, interrupts and concurrency: loading by name, a user's folder never
overwritten, one-line errors for damaged files, checksums over the whole checkpoint, non-finite env
output, SIGINT/SIGTERM checkpoints that resume bit-identically, the run lock, and honest progress."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, run_cli
from safetensors.torch import load_file

import dynarl
from dynarl import checkpoint as ckpt
from dynarl.errors import CheckpointError, RunInterrupted, TrainingDivergedError
from dynarl.run.rundir import RunDir


def _assert_user_error(proc, *needles):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    ours = [line for line in proc.stderr.splitlines() if line.startswith("dynarl:")]
    assert len(ours) == 1, proc.stderr  # one line (Gymnasium's own warnings may stand beside it)
    for n in needles:
        assert n in ours[0], proc.stderr


def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _sac(steps=300, **kw):
    settings = dict(steps=steps, learning_starts=100, batch_size=32, eval_every=10_000, eval_episodes=1, quiet=True, **{"learner.hidden_sizes": (32, 32)})
    return dynarl.SAC("Pendulum-v1", **{**settings, **kw})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sac"
    proc = run_cli("train", "sac", "--env", "Pendulum-v1", "--steps", "500", "--seed", "1", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    return out


def _copy(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)
    return dest


def _latest(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("step_*.safetensors"))[-1]


# --- 5. loading by name ------------------------------------------------------------------------------------


def test_load_by_the_name_given_to_save(tmp_path, monkeypatch, run):
    agent = _sac()
    agent.learn(150)
    monkeypatch.chdir(tmp_path)
    agent.save("m")
    assert (tmp_path / "m.safetensors").is_file()
    for loaded in (dynarl.load("m"), dynarl.SAC.load("m"), dynarl.load("m.safetensors")):
        assert loaded.env_steps == 150
    with pytest.raises(CheckpointError, match="nor at 'n.safetensors'"):
        dynarl.load("n")
    assert dynarl.load(run).env_steps == 500  # a run folder: its newest checkpoint


# --- 7. a user's folder is never overwritten --------------------------------------------------------------


def test_train_refuses_a_non_empty_folder_that_is_not_a_run(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.csv").write_text("my own data\n1,2,3\n")
    before = _snapshot(mine)
    proc = run_cli("train", "sac", "--steps", "100", "--out", str(mine))
    _assert_user_error(proc, "not empty", "metrics.csv", "--out")
    assert _snapshot(mine) == before and sorted(p.name for p in mine.iterdir()) == ["metrics.csv"]
    with pytest.raises(dynarl.DynarlError, match="not empty"):
        _sac().learn(150, run_dir=mine)
    assert _snapshot(mine) == before


def test_python_learn_continues_its_own_run_folder(tmp_path):
    agent = _sac(checkpoint_every=100)
    agent.learn(150, run_dir=tmp_path / "r")
    agent.learn(250, run_dir=tmp_path / "r")  # the same agent, the same config: continued
    rows = (tmp_path / "r" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["150", "250"]
    with pytest.raises(dynarl.DynarlError, match="already holds a run"):
        _sac(seed=5).learn(150, run_dir=tmp_path / "r")  # another run's folder is refused


# --- 8. damaged files give one line and exit 2, and nothing changes ------------------------------------------


def _rewrite_meta(src: Path, dest: Path, edit) -> Path:
    """Copy a checkpoint with its JSON header edited by ``edit(header) -> header`` (and the length fixed)."""
    data = src.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = edit(json.loads(data[8 : 8 + n]))
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    dest.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n :])
    return dest


def _meta(key, value):
    def edit(header):
        header["__metadata__"][key] = value
        return header

    return edit


def _damaged_checkpoints(src: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    meta = json.loads(src.read_bytes()[8 : 8 + int.from_bytes(src.read_bytes()[:8], "little")])["__metadata__"]
    state = json.loads(meta["state"])
    counters = dict(state, counters={**state["counters"], "wall_seconds": state["counters"]["wall_seconds"] + 100})

    def renamed(header):  # every tensor under another name, the metadata consistent with the new names
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        header = {"__metadata__": header["__metadata__"], **{"/x" + k: v for k, v in tensors.items()}}
        return header

    def drop_algo(header):
        del header["__metadata__"]["algo"]
        return header

    return {
        "tensor names": (_rewrite_meta(src, folder / "names.safetensors", renamed), "checksum"),
        "metadata list": (_rewrite_meta(src, folder / "list.safetensors", lambda h: {"__metadata__": [1, 2], **{k: v for k, v in h.items() if k != "__metadata__"}}), "not a dynarl checkpoint"),
        "state not json": (_rewrite_meta(src, folder / "notjson.safetensors", _meta("state", "{not json")), "checksum"),
        "no algo": (_rewrite_meta(src, folder / "noalgo.safetensors", drop_algo), "lacks 'algo'"),
        "edited counter": (_rewrite_meta(src, folder / "counter.safetensors", _meta("state", json.dumps(counters))), "checksum"),
    }


def test_damaged_checkpoints_are_one_line_errors(run, tmp_path):
    for what, (path, needle) in _damaged_checkpoints(_latest(run), tmp_path).items():
        with pytest.raises(CheckpointError, match=needle):
            dynarl.load(path)
        if what in ("tensor names", "edited counter"):
            _assert_user_error(run_cli("eval", str(path), "--episodes", "1"), needle)


def test_damaged_state_with_a_valid_checksum_is_still_a_checkpoint_error(run, tmp_path):
    """A file written by a buggy or foreign writer that signs its own metadata: names that do not resolve."""
    _, state = ckpt.load_checkpoint(_latest(run))
    tensors: dict = {}
    tree = ckpt._pack(state, "", tensors)
    tensors = {"/x" + k: v for k, v in tensors.items()}
    meta = {"format": ckpt.FORMAT, "version": str(ckpt.VERSION), "algo": "sac", "state": json.dumps(tree)}
    meta["sha256"] = ckpt._digest(tensors, meta)
    from safetensors.torch import save

    (tmp_path / "x.safetensors").write_bytes(save(tensors, metadata=meta))
    _assert_user_error(run_cli("eval", str(tmp_path / "x.safetensors")), "does not match its tensors")


@pytest.mark.parametrize(
    "config,needle",
    [("[1, 2]", "not a dynarl run config"), ('{"env": "Pendulum-v1"}', "not a dynarl run config"), ("{oops", "not valid JSON")],
)
def test_damaged_run_config(run, tmp_path, config, needle):
    broken = _copy(run, tmp_path / "broken")
    (broken / "config.json").write_text(config)
    before = _snapshot(broken)
    for args in (("resume", str(broken), "--steps", "900"), ("eval", str(broken))):
        _assert_user_error(run_cli(*args), needle)
    assert _snapshot(broken) == before


@pytest.mark.parametrize("garbage", [b"env_steps,eval_return_mean\n250,-1200\nabc,\x00\xff\n", b"env_steps,eval_ret\x00\x00garbage\n250,-1200\n"])  # a bad row; a header cut short
def test_garbage_metrics_on_resume_and_plot(run, tmp_path, garbage):
    broken = _copy(run, tmp_path / "broken")
    (broken / "metrics.csv").write_bytes(garbage)
    before = _snapshot(broken)
    _assert_user_error(run_cli("resume", str(broken), "--steps", "900"), "metrics.csv", "move it aside")
    _assert_user_error(run_cli("plot", str(broken), "--out", str(tmp_path / "c.png")), "metrics.csv", "move it aside")
    assert _snapshot(broken) == before and not (tmp_path / "c.png").exists()


def test_plot_out_errors(run, tmp_path):
    _assert_user_error(run_cli("plot", str(run), "--out", str(tmp_path / "c.docx")), "unsupported image type '.docx'", ".png")
    _assert_user_error(run_cli("plot", str(run), "--out", str(tmp_path / "missing" / "c.png")), "does not exist")
    _assert_user_error(run_cli("plot", str(run), "--out", "/proc/c.png"), "cannot write")  # refused even to root


@pytest.mark.parametrize(
    "args,needles",
    [
        (["train", "mbpo", "trainer.holdout_ratio=1"], ["trainer.holdout_ratio=1", "[0, 1)"]),
        (["train", "ppo", "--env", "CartPole-v1", "n_envs=2", "n_steps=16", "learner.batch_size=64"], ["learner.batch_size=64", "n_envs * n_steps"]),
    ],
)
def test_invalid_settings_are_refused_before_anything_is_written(args, needles, tmp_path):
    _assert_user_error(run_cli(*args, "--out", str(tmp_path / "new")), *needles)
    assert not (tmp_path / "new").exists()


# --- 9. non-finite env output and non-finite saved state ---------------------------------------------------


def test_non_finite_observations_stop_the_run(tmp_path):
    out = tmp_path / "r"  # Pendulum with g = NaN: its angular velocity and so its observation become NaN
    proc = run_cli("train", "sac", "--env", "Pendulum-v1", "--steps", "400", "--out", str(out), 'env_kwargs={"g": NaN}', *TINY)
    _assert_user_error(proc, "non-finite", "observation")
    assert not (out / "summary.json").exists()
    proc = run_cli("train", "ppo", "--env", "Pendulum-v1", "--steps", "400", "--out", str(tmp_path / "p"), 'env_kwargs={"g": NaN}', "n_envs=2", "n_steps=32", "learner.batch_size=32", "quiet=true")
    _assert_user_error(proc, "non-finite")


def test_a_checkpoint_is_never_written_from_non_finite_replay_data(tmp_path):
    agent = _sac(checkpoint_every=100)
    agent.learn(200, run_dir=tmp_path / "r")
    good = sorted((tmp_path / "r" / "checkpoints").glob("*.safetensors"))
    agent.buffer.storage["truncated"][5] = float("nan")  # a field the updates never read, so only the save can notice
    with pytest.raises(TrainingDivergedError, match="buffer"):
        agent.learn(300, run_dir=tmp_path / "r")
    assert sorted((tmp_path / "r" / "checkpoints").glob("*.safetensors")) == good
    ckpt.load_checkpoint(good[-1])  # the last good one still verifies


# --- 10. interrupts, the run lock, dead ends, leftovers -----------------------------------------------------

SIGNAL_STEPS = "1500"


def _signal_args(out):
    return ["train", "sac", "--env", "Pendulum-v1", "--steps", SIGNAL_STEPS, "--seed", "4", "--out", str(out), *TINY]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "whole"
    assert run_cli(*_signal_args(out)).returncode == 0
    return load_file(out / "checkpoints" / f"step_{int(SIGNAL_STEPS):09d}.safetensors")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_a_checkpoint_and_resume_is_bit_identical(sig, tmp_path, uninterrupted):
    out = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "dynarl.cli", *_signal_args(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = out / "checkpoints" / "step_000000500.safetensors"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    metrics = out / "metrics.csv"  # on past the periodic checkpoint, mid-episode: step 750's row is written (a fixed sleep can fall short on a loaded machine)
    while proc.poll() is None and time.time() < deadline and not any(row.startswith("750,") for row in metrics.read_text().splitlines()):
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert f"dynarl resume {out}" in err and "RUN_DIR" not in err and "Traceback" not in err
    steps = [int(p.stem.split("_")[1]) for p in (out / "checkpoints").glob("step_*.safetensors")]
    assert max(steps) > 500 and max(steps) % 500 != 0, steps  # a checkpoint at the step the signal arrived
    assert not (out / "summary.json").exists()
    resumed = run_cli("resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    final = load_file(out / "checkpoints" / f"step_{int(SIGNAL_STEPS):09d}.safetensors")
    assert final.keys() == uninterrupted.keys()
    for k in final:
        assert torch.equal(final[k], uninterrupted[k]), k


def test_a_signal_that_lands_while_a_step_is_logged_still_gets_its_checkpoint(tmp_path):
    """The signal arrives inside the runner's after-step work (here: from a step callback at step 130, as a
    scheduler's SIGTERM can land while a metrics row is written). The loop must not stop on that step
    without its checkpoint: it saves at the next step and says so; resuming then equals a straight run."""

    def terminate_at_130(algo):
        if algo.env_steps == 130:
            os.kill(os.getpid(), signal.SIGTERM)
        return True

    with pytest.raises(RunInterrupted, match="SIGTERM at step 131 of 300; checkpoint saved") as stopped:
        _sac(seed=5).learn(run_dir=tmp_path / "r", callbacks=terminate_at_130)
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert [p.name for p in (tmp_path / "r" / "checkpoints").glob("step_*.safetensors")] == ["step_000000131.safetensors"]
    resumed = dynarl.load(tmp_path / "r")
    resumed.learn(run_dir=tmp_path / "r")
    straight = _sac(seed=5).learn(run_dir=tmp_path / "whole")
    a, b = load_file(_latest(tmp_path / "r")), load_file(_latest(tmp_path / "whole"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight.env_steps == resumed.env_steps == 300


def test_sigterm_during_mbpo_model_training_resumes_bit_identically(tmp_path):
    from test_mbpo import SMALL, SMALL_CLI

    args = ["--steps", "400", "--seed", "2", *SMALL_CLI, "checkpoint_every=100"]
    agent = dynarl.MBPO("Pendulum-v1", steps=400, seed=2, checkpoint_every=100, **SMALL)
    fit, fits = agent.trainer.fit_replay, []

    def fit_then_interrupted(buffer):  # the signal arrives while the model trains (its second fit, step 250)
        fits.append(agent.env_steps)
        if len(fits) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return fit(buffer)

    agent.trainer.fit_replay = fit_then_interrupted
    with pytest.raises(RunInterrupted, match="SIGTERM at step 250") as stopped:
        agent.learn(run_dir=tmp_path / "r")
    assert stopped.value.exit_code == 128 + signal.SIGTERM and fits == [200, 250]
    assert (tmp_path / "r" / "checkpoints" / "step_000000250.safetensors").is_file()
    assert run_cli("resume", str(tmp_path / "r")).returncode == 0
    assert run_cli("train", "mbpo", "--env", "Pendulum-v1", "--out", str(tmp_path / "whole"), *args).returncode == 0
    a = load_file(tmp_path / "r" / "checkpoints" / "step_000000400.safetensors")
    b = load_file(tmp_path / "whole" / "checkpoints" / "step_000000400.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_second_process_on_the_same_run_is_refused(run, tmp_path):
    busy = _copy(run, tmp_path / "busy")
    holder = RunDir.open(busy)
    holder.lock()
    try:
        before = _snapshot(busy)
        _assert_user_error(run_cli("resume", str(busy), "--steps", "900"), "in use by another dynarl process", str(os.getpid()))
        assert _snapshot(busy) == before
    finally:
        holder.unlock()


def test_run_killed_before_its_first_checkpoint_starts_again(tmp_path):
    out, whole = tmp_path / "r", tmp_path / "whole"
    args = lambda out: ["train", "sac", "--env", "Pendulum-v1", "--steps", "1500", "--seed", "3", "--out", str(out), *TINY, "checkpoint_every=2000"]  # noqa: E731
    proc = subprocess.Popen([sys.executable, "-m", "dynarl.cli", *args(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "metrics.csv").exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert not list((out / "checkpoints").glob("step_*"))
    (out / "checkpoints" / ".step_000000250.safetensors.x1y2.tmp").write_bytes(b"half a file")  # as a kill mid-write leaves it
    resumed = run_cli("resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert not list((out / "checkpoints").glob(".*.tmp"))
    assert run_cli(*args(whole)).returncode == 0
    a, b = load_file(_latest(out)), load_file(_latest(whole))
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = lambda run: [r.split(",")[0] for r in (run / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert steps(out) == steps(whole)  # the killed run's rows were replaced, not duplicated


# --- 11. what a new user sees -----------------------------------------------------------------------------


def test_progress_is_true_for_a_budget_below_one_rollout(tmp_path):
    proc = run_cli("train", "ppo", "--env", "CartPole-v1", "--steps", "4000", "--out", str(tmp_path / "p"))
    assert proc.returncode == 0, proc.stderr
    assert "round up to 4096" in proc.stderr and "log_every=5000" in proc.stderr
    assert "23:59:59" not in proc.stdout and "ETA 00:00:00" in proc.stdout


def test_a_budget_that_ends_before_learning_starts_says_so(tmp_path):
    proc = run_cli("train", "sac", "--env", "Pendulum-v1", "--steps", "300", "--out", str(tmp_path / "s"), "eval_episodes=1")
    assert proc.returncode == 0, proc.stderr
    assert "learning_starts=1000" in proc.stderr and "no gradient updates" in proc.stderr


def test_eval_reports_each_episode(run):
    proc = run_cli("eval", str(run), "--episodes", "2")
    assert proc.returncode == 0, proc.stderr
    assert "evaluating SAC" in proc.stderr and "episode 2/2: return" in proc.stderr


def test_every_evaluation_reaches_metrics_csv(tmp_path):
    _sac(eval_every=150, log_every=100).learn(300, run_dir=tmp_path / "r")
    rows = (tmp_path / "r" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    evals = [r.split(",")[0] for r in rows[1:] if r.split(",")[header.index("eval/mean_reward")]]
    assert evals == ["150", "300"]  # 150 is no log step, and its evaluation used to be dropped


def test_wall_seconds_include_the_final_evaluation():
    agent = _sac(eval_episodes=10)  # ten 200-step episodes: most of the run's time
    start = time.perf_counter()
    agent.learn(150)
    elapsed = time.perf_counter() - start
    assert agent.summary()["wall_seconds"] >= 0.9 * elapsed


def test_progress_heartbeat_and_eta_from_recent_speed():
    import io

    from dynarl.run.logger import Progress

    out = io.StringIO()
    progress = Progress(100_000, stream=out, every_s=0.0, window_s=0.05)
    progress.start(0)
    time.sleep(0.06)
    progress.speed(10_000)  # a fast start (random steps) ...
    time.sleep(0.06)
    progress.speed(10_010)  # ... then slow (model training): the window holds only the slow part
    time.sleep(0.06)
    progress.heartbeat(10_020, None)  # no log step, but every_s passed: a line anyway
    line = out.getvalue().strip()
    assert line.startswith("step  10020/100000")
    rate = float(line.split("|")[2].split()[0])
    assert rate < 1_000  # ~170 steps/s over the recent window, not the ~55,000 steps/s since the start
    assert "ETA" in line and "23:59" not in line
