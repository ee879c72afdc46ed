"""One test matrix over every registered algorithm x every space kind it supports (design.md section 8).

Registering an algorithm is enough to be covered: the spaces come from its ``action_spaces`` /
``observation_spaces`` declaration, and the tiny budget below is applied to whichever of these config
keys it has. Each case checks: construct, learn a few steps, predict shapes and bounds, save/load round
trip, resume from a run checkpoint equal to an uninterrupted run, same-seed determinism, and the one-line
error for a space it does not support.
"""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
from state_compare import assert_same_state

import dynarl
from dynarl.algos import ALGORITHMS
from dynarl.config import flat_keys
from dynarl.envs.spaces import BOX, DISCRETE, IMAGE, MULTI_DISCRETE
from dynarl.errors import EnvError

# (action kind, observation kind) -> a small real task with those spaces
ENVS = {
    (BOX, BOX): "Pendulum-v1",
    (DISCRETE, BOX): "CartPole-v1",
    (DISCRETE, DISCRETE): "FrozenLake-v1",
}
# algorithms that plan with a board game's true rules run on one (beside any ENVS case their spaces give them)
BOARD_GAME = "dynarl/TicTacToe-v0"
BOARD_GAME_ALGOS = ("alphazero", "mcts")
STEPS = 120  # env steps of the short runs (gradient steps for offline algorithms)

# the smallest sensible settings, applied where an algorithm's config has the key
TINY = {
    "quiet": True, "eval_episodes": 1, "eval_every": 10_000, "log_every": 60, "checkpoint_every": 60,
    "learning_starts": 40, "batch_size": 16, "buffer_size": 5_000, "learner.hidden_sizes": (16, 16), "learner.batch_size": 16,
    "learner.vf_batch_size": 16, "learner.n_epochs": 2, "n_envs": 2, "n_steps": 30, "updates_per_step": 1,
    "model.members": 2, "trainer.num_elites": 1, "trainer.max_epochs": 2, "trainer.batch_size": 16,
    "planner.population_size": 16, "planner.horizon": 4, "planner.num_iterations": 2, "planner.particles": 2, "retrain_every": 40,
    "epoch_length": 40, "model_train_freq": 40, "rollout_freq": 40, "rollout_length": 2, "rollout_batch_size": 32, "bc.hidden_sizes": (8,), "bc_epochs": 1,
    "n_collect": 60, "n_inner": 1, "n_model": 2, "n_policy": 1, "model_envs": 4, "model_horizon": 5, "model_hidden_sizes": (16,), "H": 2, "model_batch_size": 8,
    "epsilon_decay_steps": 60, "planning_steps": 5, "num_simulations": 4, "rollout_depth": 5, "n_games": 4, "achieved_goal_dims": (0,), "desired_goal_dims": (1,),
}  # fmt: skip


def _tiny(cls, env: str, **extra) -> dict:
    keys = set(flat_keys(cls.config_cls()))
    data = {"dataset": _dataset_id(env)} if "dataset" in keys else {}  # offline algorithms learn from the env's random dataset
    if cls.name in ("bc", "gcbc", "dagger"):  # they draw by batch_size and refuse BC's learner.batch_size, which only POPLIN reads
        keys.discard("learner.batch_size")
    return {**{k: v for k, v in TINY.items() if k in keys}, **data, **extra}


def _dataset_id(env: str) -> str:
    return f"matrix/{env.split('-')[0].lower()}/random-v0"


@pytest.fixture(scope="module", autouse=True)
def matrix_datasets(tmp_path_factory):
    """A small uniform-random Minari dataset per task in ENVS, for the offline algorithms."""
    import os

    from dynarl.data.datasets import write_dataset
    from dynarl.run.collect import random_behavior, rollout_episodes

    root = tmp_path_factory.mktemp("datasets")
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    for env_id in ENVS.values():
        env = gym.make(env_id)
        episodes = rollout_episodes(env, random_behavior(env.action_space, np.random.default_rng(0)), 3, 0)
        write_dataset(_dataset_id(env_id), episodes, env, algorithm_name="random", ref_min_score=-1.0, ref_max_score=1.0)
    yield root
    if before is None:
        del os.environ["MINARI_DATASETS_PATH"]
    else:
        os.environ["MINARI_DATASETS_PATH"] = before


