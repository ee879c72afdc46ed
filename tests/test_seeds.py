"""Vectorised seeds: seed i of a vectorised run is a separate run with seed i (to float rounding), its
checkpoints are interchangeable with a separate run's, and resuming a vectorised run is bit-identical.

Tolerance (the difference is ||theta_vector - theta_separate|| / max(||theta||, 1) per parameter tensor,
the largest over all): the batched (vmapped) matmuls and reductions round differently from a single run's in the last
bit, and training amplifies such differences: a separate SAC run with one critic weight moved by 1e-7
drifts to a relative parameter difference of 1e-3 to 2e-2 after 200 updates on Pendulum (seeds 0-2,
measured). So the parameters are held to 1e-5 (relative norm, every module) for the first 50 updates,
where a wrong random stream or a gradient mixed across seeds shows at once as 1e-2 or more, and to the
order of that drift (< 0.1) after 200 updates, beside two different seeds that differ by O(1).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dynarl.algos import build_config, get_algorithm
from dynarl.algos.seeds import SeedVector, stack_fields
from dynarl.cli import main
from dynarl.errors import ConfigError
from dynarl.nn.mlp import EnsembleLinear
from dynarl.run.seeds import parse_seeds

SMALL = {"learning_starts": "100", "quiet": "true", "learner.hidden_sizes": "[64,64]", "batch_size": "64"}
MBPO_SMALL = {"updates_per_step": "1", "model.members": "3", "model.hidden_sizes": "[32,32]", "model.weight_decay": "[0,0,0]", "trainer.num_elites": "2",
              "trainer.max_epochs": "3", "rollout_batch_size": "64", "epoch_length": "100", "model_train_freq": "50"}
MBPO_SMALL_CLI = [f"{k}={v}" for k, v in MBPO_SMALL.items()]
CASES = {
    "sac": ("Pendulum-v1", SMALL),
    "td3": ("Pendulum-v1", SMALL),
    "ddpg": ("Pendulum-v1", SMALL),
    # max_grad_norm 0.1 clips most updates (gradient norms here run 0.06-1.7, median 0.3): per-seed clipping is checked
    # rounds of 2 updates inside each 50-update target period: each seed's learner values its round's V'(s') ahead
    "dqn": ("CartPole-v1", {"learning_starts": "100", "quiet": "true", "train_freq": "2", "updates_per_step": "2", "batch_size": "64",
                            "learner.hidden_sizes": "[64,64]", "learner.target_update_interval": "50", "epsilon_decay_steps": "200", "learner.max_grad_norm": "0.1"}),
    # the Dyna loop: each seed fits its own ensemble (at 100, then every 50 steps) and rolls it out; SAC's updates stacked
    "mbpo": ("Pendulum-v1", {**SMALL, **MBPO_SMALL}),
}


def _config(algo: str, seed: int):
    env, overrides = CASES[algo]
    return build_config(algo, env, dict(overrides, seed=str(seed)))


def _relative_difference(a, b) -> float:
    """The largest ||theta_a - theta_b|| / max(||theta_a||, 1) over every parameter tensor of two learners
    (relative, except for tensors of norm below 1, such as a log-std near 0, where it is absolute)."""
    worst = 0.0
    for name, module in a.learner.modules.items():
        for p, q in zip(module.parameters(), b.learner.modules[name].parameters(), strict=True):
            worst = max(worst, float((p - q).detach().norm() / p.detach().norm().clamp_min(1.0)))
    return worst


@pytest.mark.parametrize("algo, compiled", [(algo, False) for algo in sorted(CASES)] + [("sac", True), ("dqn", True)])
def test_seed_i_of_a_vectorised_run_is_the_separate_run_with_seed_i(algo, compiled):
    """Also with ``learner.compile=true`` on the vectorised side (each step's gradient one compiled graph around the
    map over seeds; inductor draws random numbers as eager torch does) against eager separate runs: DQN's
    gradients clipped per seed inside the graph, SAC's policy draws played back."""
    import torch._inductor.config as inductor_config

    cls = get_algorithm(algo)
    seeds = [0, 1, 2]
    options = {"learner.compile": "true"} if compiled else {}
    vector = SeedVector.from_configs(cls, [build_config(algo, CASES[algo][0], dict(CASES[algo][1], seed=str(s), **options)) for s in seeds])
    # each separate run keeps its own process stream between its steps, from where its own build left it
    separate, streams = [], []
    for s in seeds:
        separate.append(cls(config=_config(algo, s)))
        streams.append(torch.get_rng_state())

    def advance(i: int, until: int) -> None:
        torch.set_rng_state(streams[i])
        while separate[i].steps() < until:
            separate[i].train_step()
        streams[i] = torch.get_rng_state()

    checks = {}
    for until, tolerance in ((150, 1e-5), (300, 0.1)):  # 50 and 200 updates after learning_starts=100
        with inductor_config.patch(fallback_random=True):
            while vector.steps() < until:
                vector.train_step()
        for i in range(len(seeds)):
            advance(i, until)
            assert separate[i].learner.num_updates == vector.agents[i].learner.num_updates
            checks[(until, i)] = _relative_difference(separate[i], vector.agents[i])
            assert checks[(until, i)] < tolerance, (algo, until, seeds[i], checks[(until, i)])
    if compiled:
        assert {opt for opt, _ in vector.learner._gradients} >= ({"q"} if algo == "dqn" else {"critic", "actor"})
    assert _relative_difference(separate[0], separate[1]) > 0.3  # what a different stream looks like
    for i in range(len(seeds)):  # the buffers hold the same transitions (to float rounding in the actions)
        a, b = separate[i].buffer, vector.agents[i].buffer
        assert len(a) == len(b)
        if hasattr(vector.agents[i], "model_buffer"):  # the Dyna loop: the same model fits and rollouts
            assert vector.agents[i].model_fits == separate[i].model_fits == 5
            assert 0 < len(vector.agents[i].model_buffer) == len(separate[i].model_buffer)
    vector.close()
    for agent in separate:
        agent.close()



