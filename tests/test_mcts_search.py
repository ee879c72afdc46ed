"""The batched tree search (dynarl.planning.mcts) against the scalar reference (tests/mcts_reference.py) and
against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from mcts_reference import count_nodes, reference_search

from dynarl.errors import ConfigError
from dynarl.planning.mcts import RootOutput, SearchConfig, StepOutput, search, visit_policy

MOD = 2147483647.0
BACKENDS = ["compiled", "tensor"]  # numba kernels over numpy trees (the CPU default), torch ops over tensor trees (any device)


def toy_recurrent_fn(A: int, gamma: float = 0.9):
    """A deterministic tree: the embedding [h, depth, terminal depth] encodes the path by h' = (31 h + a + 1) mod p;
    rewards, values, prior logits and illegal actions (-inf) are fixed functions of h' computed exactly in float64
    (integer remainders), so batched and scalar calls return bit-identical numbers. The transition into depth >=
    terminal depth has discount 0; some nodes have every action illegal."""

    def fn(emb, action):
        h, depth, term = emb[:, 0], emb[:, 1], emb[:, 2]
        h2 = torch.remainder(h * 31 + action.to(h.dtype) + 1, MOD)
        d2 = depth + 1
        reward = torch.remainder(h2 * 7919, 1009) / 1009 - 0.5
        value = torch.remainder(h2 * 104729, 997) / 997 * 2 - 1
        j = torch.arange(A, dtype=h.dtype)
        logits = torch.remainder(h2[:, None] * (j * 2 + 3) * 7, 101) / 101 * 3
        illegal = (torch.remainder(h2[:, None] + j * 13, 7) == 0) | (torch.remainder(h2, 23) == 0)[:, None]
        discount = torch.where(d2 >= term, 0.0, gamma).to(h.dtype)
        return StepOutput(reward=reward, discount=discount, prior_logits=logits.masked_fill(illegal, -math.inf), value=value), torch.stack([h2, d2, term], 1)

    return fn


def toy_roots(A: int = 3):
    """Six trees whose episodes end at depths 1, 2, 3, 5, 4 and (in effect) never."""
    h0 = torch.tensor([5.0, 17, 123, 999, 77, 4242], dtype=torch.float64)
    terminal_depth = torch.tensor([1.0, 2, 3, 5, 4, 100], dtype=torch.float64)
    emb = torch.stack([h0, torch.zeros_like(h0), terminal_depth], 1)
    logits = torch.remainder(h0[:, None] * torch.arange(1, A + 1), 13).double() / 5
    value = torch.remainder(h0 * 3, 11) / 11
    return RootOutput(prior_logits=logits, value=value, embedding=emb)


@pytest.mark.parametrize("rule", ["puct", "uct"])
@pytest.mark.parametrize("two_player", [False, True])
@pytest.mark.parametrize("normalize_q", [True, False])
@pytest.mark.parametrize("masked_and_noisy", [False, True])
@pytest.mark.parametrize("max_depth", [None, 3])
@pytest.mark.parametrize("unvisited_value", ["zero", "parent"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_search_matches_the_scalar_reference_tree_by_tree(rule, two_player, normalize_q, masked_and_noisy, max_depth, unvisited_value, backend):
    A, sims = 3, 30
    root = toy_roots(A)
    fn = toy_recurrent_fn(A)
    B = root.value.shape[0]
    invalid = None
    if masked_and_noisy:
        invalid = torch.zeros(B, A, dtype=torch.bool)
        invalid[1, 0] = invalid[3, 2] = invalid[5, 1] = True
    config = SearchConfig(num_simulations=sims, rule=rule, two_player=two_player, normalize_q=normalize_q, max_depth=max_depth, unvisited_value=unvisited_value,
                          root_exploration_fraction=0.25 if masked_and_noisy else 0.0, dirichlet_alpha=0.3)
    result = search(root, fn, config, invalid_actions=invalid, generator=torch.Generator().manual_seed(3), backend=backend)
    assert result.visit_counts.dtype == torch.long and (result.visit_counts.sum(1) == sims).all()
    for b in range(B):
        visits, root_value, q, tree = reference_search(root.prior_logits[b], float(root.value[b]), root.embedding[b : b + 1], fn, config,
                                                       invalid=None if invalid is None else invalid[b], noise=result.root_noise[b])
        assert result.visit_counts[b].tolist() == visits, f"tree {b}"
        assert float(result.root_value[b]) == pytest.approx(root_value, abs=1e-12)
        assert result.q_values[b].tolist() == pytest.approx(q, abs=1e-12)
        assert int(result.num_nodes[b]) == count_nodes(tree)
    if invalid is not None:
        assert (result.visit_counts[invalid] == 0).all()
    # the trees are independent: each one searched alone gives the same tree (no per-tree state leaks across the batch)
    if not masked_and_noisy:
        for b in (0, 3, 5):
            alone = search(RootOutput(root.prior_logits[b : b + 1], root.value[b : b + 1], root.embedding[b : b + 1]), fn, config, backend=backend)
            assert torch.equal(alone.visit_counts[0], result.visit_counts[b])
            assert torch.equal(alone.children_index[0], result.children_index[b])
            assert float(alone.root_value[0]) == float(result.root_value[b])


def test_the_toy_batch_really_mixes_depths_terminals_and_illegal_children():
    """Guards the oracle test's power: in one batch the trees differ in depth and terminals, and -inf children exist."""
    root, fn = toy_roots(3), toy_recurrent_fn(3)
    result = search(root, fn, SearchConfig(num_simulations=30))
    depth_one = result.children_index[0, 0]
    assert (result.children_index[0, 1:] == -1).all()  # tree 0 ends at depth 1: only its root is expanded
    assert result.num_nodes[0] == 1 + (depth_one >= 0).sum() and (depth_one >= 0).sum() >= 2
    assert len(set(result.num_nodes.tolist())) >= 3
    assert (result.visit_counts.max(1).values < 30).all()  # no tree spends everything on one root child
    _, _, _, tree = reference_search(root.prior_logits[5], float(root.value[5]), root.embedding[5:6], fn, SearchConfig(num_simulations=30))
    nodes, illegal_seen = [tree], 0
    while nodes:
        node = nodes.pop()
        illegal_seen += 3 - len(node.prior)
        nodes.extend(node.children.values())
    assert illegal_seen > 0


