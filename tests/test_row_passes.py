"""Large no-graph forwards in row passes (dynarl.nn.mlp.in_row_passes) and CQL's critic passes give the same
numbers as one pass over all rows: the passes are a cache layout, never a change of method."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import dynarl.learners.cql as cql
import dynarl.nn.mlp as mlp
from dynarl.nn.ensemble import EnsembleNet
from dynarl.nn.policies import TanhGaussianActor


def _one_pass(monkeypatch):
    monkeypatch.setattr(mlp, "SINGLE_PASS_BYTES", 1 << 40)


def _count_passes(monkeypatch):
    calls = []
    real = torch.cat
    monkeypatch.setattr(mlp.torch, "cat", lambda parts, dim: calls.append(len(parts)) or real(parts, dim))
    return calls


def test_ensemble_rows_above_the_bound_run_in_passes_with_identical_outputs(monkeypatch):
    torch.manual_seed(0)
    net = EnsembleNet(4, 7, (200, 200), 9)
    x = torch.randn(3000, 7)  # shared input: 3000 rows x 200 floats per member = 2.4 MB > 1 MB
    elites = torch.tensor([0, 2, 3])
    with torch.no_grad():
        calls = _count_passes(monkeypatch)
        split, split_elites = net(x), net(x, elites)
        assert calls == [6, 6]  # 3000 rows in passes of 512
        small = net(x[:1000])  # 0.8 MB: one pass
        assert calls == [6, 6]
        monkeypatch.undo()
        _one_pass(monkeypatch)
        assert torch.equal(split, net(x)) and torch.equal(split_elites, net(x, elites)) and torch.equal(small, net(x[:1000]))
    with torch.enable_grad():  # with a graph: always one pass
        assert torch.equal(net(x).detach(), split)


def test_actor_rows_in_passes_give_the_same_actions_and_log_probs(monkeypatch):
    torch.manual_seed(0)
    actor = TanhGaussianActor(5, 2, (256, 256))
    obs = torch.randn(2500, 5)
    with torch.no_grad():
        torch.manual_seed(1)
        split = actor(obs)
        _one_pass(monkeypatch)
        torch.manual_seed(1)
        whole = actor(obs)
    assert torch.equal(split[0], whole[0]) and torch.equal(split[1], whole[1])


@pytest.mark.parametrize("batch", [256, 100])
def test_cql_critic_passes_give_the_single_pass_logsumexp(monkeypatch, batch):
    box = gym.spaces.Box(-1, 1, (3,))
    learner = cql.CQLLearner(cql.CQLLearnerConfig(hidden_sizes=(64, 64)), box, box, torch.device("cpu"))
    obs, next_obs = torch.randn(batch, 3), torch.randn(batch, 3)
    act, log_density = learner.cql_proposals(obs, next_obs)
    split = learner.cql_logsumexp(obs, act, log_density)
    monkeypatch.setattr(cql, "CRITIC_ROWS_PER_PASS", 1 << 30)
    whole = learner.cql_logsumexp(obs, act, log_density)
    assert split.shape == (2, batch)
    torch.testing.assert_close(split, whole, rtol=1e-6, atol=1e-6)
