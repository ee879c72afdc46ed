"""MOPO and COMBO: the offline Dyna loop's rollouts, the penalised reward, COMBO's split of CQL's regulariser,
the diagnostics and the bad inputs (fast; the learning checks are in test_mopo_learning.py)."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
import torch

from dynarl.algos.mopo import COMBO, MOPO
from dynarl.data.batch import Batch
from dynarl.data.datasets import DatasetError, write_dataset
from dynarl.data.replay import ReplayBuffer
from dynarl.errors import ConfigError
from dynarl.learners.base import ActorCriticLearner
from dynarl.models.model_env import ModelEnv
from dynarl.run.collect import random_behavior, rollout_episodes

TINY = {
    "quiet": True, "eval_episodes": 1, "eval_every": 10_000, "batch_size": 16, "learner.hidden_sizes": (16, 16),
    "model.members": 3, "model.hidden_sizes": (16, 16), "model.weight_decay": (0.0, 0.0, 0.0), "trainer.num_elites": 2,
    "trainer.max_epochs": 3, "trainer.batch_size": 32, "rollout_batch_size": 40, "rollout_length": 3, "rollout_freq": 10,
}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def datasets(tmp_path_factory):
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(tmp_path_factory.mktemp("mopo-data"))
    env = gym.make("Pendulum-v1")
    episodes = rollout_episodes(env, random_behavior(env.action_space, np.random.default_rng(0)), 2, 0)
    write_dataset("t/pendulum/random-v0", episodes, env, algorithm_name="random", ref_min_score=-1500.0, ref_max_score=-150.0)
    short = gym.make("Pendulum-v1", max_episode_steps=3)  # 3 transitions: 20% of them is no holdout row at all
    write_dataset("t/pendulum/tiny-v0", rollout_episodes(short, random_behavior(short.action_space, np.random.default_rng(0)), 1, 0), short, algorithm_name="random")
    yield
    if before is None:
        del os.environ["MINARI_DATASETS_PATH"]
    else:
        os.environ["MINARI_DATASETS_PATH"] = before


def _fitted(cls, **overrides):
    agent = cls(dataset="t/pendulum/random-v0", seed=0, **{**TINY, **overrides})
    agent._record_fit(agent.trainer.fit(**agent._model_data()))
    return agent


def _mbpo_rollouts(agent) -> ReplayBuffer:
    """What MBPO's rollouts (no reward transform) give from the same dataset states with the same random streams."""
    from dynarl.sources.model_rollouts import ModelRollouts

    g = torch.Generator().manual_seed(0)
    g.set_state(agent.rollout_generator.get_state())
    menv = ModelEnv(agent.model, termination_fn=agent.termination_fn, propagation=agent.cfg.propagation, generator=g)
    out = ReplayBuffer(10_000, agent.obs_dim, agent.act_dim, agent.device)
    ModelRollouts(menv, agent.dataset, g, "policy").generate(agent.cfg.rollout_batch_size, agent.rollout_length, lambda o: agent.learner.act(o, deterministic=False), out)
    return out


def _rollouts_both_ways(agent):
    rng = torch.get_rng_state()
    mbpo = _mbpo_rollouts(agent)
    torch.set_rng_state(rng)  # the policy samples from the global stream: replay it
    agent._generate_rollouts()
    return mbpo, agent.model_buffer


@pytest.mark.parametrize("penalty", ["aleatoric", "disagreement", "tv_bound"])
def test_lambda_zero_gives_mbpo_rollouts_on_dataset_states_exactly(penalty):
    mbpo, mopo = _rollouts_both_ways(_fitted(MOPO, penalty=penalty, penalty_coef=0.0))
    assert len(mopo) == len(mbpo) > 0
    for k in ("obs", "act", "reward", "next_obs", "terminated", "truncated"):
        assert torch.equal(mopo.storage[k][: len(mopo)], mbpo.storage[k][: len(mbpo)]), k