def _two_armed_bandit(r0: float, r1: float):
    """Root with two terminal children: Q(root, a) = r_a whatever the simulation count."""

    def fn(emb, action):
        reward = torch.tensor([r0, r1], dtype=torch.float64)[action]
        zeros = torch.zeros_like(reward)
        return StepOutput(reward=reward, discount=zeros, prior_logits=torch.zeros(len(action), 2, dtype=torch.float64), value=zeros + 9.0), emb

    root = RootOutput(prior_logits=torch.zeros(1, 2, dtype=torch.float64), value=torch.zeros(1, dtype=torch.float64), embedding=torch.zeros(1, 1))
    return root, fn


@pytest.mark.parametrize("backend", BACKENDS)
def test_uct_choice_on_two_arms_matches_the_ucb1_formula_by_hand(backend):
    """UCT (001's Score, N(s) counting the root's own first visit): simulations 1 and 2 try the unvisited arms
    in order; then Q + c sqrt(ln N / n). With c = 1, r = (0.5, 0.3):
    sim 3: N = 3, n = (1, 1): 0.5 + sqrt(ln 3) = 1.548 > 0.3 + sqrt(ln 3) = 1.348 -> arm 0;
    sim 4: N = 4, n = (2, 1): 0.5 + sqrt(ln 4 / 2) = 1.333 < 0.3 + sqrt(ln 4) = 1.477 -> arm 1."""
    root, fn = _two_armed_bandit(0.5, 0.3)
    assert 0.5 + math.sqrt(math.log(3)) > 0.3 + math.sqrt(math.log(3))
    assert 0.5 + math.sqrt(math.log(4) / 2) < 0.3 + math.sqrt(math.log(4))
    expected = {1: [1, 0], 2: [1, 1], 3: [2, 1], 4: [2, 2]}
    for sims, counts in expected.items():
        config = SearchConfig(num_simulations=sims, rule="uct", c_uct=1.0, normalize_q=False)
        result = search(root, fn, config, backend=backend)
        assert result.visit_counts[0].tolist() == counts, sims
        assert result.q_values[0].tolist() == [0.5, 0.3 if counts[1] else 0.0]
    # with MuZero's min-max normalisation Q becomes (1, 0): sim 4 then scores 1 + sqrt(ln 4 / 2) = 1.833 > 0 + sqrt(ln 4) = 1.177
    assert 1 + math.sqrt(math.log(4) / 2) > math.sqrt(math.log(4))
    assert search(root, fn, SearchConfig(num_simulations=4, rule="uct", c_uct=1.0, normalize_q=True), backend=backend).visit_counts[0].tolist() == [3, 1]