def test_vectorised_dqn_seeds_value_their_rounds_ahead():
    """Each seed's learner holds views of the stacked weights, so each seed values its round's V'(s') in one pass of
    its own target network, as its separate run does (the test above holds the two to 1e-5)."""
    cls = get_algorithm("dqn")
    vector = SeedVector.from_configs(cls, [_config("dqn", s) for s in (0, 1)])
    seen, update = [], vector.learner.update

    def recording(batch):
        seen.append(None if batch.next_value is None else tuple(batch.next_value.shape))
        return update(batch)

    vector.learner.update = recording
    while vector.steps() < 120:
        vector.train_step()
    assert len(seen) == 22 and set(seen) == {(2, 64)}, seen  # rounds of 2 at steps 100, 102, ..., 120
    vector.close()

def test_bf16_seeds_keep_every_layer_in_bf16_and_follow_their_separate_runs():
    """vmap splits a linear layer into a matmul and an add, and autocast left the fp32 bias to the add, which turned
    every activation after it back into fp32 (8 bf16 SAC seeds ran 30% slower for it): the actor's nn.Linear layers
    and the critics' ensemble layers must both stay bf16 under the map, and each seed still follows its own run."""
    cls = get_algorithm("sac")

    def config(seed: int):
        return build_config("sac", "Pendulum-v1", dict(SMALL, seed=str(seed), **{"learner.precision": "bf16"}))

    vector = SeedVector.from_configs(cls, [config(0), config(1)])
    separate, streams = [], []
    for s in (0, 1):
        separate.append(cls(config=config(s)))
        streams.append(torch.get_rng_state())
    while vector.steps() < 150:  # 50 updates
        vector.train_step()
    for i in range(2):
        torch.set_rng_state(streams[i])
        while separate[i].steps() < 150:
            separate[i].train_step()
        # bf16 rounds differently in a batched matmul: 0.025 and 0.007 measured, against 1.76 between the two seeds
        assert _relative_difference(separate[i], vector.agents[i]) < 0.05
    # under the map every layer's output is bf16, thin ones included: a thin layer's batched fp32 matmul is slow there
    layers = [m for module in vector.learner.modules.values() for m in module.modules() if isinstance(m, (torch.nn.Linear, EnsembleLinear))]
    seen = []
    hooks = [m.register_forward_hook(lambda module, args, out: seen.append(out.dtype)) for m in layers]
    vector.learner.update(stack_fields([next(agent.round_batches(1)) for agent in vector.agents]))
    for hook in hooks:
        hook.remove()
    assert len(seen) == 15 and set(seen) == {torch.bfloat16}, seen  # 3 layers x (critic, target, actor on s'; actor, critic)
    vector.close()
    for agent in separate:
        agent.close()