def test_the_penalised_reward_is_r_minus_lambda_u_with_u_by_hand():
    agent = _fitted(MOPO, penalty="aleatoric", aleatoric_norm="std", penalty_coef=2.5)
    mbpo, mopo = _rollouts_both_ways(agent)
    n = len(mopo)
    obs, act = mopo.storage["obs"][:n], mopo.storage["act"][:n]
    # the same member choices and draws as MBPO's rollouts; MOPO's come from one pass of every member (it needs
    # them for u), MBPO's from each elite's own rows, so they may differ in the matmuls' last bits
    torch.testing.assert_close(obs, mbpo.storage["obs"][:n], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(mopo.storage["next_obs"][:n], mbpo.storage["next_obs"][:n], rtol=1e-6, atol=1e-6)
    pred = agent.model.predict(obs, act)  # every member on the same rows
    var = torch.cat([pred["next_obs_var"], pred["reward_var"].unsqueeze(-1)], -1)  # MOPO's code: the full output
    u = torch.stack([var[i].sum(-1).sqrt() for i in range(var.shape[0])]).max(0).values  # max_i ||sigma_i||_2
    torch.testing.assert_close(mopo.storage["reward"][:n], mbpo.storage["reward"][:n] - 2.5 * u)
    assert agent._diagnostics["penalty_mean"] == pytest.approx(float(u.mean()), rel=1e-5)
    assert agent._diagnostics["penalty_max"] == pytest.approx(float(u.max()), rel=1e-5)


def test_bf16_rollouts_and_penalty_stay_close_to_fp32():
    """rollout_precision=bf16 runs the rollouts and the penalty through the bf16 planning model and the policy under
    bf16 autocast; from the same fit and streams the penalty, the first actions and the first next states agree
    with fp32 to bf16's precision."""
    wide = {"learner.hidden_sizes": (32, 32)}  # a 32 x 32 layer runs in bf16; layers of at most 16 units stay fp32 under autocast
    fp32, bf16 = _fitted(MOPO, penalty_coef=1.0, **wide), _fitted(MOPO, penalty_coef=1.0, rollout_precision="bf16", **wide)
    assert bf16.rollout_model is not bf16.model and fp32.rollout_model is fp32.model
    obs, act = fp32.dataset.obs_act(torch.arange(64))
    torch.testing.assert_close(bf16.uncertainty(obs, act), fp32.uncertainty(obs, act), rtol=0.03, atol=1e-3)
    for agent in (fp32, bf16):
        torch.manual_seed(1)
        agent._generate_rollouts()
    n = fp32.cfg.rollout_batch_size  # time-major: the first rows are every rollout's first step
    a, b = fp32.model_buffer.storage, bf16.model_buffer.storage
    assert torch.equal(a["obs"][:n], b["obs"][:n])
    # the policy's matmuls run in bf16 too: the same noise, the actions within bf16's precision but not identical
    torch.testing.assert_close(b["act"][:n], a["act"][:n], rtol=0.03, atol=0.03)
    assert not torch.equal(b["act"][:n], a["act"][:n])
    torch.testing.assert_close(b["next_obs"][:n], a["next_obs"][:n], rtol=0.03, atol=0.03)
    assert torch.isfinite(b["reward"][: len(bf16.model_buffer)]).all()


def test_mopo_diagnostics_hold_the_penalty_the_holdout_error_and_the_lower_bound():
    agent = MOPO(dataset="t/pendulum/random-v0", seed=0, **{**TINY, "eval_every": 20})
    agent.learn(20)
    m = agent.metrics()
    for key in ("model/penalty_mean", "model/penalty_p90", "model/model_holdout_mse", "model/model_return", "model/model_penalty_sum", "model/model_lower_bound", "time/seconds_rollout"):
        assert key in m and np.isfinite(m[key]), key
    assert m["model/penalty_p50"] <= m["model/penalty_p90"] <= m["model/penalty_p99"] <= m["model/penalty_max"]
    assert m["model/model_lower_bound"] == pytest.approx(m["model/model_return"] - agent.cfg.penalty_coef * m["model/model_penalty_sum"], rel=1e-6)
    assert agent.model_fits == 1  # fitted once on the dataset, never again


@pytest.mark.parametrize("rho_s", ["mix", "model"])
def test_combo_pushes_up_the_dataset_rows_and_down_at_rho_states(rho_s):
    agent = COMBO(dataset="t/pendulum/random-v0", seed=0, **{**TINY, "learner.rho_s": rho_s, "real_ratio": 0.25})
    learner = agent.learner
    n_real = learner.real_rows
    assert n_real == 4  # round(16 x 0.25): the first rows of every mixed batch are the dataset's
    batch = Batch(**{k: v for k, v in vars(agent.dataset.sample(16)).items() if k in ("obs", "act", "reward", "next_obs", "terminated", "truncated")})
    down = slice(n_real, None) if rho_s == "model" else slice(None)
    torch.manual_seed(5)
    loss, _ = learner.critic_loss(batch)
    # by hand: the Bellman term (the full MSE) over the whole mixed batch, plus beta (the soft maximum at the rho states minus
    # Q at the dataset's (s, a) rows only), drawn in the same order
    torch.manual_seed(5)
    bellman, _ = ActorCriticLearner.critic_loss(learner, batch)
    act, log_density = learner.cql_proposals(batch.obs[down], batch.next_obs[down])
    with torch.no_grad():
        q = learner.critic(batch.obs[down].repeat_interleave(act.shape[1], 0), act.reshape(-1, act.shape[-1])).view(2, -1, act.shape[1])
        soft_max = torch.logsumexp(q - log_density, dim=-1).mean(1)
        q_data = learner.critic(batch.obs[:n_real], batch.act[:n_real]).mean(1)
    torch.testing.assert_close(loss.detach(), 2 * bellman.detach() + learner.cfg.cql_alpha * (soft_max - q_data).sum())  # CQL's full MSE


def test_combo_learns_and_its_batches_mix_in_model_rows():
    agent = COMBO(dataset="t/pendulum/random-v0", seed=0, **TINY)
    agent.learn(12)
    assert len(agent.model_buffer) > 0 and agent.rollouts.added > 0
    m = agent.metrics()
    assert np.isfinite(m["cql_loss"]) and m["model/model_fits"] == 1


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"penalty_coef": -1.0}, "penalty_coef"),
        ({"rollout_length": 0}, "rollout_length"),
        ({"normalize_observations": True}, "normalize_observations"),
        ({"penalty": "epistemic"}, "penalty"),
        ({"rollout_precision": "bf16", "model.activation": "relu"}, "rollout_precision"),
    ],
)
def test_bad_mopo_config_is_a_clear_error(overrides, words):
    with pytest.raises(ConfigError, match=words):
        MOPO(dataset="t/pendulum/random-v0", **{**TINY, **overrides})


def test_combo_needs_dataset_rows_in_its_batches():
    with pytest.raises(ConfigError, match="real_ratio"):
        COMBO(dataset="t/pendulum/random-v0", **{**TINY, "real_ratio": 0.0})


def test_a_dataset_too_small_for_the_holdout_is_a_clear_error():
    with pytest.raises(DatasetError, match="too few to hold out"):
        MOPO(dataset="t/pendulum/tiny-v0", **TINY)