def test_puct_first_choice_follows_the_prior_and_the_muzero_constant():
    """pUCT at a fresh root (N = 1, all Q_norm = 0): score = P sqrt(1) (1.25 + log((1 + 19652 + 1) / 19652)), so
    the largest prior wins; a masked root action is never taken even with the largest prior."""
    fn = toy_recurrent_fn(3)
    root = RootOutput(prior_logits=torch.tensor([[0.0, 2.0, 1.0]], dtype=torch.float64), value=torch.zeros(1, dtype=torch.float64),
                      embedding=torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64))  # terminal depth 1: only the root expands
    assert search(root, fn, SearchConfig(num_simulations=1)).visit_counts[0].tolist() == [0, 1, 0]
    masked = search(root, fn, SearchConfig(num_simulations=1), invalid_actions=torch.tensor([[False, True, False]]))
    assert masked.visit_counts[0].tolist() == [0, 0, 1]
    assert masked.root_prior[0, 1] == 0 and float(masked.root_prior[0].sum()) == pytest.approx(1.0)


@pytest.mark.parametrize(("unvisited_value", "visits"), [("zero", [2, 0]), ("parent", [1, 1])])
@pytest.mark.parametrize("backend", BACKENDS)
def test_unvisited_child_starts_at_zero_or_at_the_parent_value_by_hand(unvisited_value, visits, backend):
    """Two equal priors, root value 0.5, every transition r = 0.1, gamma = 0.9, v = 1, so Q(s, 0) = 1 after the
    first simulation (one Q seen: min = max, so Q_norm = Q). Second pick, c = 1.25 + log(19655 / 19652):
    child 0 scores 1 + 0.5 sqrt(2) c / 2 = 1.442; the unvisited child 1 scores 0 + 0.5 sqrt(2) c = 0.884 from
    zero, or V(root) = (0.5 + 1) / 2 = 0.75 more (1.634) from the parent's value."""

    def fn(emb, action):
        B = len(action)
        one = torch.ones(B, dtype=torch.float64)
        return StepOutput(reward=0.1 * one, discount=0.9 * one, prior_logits=torch.zeros(B, 2, dtype=torch.float64), value=one), emb

    root = RootOutput(prior_logits=torch.zeros(1, 2, dtype=torch.float64), value=torch.tensor([0.5], dtype=torch.float64), embedding=torch.zeros(1, 1, dtype=torch.float64))
    c = 1.25 + math.log(19655 / 19652)
    assert 1.0 + 0.5 * math.sqrt(2) * c / 2 > 0.5 * math.sqrt(2) * c
    assert 0.75 + 0.5 * math.sqrt(2) * c > 1.0 + 0.5 * math.sqrt(2) * c / 2
    result = search(root, fn, SearchConfig(num_simulations=2, unvisited_value=unvisited_value), backend=backend)
    assert result.visit_counts[0].tolist() == visits


def test_the_parent_start_changes_the_toy_trees():
    """The reference match above is not vacuous for the parent start: it searches differently on the toy batch."""
    root, fn = toy_roots(3), toy_recurrent_fn(3)
    zero = search(root, fn, SearchConfig(num_simulations=30))
    parent = search(root, fn, SearchConfig(num_simulations=30, unvisited_value="parent"))
    assert not torch.equal(zero.visit_counts, parent.visit_counts)


