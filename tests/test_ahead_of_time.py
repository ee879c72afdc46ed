"""AheadOfTime: a learner's gradient compiled ahead of time, one variant per kind of input, with a fallback."""

from __future__ import annotations

import random

import gymnasium as gym
import torch

from dynarl.data.batch import Batch
from dynarl.learners.base import AheadOfTime
from dynarl.learners.dqn import DQNLearner, DQNLearnerConfig


def _affine(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.relu(x @ w) + 1


def test_each_kind_of_input_gets_its_own_variant_and_the_eager_result():
    f = AheadOfTime(_affine)
    w = torch.randn(3, 5)
    for rows in (4, 4, 7, 4, 7):
        x = torch.randn(rows, 3)
        torch.testing.assert_close(f(x, w), _affine(x, w))
    assert len(f._variants) == 2 and f._per_call is None  # one graph per batch shape, none on the per-call path
    x = torch.randn(4, 3, dtype=torch.float64)  # another dtype fails both variants' guards: a third one
    torch.testing.assert_close(f(x, w.double()), _affine(x, w.double()))
    assert len(f._variants) == 3


def _with_graph_break(x: torch.Tensor) -> torch.Tensor:
    y = x * 2
    print("", end="")  # a graph break: no whole graph for the ahead-of-time compile
    return y + 1


def test_a_function_with_a_graph_break_runs_on_the_per_call_path():
    f = AheadOfTime(_with_graph_break)
    x = torch.randn(5)
    torch.testing.assert_close(f(x), x * 2 + 1)
    torch.testing.assert_close(f(x), x * 2 + 1)
    assert f._variants == [] and f._per_call is not None


def test_compiling_a_bf16_gradient_leaves_the_python_random_stream_alone():
    """Where torch cannot key its autograd cache (an autocast region in the graph) its ahead-of-time compile keys
    the entry by ``random.random()``: a draw from the user's seeded stream, and after ``random.seed(0)`` the same key
    in every process, so a second program's graph loaded the first one's from the disk cache (seen here as a
    crash). That cache is off for these compiles: no draw, and no shared key."""
    torch.manual_seed(0)
    cfg = DQNLearnerConfig(hidden_sizes=(32, 32), precision="bf16", compile=True)
    learner = DQNLearner(cfg, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), torch.device("cpu"))
    b = Batch(obs=torch.randn(8, 3), act=torch.randint(0, 2, (8,)).float(), reward=torch.randn(8), next_obs=torch.randn(8, 3), terminated=torch.zeros(8), truncated=torch.zeros(8))
    random.seed(0)
    state = random.getstate()
    for _ in range(2):
        learner.update(b)
    assert random.getstate() == state
    (gradient,) = learner._gradients.values()
    assert len(gradient._variants) == 1 and gradient._per_call is None  # the update ran ahead-of-time compiled


def test_a_sac_update_compiled_ahead_of_time_reads_alpha_and_the_targets_live():
    """Both of SAC's gradients run ahead-of-time compiled, and they read what changes between updates (alpha, set
    here to a very different value before each update, the target critic, the weights) as inputs: the compiled
    updates give the eager updates' losses (inductor drawing its random numbers as eager torch does)."""
    import torch._inductor.config as inductor_config

    from dynarl.learners.sac import SACLearner, SACLearnerConfig

    box = lambda n: gym.spaces.Box(-1, 1, (n,))  # noqa: E731
    torch.manual_seed(0)
    b = Batch(obs=torch.randn(32, 3), act=torch.rand(32, 2) * 2 - 1, reward=torch.randn(32), next_obs=torch.randn(32, 3), terminated=torch.zeros(32), truncated=torch.zeros(32))
    learners = []
    for compile_ in (False, True):
        torch.manual_seed(0)
        learners.append(SACLearner(SACLearnerConfig(hidden_sizes=(16, 16), compile=compile_), box(3), box(2), torch.device("cpu")))
    eager, compiled = learners
    with inductor_config.patch(fallback_random=True):
        for i in range(4):
            for learner in learners:
                with torch.no_grad():
                    learner.log_alpha.fill_(i - 1.5)
            torch.manual_seed(i)
            m_eager = eager.update(b)
            torch.manual_seed(i)
            m_compiled = compiled.update(b)
            for k in ("actor_loss", "critic_loss"):
                torch.testing.assert_close(m_compiled[k], m_eager[k], rtol=1e-4, atol=1e-5)
    assert {k: (len(g._variants), g._per_call is None) for k, g in compiled._gradients.items()} == {("critic", "critic_loss"): (1, True), ("actor", "actor_loss"): (1, True)}