BOTH = ("CartPole-v1", "Pendulum-v1")  # categorical and Gaussian policies
ON_POLICY = {
    # PPO: 8 minibatch gradient steps per iteration (2 epochs x 4 minibatches of 32 over 2 envs x 64 steps)
    "ppo": ({"n_steps": "64", "learner.batch_size": "32", "learner.n_epochs": "2"}, (6, 25), BOTH),
    # A2C: one gradient step per iteration (2 envs x 8 steps)
    "a2c": ({"n_steps": "8"}, (48, 200), BOTH),
    # REINFORCE with a learned baseline, one gradient step per iteration (2 envs x 32 steps). On Pendulum its
    # 200-step episodes give a Monte-Carlo return only every ~6 iterations and the value loss is in the
    # thousands: vectorised against separate measured 4e-8 at iteration 24 and 3e-3 at 48 (a separate run with
    # one weight moved by 1e-7 at iteration 8: 4e-5 at 48), so only CartPole is held to the tight bound.
    "reinforce": ({"n_steps": "32", "learner.baseline": "value"}, (48, 200), ("CartPole-v1",)),
}


@pytest.mark.parametrize("algo", sorted(ON_POLICY))
def test_on_policy_seed_i_of_a_vectorised_run_is_the_separate_run_with_seed_i(algo):
    """Held to 1e-3 after 48 gradient steps (a tiny-norm bias reached 2e-4 relative once in a PPO probe), the
    update's metrics too, and < 0.1 after 200 gradient steps."""
    cls = get_algorithm(algo)
    seeds = [0, 1, 2]
    overrides, (early, late), envs = ON_POLICY[algo]

    def config(seed, env):
        return build_config(algo, env, {"quiet": "true", "seed": str(seed), "n_envs": "2", "learner.hidden_sizes": "[64,64]", **overrides})

    for env in envs:
        vector = SeedVector.from_configs(cls, [config(s, env) for s in seeds])
        separate, streams = [], []
        for s in seeds:
            separate.append(cls(config=config(s, env)))
            streams.append(torch.get_rng_state())
        for iteration in range(1, late + 1):
            vector.train_step()
            for i in range(len(seeds)):
                torch.set_rng_state(streams[i])
                separate[i].train_step()
                streams[i] = torch.get_rng_state()
            if iteration in (early, late):
                for i in range(len(seeds)):
                    difference = _relative_difference(separate[i], vector.agents[i])
                    assert difference < (1e-3 if iteration == early else 0.1), (env, iteration, seeds[i], difference)
                    for key, value in separate[i]._last_metrics.items():
                        if iteration == early:
                            assert abs(float(value) - float(vector.agents[i]._last_metrics[key])) <= 1e-3 * max(1.0, abs(float(value))), key
        assert _relative_difference(separate[0], separate[1]) > 0.3
        vector.close()


def _cli(*args) -> dict:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    assert code == 0, out.getvalue()
    return json.loads(out.getvalue().strip().splitlines()[-1])


def _final_state(path):
    from dynarl.run.rundir import RunDir

    return RunDir.open(path).load_latest()[2]


def _straight_and_resumed(algo: str, tmp_path, *overrides: str) -> None:
    """Seeds 0-1 trained to 300 steps straight, and to 150 then resumed to 300: every tensor of every checkpointed
    part (weights, Adam moments, buffers, models), the RNG state and the update count are the same."""
    common = [algo, "--env", "Pendulum-v1", "--seeds", "0-1", "learning_starts=100", "learner.hidden_sizes=[64,64]", "batch_size=64",
              "eval_every=150", "checkpoint_every=150", "eval_episodes=1", "quiet=true", *overrides]
    straight = _cli("train", *common, "--steps", "300", "--out", str(tmp_path / "straight"))
    _cli("train", *common, "--steps", "150", "--out", str(tmp_path / "resumed"))
    summary = _cli("resume", str(tmp_path / "resumed"), "--steps", "300")
    assert summary["seeds"] == [0, 1] and len(summary["eval_return_per_seed"]) == 2
    assert summary["eval_return_per_seed"] == straight["eval_return_per_seed"]
    for seed in (0, 1):
        assert summary["runs"][seed]["gradient_steps"] == straight["runs"][seed]["gradient_steps"] == 201
        a, b = _final_state(tmp_path / "straight" / f"s{seed}"), _final_state(tmp_path / "resumed" / f"s{seed}")
        assert a["parts"]["learner"]["num_updates"] == b["parts"]["learner"]["num_updates"] == 201
        flat_a, flat_b = _flatten(a["parts"]), _flatten(b["parts"])
        assert flat_a.keys() == flat_b.keys() and any("/learner/optimizers/" in key for key in flat_a)
        for key in flat_a:
            assert torch.equal(flat_a[key], flat_b[key]), (seed, key)
        assert torch.equal(a["rng"]["torch"]["cpu"], b["rng"]["torch"]["cpu"])