def _chain(two_player: bool):
    """One action; root value v0; transitions (r, gamma, v): (1.0, 0.9, 2.0), (-0.5, 0.8, 3.0), (0.25, 0 = terminal, 7.0)."""
    steps = torch.tensor([[1.0, 0.9, 2.0], [-0.5, 0.8, 3.0], [0.25, 0.0, 7.0]], dtype=torch.float64)

    def fn(emb, action):
        k = emb[:, 0].long()
        r, d, v = steps[k].unbind(1)
        return StepOutput(reward=r, discount=d, prior_logits=torch.zeros(len(k), 1, dtype=torch.float64), value=v), emb + 1

    root = RootOutput(prior_logits=torch.zeros(1, 1, dtype=torch.float64), value=torch.tensor([0.1], dtype=torch.float64), embedding=torch.zeros(1, 1, dtype=torch.float64))
    return root, fn, SearchConfig(num_simulations=4, two_player=two_player)


@pytest.mark.parametrize("two_player", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_backup_of_rewards_and_discounts_on_a_chain_by_hand(two_player, backend):
    """Simulations 1-3 grow the chain, simulation 4 re-evaluates the terminal node (its value 7 never counts).
    One player: G = r + gamma G_child; two players: G = r - gamma G_child."""
    root, fn, config = _chain(two_player)
    s = -1.0 if two_player else 1.0
    g1 = 1.0 + s * 0.9 * 2.0  # sim 1: leaf n1 (v = 2)
    g2_n1 = -0.5 + s * 0.8 * 3.0  # sim 2: leaf n2 (v = 3), seen from n1
    g3_n2 = 0.25 + s * 0.0 * 7.0  # sims 3 and 4: leaf n3 is terminal, so n2 gets r3 only
    g3_n1 = -0.5 + s * 0.8 * g3_n2
    g2, g3 = 1.0 + s * 0.9 * g2_n1, 1.0 + s * 0.9 * g3_n1
    result = search(root, fn, config, backend=backend)
    assert result.visit_counts.tolist() == [[4]]
    assert result.node_visits[0, :4].tolist() == [5, 4, 3, 2]
    assert float(result.root_value[0]) == pytest.approx((0.1 + g1 + g2 + 2 * g3) / 5, abs=1e-12)
    v_n1 = (2.0 + g2_n1 + 2 * g3_n1) / 4
    assert float(result.q_values[0, 0]) == pytest.approx(1.0 + s * 0.9 * v_n1, abs=1e-12)
    assert float(result.node_values[0, 2]) == pytest.approx((3.0 + 2 * g3_n2) / 3, abs=1e-12)
    assert result.children_index[0, :4, 0].tolist() == [1, 2, 3, -1]


def test_visit_policy_with_temperature():
    counts = torch.tensor([[1, 3, 0, 4]])
    assert visit_policy(counts, 1.0)[0].tolist() == pytest.approx([1 / 8, 3 / 8, 0.0, 4 / 8])
    assert visit_policy(counts, 0.5)[0].tolist() == pytest.approx([1 / 26, 9 / 26, 0.0, 16 / 26])  # N^(1/T) = N^2
    assert visit_policy(counts, 0.0).tolist() == [[0.0, 0.0, 0.0, 1.0]]
    assert visit_policy(torch.tensor([[2, 5, 5]]), 0.0).tolist() == [[0.0, 1.0, 0.0]]  # ties: the lowest action
    assert visit_policy(torch.tensor([[1, 200]]), 0.01)[0, 1] == 1.0  # no overflow at small T
    with pytest.raises(ConfigError, match="temperature"):
        visit_policy(counts, -1.0)


@pytest.mark.parametrize(("field", "value", "fix"), [("num_simulations", 0, "num_simulations to 1 or more"), ("rule", "ucb", "one of"),
                                                     ("root_exploration_fraction", 1.5, "in \\[0.0, 1.0\\]"), ("max_depth", 0, "max_depth to 1 or more"),
                                                     ("dirichlet_alpha", 0.0, "> 0.0"), ("num_simulations", 2.5, "int"),
                                                     ("unvisited_value", "mean", "one of")])
def test_bad_search_settings_raise_a_config_error_naming_the_fix(field, value, fix):
    kwargs = {"num_simulations": 8, field: value}
    with pytest.raises(ConfigError, match=f"SearchConfig.{field}=.*{fix}"):
        SearchConfig(**kwargs)


def test_root_noise_comes_from_the_generator_and_covers_only_legal_actions():
    root, fn = toy_roots(3), toy_recurrent_fn(3)
    invalid = torch.zeros(6, 3, dtype=torch.bool)
    invalid[:, 2] = True
    config = SearchConfig(num_simulations=10, root_exploration_fraction=0.25, dirichlet_alpha=0.3)
    a = search(root, fn, config, invalid_actions=invalid, generator=torch.Generator().manual_seed(7))
    b = search(root, fn, config, invalid_actions=invalid, generator=torch.Generator().manual_seed(7))
    c = search(root, fn, config, invalid_actions=invalid, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.root_noise, b.root_noise) and torch.equal(a.visit_counts, b.visit_counts)
    assert not torch.equal(a.root_noise, c.root_noise)
    assert (a.root_noise[:, 2] == 0).all() and torch.allclose(a.root_noise.sum(1), torch.ones(6, dtype=torch.float64))
    clean = torch.softmax(root.prior_logits[:, :2], 1)
    assert torch.allclose(a.root_prior[:, :2], 0.75 * clean + 0.25 * a.root_noise[:, :2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_root_without_legal_actions_is_refused_and_float32_trees_work(backend):
    root, fn = toy_roots(3), toy_recurrent_fn(3)
    with pytest.raises(ValueError, match="no legal action"):
        search(root, fn, SearchConfig(num_simulations=4), invalid_actions=torch.ones(6, 3, dtype=torch.bool), backend=backend)
    # a float32 tree (the dtype follows root.value), embeddings of another dtype are kept as they are
    root32 = RootOutput(root.prior_logits.float(), root.value.float(), root.embedding)
    result = search(root32, fn, SearchConfig(num_simulations=12, rule="uct"), backend=backend)
    assert result.root_value.dtype == torch.float32 and (result.visit_counts.sum(1) == 12).all()
    assert not result.root_value.is_inference()


@pytest.mark.parametrize("config", [SearchConfig(num_simulations=40), SearchConfig(num_simulations=40, rule="uct", two_player=True, max_depth=4),
                                    SearchConfig(num_simulations=40, unvisited_value="parent", normalize_q=False, root_exploration_fraction=0.25)])
def test_the_compiled_and_tensor_backends_build_the_same_trees(config):
    """Every field of the result, node by node (slots never used included), from the same roots and noise seed."""
    root, fn = toy_roots(3), toy_recurrent_fn(3)
    compiled, tensor = (search(root, fn, config, generator=torch.Generator().manual_seed(5), backend=b) for b in BACKENDS)
    for name in ("visit_counts", "node_visits", "children_index", "children_visits", "num_nodes", "root_prior", "root_noise"):
        assert torch.equal(getattr(compiled, name), getattr(tensor, name)), name
    for name in ("root_value", "q_values", "node_values", "raw_values", "children_q"):
        assert torch.allclose(getattr(compiled, name), getattr(tensor, name), rtol=0, atol=1e-12), name
        assert getattr(compiled, name).dtype == getattr(tensor, name).dtype == torch.float64


def test_the_search_backend_is_checked():
    root, fn = toy_roots(3), toy_recurrent_fn(3)
    with pytest.raises(ValueError, match="backend='numpy'.*auto, compiled or tensor"):
        search(root, fn, SearchConfig(num_simulations=2), backend="numpy")
    assert torch.equal(search(root, fn, SearchConfig(num_simulations=9)).visit_counts,
                       search(root, fn, SearchConfig(num_simulations=9), backend="compiled").visit_counts)  # auto on the CPU: compiled