def _cases():
    for name, cls in sorted(ALGORITHMS.items()):
        for (act, obs), env in ENVS.items():
            if act in cls.action_spaces and obs in cls.observation_spaces:
                yield pytest.param(name, env, id=f"{name}-{env}")
        if name in BOARD_GAME_ALGOS:
            yield pytest.param(name, BOARD_GAME, id=f"{name}-{BOARD_GAME}")


CASES = list(_cases())


def _unsupported(cls) -> str | None:
    for (act, obs), env in ENVS.items():
        if act not in cls.action_spaces or obs not in cls.observation_spaces:
            return env
    return None


def test_every_algorithm_has_a_case():
    covered = {c.values[0] for c in CASES}
    assert covered == set(ALGORITHMS), f"no task in ENVS has the spaces of {sorted(set(ALGORITHMS) - covered)}: add one"


def _check_action(env: gym.Env, act) -> None:
    space = env.action_space
    if isinstance(space, gym.spaces.Box):
        assert np.shape(act) == space.shape and np.all(act >= space.low - 1e-6) and np.all(act <= space.high + 1e-6), act
    else:
        assert space.contains(np.int64(act)), act


@pytest.mark.parametrize("name,env", CASES)
def test_learn_predict_save_load(name, env, tmp_path):
    cls = ALGORITHMS[name]
    agent = cls(env, **_tiny(cls, env))
    agent.learn(STEPS)
    assert agent.steps() >= STEPS and agent.all_finite()
    obs, _ = agent.eval_env.reset(seed=0)
    act, state = agent.predict(obs, deterministic=True)
    assert state is None
    _check_action(agent.eval_env, act)
    batch, _ = agent.predict(np.stack([obs, obs]), deterministic=True)
    assert len(batch) == 2
    _check_action(agent.eval_env, batch[1])
    agent.save(tmp_path / "agent")
    loaded = dynarl.load(tmp_path / "agent")
    assert type(loaded) is cls and loaded.steps() == agent.steps()
    again, _ = loaded.predict(obs, deterministic=True)
    first, _ = agent.predict(obs, deterministic=True)
    np.testing.assert_array_equal(again, first)


@pytest.mark.parametrize("name,env", CASES)
def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(name, env, tmp_path):
    cls = ALGORITHMS[name]
    whole = cls(env, **_tiny(cls, env)).learn(STEPS, run_dir=tmp_path / "whole")
    checkpoints = sorted((tmp_path / "whole" / "checkpoints").glob("step_*.safetensors"))
    first = checkpoints[0]  # a checkpoint before the end, written by the run itself
    assert int(first.stem.split("_")[1]) < whole.steps()
    resumed = cls.load(first).learn(STEPS)
    assert_same_state(whole, resumed)


@pytest.mark.parametrize("name,env", CASES)
def test_same_seed_same_run(name, env):
    cls = ALGORITHMS[name]
    a = cls(env, **_tiny(cls, env, seed=3)).learn(STEPS // 2)
    b = cls(env, **_tiny(cls, env, seed=3)).learn(STEPS // 2)
    assert_same_state(a, b)


@pytest.mark.parametrize("name", sorted(n for n, c in ALGORITHMS.items() if _unsupported(c)))
def test_an_unsupported_space_is_a_one_line_error(name):
    cls = ALGORITHMS[name]
    env = _unsupported(cls)
    with pytest.raises(EnvError) as e:
        cls(env, **_tiny(cls, env))
    msg = str(e.value)
    assert name.upper() in msg and env in msg and "use " in msg and "\n" not in msg


def test_the_space_kinds_are_the_ones_algorithms_declare():
    declared = set(itertools.chain.from_iterable(c.action_spaces + c.observation_spaces for c in ALGORITHMS.values()))
    assert declared <= {BOX, DISCRETE, IMAGE, MULTI_DISCRETE}