def test_vectorised_td3_resumes_its_policy_delay_where_it_stopped(tmp_path):
    """TD3 updates its actor on every second update by the update count: a resumed vector that restarted the count
    would shift the delay (it once did, and its returns drifted from the straight run's)."""
    _straight_and_resumed("td3", tmp_path)


def test_vectorised_mbpo_resumes_bit_identically_with_its_models_and_rollouts(tmp_path):
    _straight_and_resumed("mbpo", tmp_path, *MBPO_SMALL_CLI)


def test_vectorised_resume_is_bit_identical_and_checkpoints_are_a_separate_runs(tmp_path):
    _straight_and_resumed("sac", tmp_path)

    # seed 1's checkpoint is an ordinary SAC checkpoint: it loads alone, resumes alone, and equals the vector's seed 1
    sac = get_algorithm("sac")
    alone = sac.load(tmp_path / "straight" / "s1")
    assert alone.cfg.seed == 1 and alone.steps() == 300
    state = _final_state(tmp_path / "straight" / "s1")
    vector = SeedVector.from_states(sac, [_final_state(tmp_path / "straight" / "s0"), state])
    for name, module in alone.learner.modules.items():
        for p, q in zip(module.parameters(), vector.agents[1].learner.modules[name].parameters(), strict=True):
            assert torch.equal(p, q)
    obs = np.zeros((4, 3), dtype=np.float32)
    assert np.array_equal(alone.policy_action(obs), vector.agents[1].policy_action(obs))
    # and continuing it alone follows the vectorised seed 1 (the tight first-50-updates tolerance)
    torch.set_rng_state(state["rng"]["torch"]["cpu"])
    while alone.steps() < 350:
        alone.train_step()
    while vector.steps() < 350:
        vector.train_step()
    assert _relative_difference(alone, vector.agents[1]) < 1e-5
    summary = _cli("resume", str(tmp_path / "straight" / "s0"), "--steps", "350")  # one seed of a seeds folder resumes alone
    assert summary["env_steps"] == 350


def _flatten(tree, prefix=""):
    out = {}
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}/{k}"))
    elif isinstance(tree, (list, tuple)):
        for k, v in enumerate(tree):
            out.update(_flatten(v, f"{prefix}/{k}"))
    return out


def test_bad_seed_requests_are_refused_in_one_line_and_nothing_is_overwritten(tmp_path, capsys):
    common = ["sac", "--env", "Pendulum-v1", "learning_starts=50", "learner.hidden_sizes=[32]", "eval_episodes=1", "quiet=true", "--steps", "60"]
    _cli("train", *common, "--seeds", "0-1", "--out", str(tmp_path / "runs"))
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*") if p.is_file()}
    assert main(["train", *common, "--seeds", "1-2", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "overlap existing runs" in err and "nothing was changed" in err
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*") if p.is_file()} == before
    assert not (tmp_path / "runs" / "s2").exists()
    assert main(["eval", str(tmp_path / "runs")]) == 2  # the seeds folder itself is not one run: say which to give
    assert "folder of vectorised seeds" in capsys.readouterr().err
    assert main(["train", "trpo", "--env", "Pendulum-v1", "--seeds", "0-1", "--out", str(tmp_path / "trpo")]) == 2
    err = capsys.readouterr().err
    assert "does not train with vectorised seeds" in err and "a2c, ddpg" in err and "sac, td3" in err and not (tmp_path / "trpo").exists()
    mve = ["train", "mbpo", "--env", "Pendulum-v1", "--seeds", "0-1", "--steps", "60", "--out", str(tmp_path / "mve"), "learning_starts=50", "mve_horizon=2", *MBPO_SMALL_CLI]
    assert main(mve) == 2
    assert "value expansion and vectorised seeds do not combine yet" in capsys.readouterr().err and not (tmp_path / "mve").exists()
    assert main(["train", *common, "--seed", "3", "--seeds", "0-1", "--out", str(tmp_path / "both")]) == 2
    assert "not both" in capsys.readouterr().err
    for bad in ("a-b", "3,3", ""):
        with pytest.raises(ConfigError):
            parse_seeds(bad)
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]


def test_python_api_trains_seeds_with_and_without_run_folders(tmp_path):
    import dynarl

    vector = dynarl.SeedVector.make("td3", "Pendulum-v1", seeds=[3, 5], learning_starts=50, quiet=True, eval_every=60, eval_episodes=1,
                                    **{"learner.hidden_sizes": (32,)})
    vector.learn(60)  # no folders
    assert [a.cfg.seed for a in vector.agents] == [3, 5] and vector.steps() == 60
    vector.learn(80, out=tmp_path / "seeds")
    vector.learn(100, out=tmp_path / "seeds")  # its own folder: continued, not refused
    assert json.loads((tmp_path / "seeds" / "seeds.json").read_text())["seeds"] == [3, 5]
    for seed in (3, 5):
        alone = dynarl.load(tmp_path / "seeds" / f"s{seed}")
        assert alone.cfg.seed == seed and alone.steps() == 100
    # `compare DIR/s*` also matches seeds.json: it stands for the seeds' folders, each listed once
    from dynarl.run.seeds import expand_run_dirs

    root = tmp_path / "seeds"
    assert expand_run_dirs(sorted(root.glob("s*"))) == [root / "s3", root / "s5"]
    assert expand_run_dirs([root]) == [root / "s3", root / "s5"]
    _cli_status = main(["compare", str(root), "--reps", "200", "--out", str(tmp_path / "cmp")])
    assert _cli_status == 0 and "td3 Pendulum-v1 | 2 |" in (tmp_path / "cmp" / "results.md").read_text()


def test_sigint_checkpoints_every_seed_and_the_seeds_resume_together(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "seeds"
    cmd = [sys.executable, "-m", "dynarl.cli", "train", "sac", "--env", "Pendulum-v1", "--seeds", "0-1", "--steps", "100000", "--out", str(out),
           "learning_starts=50", "learner.hidden_sizes=[32]", "batch_size=32", "checkpoint_every=100", "eval_every=100000", "eval_episodes=1", "quiet=true"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list((out / "s1" / "checkpoints").glob("step_*.safetensors")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "every seed's checkpoint saved" in err and f"dynarl resume {out}" in err
    steps = [max(int(p.stem.split("_")[1]) for p in (out / f"s{s}" / "checkpoints").glob("step_*.safetensors")) for s in (0, 1)]
    assert steps[0] == steps[1] and steps[0] >= 100  # both seeds saved the step the signal arrived in
    summary = _cli("resume", str(out), "--steps", str(steps[0] + 20))
    assert [r["env_steps"] for r in summary["runs"]] == [steps[0] + 20] * 2


def test_a_signal_during_one_seeds_logging_still_checkpoints_every_seed(tmp_path, monkeypatch):
    """SIGTERM lands while seed 0's after-step work runs (as it can while a metrics row is written): the loop must
    not stop with seed 1 saved and seed 0 not. Every seed saves the next step, and the message says so."""
    import os
    import signal

    import dynarl
    from dynarl.errors import RunInterrupted
    from dynarl.run.runner import Runner

    real = Runner.after_step

    def after_step(self, before, stop_signum=0):
        if self.algo.cfg.seed == 0 and self.algo.steps() == 70:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, before, stop_signum)

    monkeypatch.setattr(Runner, "after_step", after_step)
    vector = dynarl.SeedVector.make("sac", "Pendulum-v1", seeds=[0, 1], learning_starts=50, batch_size=32, quiet=True, eval_every=10**6,
                                    checkpoint_every=10**6, **{"learner.hidden_sizes": (32,)})
    with pytest.raises(RunInterrupted, match="SIGTERM at step 71 of 200; every seed's checkpoint saved"):
        vector.learn(200, out=tmp_path / "seeds")
    saved = [[p.name for p in (tmp_path / "seeds" / f"s{s}" / "checkpoints").glob("step_*.safetensors")] for s in (0, 1)]
    assert saved == [["step_000000071.safetensors"]] * 2
