"""Batched Monte Carlo tree search: B trees at once, in fixed-size tensors or arrays (inventory A7 UCT, A8 MuZero).

Layout (after mctx, ``google-deepmind/mctx`` ``tree.py``): every tree has ``N = num_simulations + 1`` node
slots; node 0 is the root and simulation ``s`` writes its new node into slot ``s + 1``. All trees live in
flat (B * N + 2, ...) tensors (two global rows: a scratch row for masked writes and a null "no child" row).
Per node: reward and discount of the edge into it, network value, visit count N, sum of returns W, the
embedding; per edge (node, a): the child's row, Q(s, a), prior, legality. One simulation is

1. **selection**: first the score of every edge of every tree is refreshed in one elementwise pass over
   (B, N, A) and each node's pick is its ``argmax`` (ties: the lowest action):

   - ``rule="puct"`` (MuZero pseudocode, Schrittwieser et al. 2020, appendix B):
     ``score = Q_norm(s, a) + P(s, a) * sqrt(N(s)) / (1 + N(s, a)) * (pb_c_init + log((N(s) + pb_c_base + 1) / pb_c_base))``
     with ``Q_norm = 0`` for an unvisited child, as in the pseudocode (``unvisited_value="zero"``), or, with
     ``unvisited_value="parent"``, the parent's mean value ``V(s) = W(s) / N(s)`` normalised like a Q and
     clipped to [0, 1] (after LightZero, whose ``compute_mean_q`` averages the parent's Q with the visited
     siblings' Q; under min-max normalisation the pseudocode's 0 makes an unvisited child the worst move, so a
     few simulations pile onto one child);
   - ``rule="uct"`` (001's Score, UCB1): unvisited children first (lowest action first), then
     ``score = Q_norm(s, a) + c_uct * sqrt(ln N(s) / N(s, a))``;

   then the path is followed from the roots with one ``gather`` per depth (a Python loop over depth, never
   over trees). The descent stops at an edge never taken (expansion) or at a child that cannot be expanded
   (a terminal: discount 0; a node at ``max_depth``; a node whose prior logits are all -inf), which is then
   re-evaluated with its stored network value;
2. **expansion**: ONE ``recurrent_fn`` call for the B leaves (trees that revisit a leaf still take part in
   the call; their output is not stored);
3. **backup** along the path, all depths in a few ops: ``G = r + gamma G_child`` (``G = r - gamma G_child``
   when ``two_player``: values are for the player to move), ``N += 1``, ``W += G`` at every node of the path
   and ``Q(s, a) = r + gamma W(s') / N(s')`` (``r - gamma V(s')``) on every edge of it (MuZero's backup,
   inventory A8: ``Q_{k+1} = (N_k Q_k + G) / (N_k + 1)``).

Two backends build the same trees (``search(backend=...)``). The **tensor** path above keeps the trees on the
roots' device: per simulation about 130 small tensor ops plus one per depth level, independent of B; the
score refresh touches B x N x A values, negligible for MuZero-sized searches (hundreds of simulations, tens of
actions). On a CPU that per-op overhead dominates, so there the default is the **compiled** path: the same
layout as numpy arrays, selection and backup of all B trees in two numba calls per simulation
(``dynarl.planning.mcts_kernels``, node by node as the scalar reference walks them), with the network
still called once for the B leaves (``benchmarks/mcts_speed.py``).

Conventions (stated because they change the search with few simulations):

- A node counts one visit when it is created (its network value is its first sample), so the root starts at
  N = 1 with V = v(root) and ``N(s) = 1 + sum_a N(s, a)`` at every expanded node (mctx's convention; MuZero's
  pseudocode starts the root at 0 visits). ``root_value`` is the mean of v(root) and the S backed-up returns.
- **Q normalisation scope** (``normalize_q``): per tree, min-max over every Q(s, a) = r + gamma V(s') written by
  a backup anywhere in that tree so far (rewards included, muzero-general#27; MuZero's ``MinMaxStats``), never
  across the batch; ``Q_norm = (Q - min) / (max - min)`` once max > min, else Q itself (MuZero). It applies
  to both rules.
- Illegal actions: the root mask and any -inf (non-finite) prior logit give the child a score of -inf and a
  prior of 0; such a child is never selected. Dirichlet noise (MuZero: root only, mixed into the priors,
  ``P = (1 - frac) P + frac eta``, ``eta ~ Dir(alpha)``) is drawn over the legal root actions only, from the
  passed ``torch.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from dynarl.config import one_of
from dynarl.errors import ConfigError

RULES = ("puct", "uct")
BACKENDS = ("auto", "compiled", "tensor")
UNVISITED_VALUES = ("zero", "parent")


def _int_at_least(low: int, fix: str):
    def check(x) -> str | None:
        if isinstance(x, bool) or not isinstance(x, int):
            return f"must be an int >= {low}; {fix}"
        return None if x >= low else f"must be >= {low}; {fix}"

    return check


def _real(low: float, *, strict: bool = False, high: float | None = None, fix: str = ""):
    def check(x) -> str | None:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            return f"must be a finite number; {fix}"
        bad = x <= low if strict else x < low
        if high is not None:
            bad = bad or x > high
        if bad:
            span = f"in [{low}, {high}]" if high is not None else (f"> {low}" if strict else f">= {low}")
            return f"must be {span}; {fix}"
        return None

    return check


def _bool(x) -> str | None:
    return None if isinstance(x, bool) else "must be true or false"


_REQUIRED = object()


def _spec(check, help: str, default=_REQUIRED):
    """A field with its constraint and help in the metadata (as dynarl.config.param, but usable without a default)."""
    meta = {"check": check, "help": help}
    return field(metadata=meta) if default is _REQUIRED else field(default=default, metadata=meta)


@dataclass(frozen=True)
class SearchConfig:
    """Settings of one batched search; validated on construction (ConfigError names the field and the fix)."""

    num_simulations: int = _spec(_int_at_least(1, "set num_simulations to 1 or more"), "simulations per search (nodes per tree = num_simulations + 1)")
    rule: str = _spec(one_of(*RULES), "puct: AlphaZero/MuZero pUCT with priors; uct: UCB1 (001's Score), unvisited children first", "puct")
    c_uct: float = _spec(_real(0.0, fix="use e.g. sqrt(2)"), "UCT exploration constant c in Q + c sqrt(ln N(s) / N(s, a))", math.sqrt(2.0))
    pb_c_init: float = _spec(_real(0.0, fix="MuZero uses 1.25"), "pUCT c1 (MuZero: 1.25)", 1.25)
    pb_c_base: float = _spec(_real(0.0, strict=True, fix="MuZero uses 19652"), "pUCT c2 (MuZero: 19652)", 19652.0)
    dirichlet_alpha: float = _spec(_real(0.0, strict=True, fix="MuZero uses 0.25-0.3"), "root noise concentration alpha", 0.3)
    root_exploration_fraction: float = _spec(_real(0.0, high=1.0, fix="0 turns the root noise off; MuZero uses 0.25"), "share of Dirichlet noise in the root priors", 0.0)
    two_player: bool = _spec(_bool, "zero-sum alternating moves: values are for the player to move, G = r - gamma G_child", False)
    normalize_q: bool = _spec(_bool, "min-max normalise Q per tree (MuZero MinMaxStats, rewards included)", True)
    max_depth: int | None = _spec(_int_at_least(1, "set max_depth to 1 or more, or None for no limit"), "nodes at this depth are not expanded (None: no limit)", None)
    unvisited_value: str = _spec(one_of(*UNVISITED_VALUES), "pUCT value term of an unvisited child: zero (MuZero's pseudocode: Q_norm = 0, the worst under min-max) or parent (the parent's mean value V(s), normalised and clipped to [0, 1], after LightZero's mean-Q start)", "zero")

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "max_depth":
                continue
            problem = f.metadata["check"](value)
            if problem:
                raise ConfigError(f"SearchConfig.{f.name}={value!r} is invalid: {problem}")


@dataclass
class RootOutput:
    prior_logits: Tensor  # (B, A); -inf marks an illegal action
    value: Tensor  # (B,)
    embedding: Tensor  # (B, ...)


@dataclass
class StepOutput:
    """What ``recurrent_fn(embedding, action)`` returns for the B new leaves, with the next embedding."""

    reward: Tensor  # (B,) reward of the transition (for the player who acted, two-player)
    discount: Tensor  # (B,) gamma, or 0 where the transition terminated
    prior_logits: Tensor  # (B, A); -inf marks an illegal action at the new node
    value: Tensor  # (B,) value of the new node (for the player to move there, two-player)


RecurrentFn = Callable[[Tensor, Tensor], "tuple[StepOutput, Tensor]"]


@dataclass
class SearchResult:
    visit_counts: Tensor  # (B, A) long, root children's visits (sum = num_simulations)
    root_value: Tensor  # (B,) the root's backed-up mean value
    q_values: Tensor  # (B, A) root children's Q = r + gamma V(child) (r - gamma V for two_player), 0 where unvisited
    root_prior: Tensor  # (B, A) root priors used by the search (softmax over legal actions, after noise)
    root_noise: Tensor  # (B, A) the Dirichlet draw eta (zeros without noise)
    node_visits: Tensor  # (B, N) long, N = num_simulations + 1; 0 for slots never used
    node_values: Tensor  # (B, N) mean backed-up value of each node
    raw_values: Tensor  # (B, N) network value of each node
    children_index: Tensor  # (B, N, A) long, slot of the child, -1 where never expanded
    children_visits: Tensor  # (B, N, A) long
    children_q: Tensor  # (B, N, A) Q(s, a), 0 where unvisited
    num_nodes: Tensor  # (B,) long, nodes in each tree (the root included)


# Per node, columns of node_data (one row per node plus two global rows: _SCRATCH takes masked writes, _NULL
# stands for "no child" and keeps N = 0):
#   _R, _G   reward and signed discount (gamma, or -gamma two-player) of the edge into the node
#   _RAW     network value v of the node;  _N, _W  visit count and sum of backed-up returns (V = W / N)
# and expandable (bool: not terminal, above max_depth, some legal action).
# Per edge (node, a): ptr = row of the child (_NULL while never expanded), Q(s, a) = r + gamma V(s'), prior
# P(s, a), and the legality term static (0 legal, -inf illegal; UCT: +inf legal, so an unvisited child goes
# first). N(s, a) is the child's N.
_R, _G, _RAW, _N, _W = range(5)
_COLUMNS = 5


def _coef_table(size: int, config: SearchConfig, dtype: torch.dtype, device) -> Tensor:
    """Per-node factor of the exploration term for N = 0..size-1: pUCT sqrt(N) c(N); UCT c sqrt(ln N)."""
    visits = torch.arange(size, dtype=torch.float64)
    if config.rule == "puct":
        coef = visits.sqrt() * (config.pb_c_init + torch.log((visits + config.pb_c_base + 1.0) / config.pb_c_base))
    else:
        coef = config.c_uct * visits.clamp(min=1).log().sqrt()
    return coef.to(dtype=dtype, device=device)


def dirichlet_noise(legal: Tensor, alpha: float, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """eta ~ Dir(alpha) over the legal actions of each row (0 elsewhere): normalised Gamma(alpha) draws.

    ``torch._standard_gamma`` because ``torch.distributions.Dirichlet.sample`` takes no ``torch.Generator``,
    and every draw must come from the caller's seeded generator."""
    gamma = torch._standard_gamma(torch.full(legal.shape, float(alpha), dtype=dtype, device=legal.device), generator=generator) * legal
    total = gamma.sum(-1, keepdim=True)
    uniform = legal / legal.sum(-1, keepdim=True)
    return torch.where(total > 0, gamma / total.clamp_min(torch.finfo(dtype).tiny), uniform)  # all draws underflowed (tiny alpha): uniform


def _check_step(out: StepOutput, emb: Tensor, B: int, A: int, emb_shape: torch.Size) -> None:
    for name in ("reward", "discount", "value"):
        if getattr(out, name).shape != (B,):
            raise ValueError(f"recurrent_fn returned {name} of shape {tuple(getattr(out, name).shape)}; expected ({B},)")
    if out.prior_logits.shape != (B, A):
        raise ValueError(f"recurrent_fn returned prior_logits of shape {tuple(out.prior_logits.shape)}; expected ({B}, {A})")
    if emb.shape != emb_shape:
        raise ValueError(f"recurrent_fn returned an embedding of shape {tuple(emb.shape)}; expected {tuple(emb_shape)} (as the root's)")


def search(root: RootOutput, recurrent_fn: RecurrentFn, config: SearchConfig, *, invalid_actions: Tensor | None = None,
           generator: torch.Generator | None = None, backend: str = "auto") -> SearchResult:
    """Run ``config.num_simulations`` simulations in each of the B trees rooted at ``root``.

    ``recurrent_fn(embedding (B, ...), action LongTensor (B,)) -> (StepOutput, next_embedding)`` is called once
    per simulation for all B trees, under ``torch.inference_mode`` (the search is pure inference; the returned
    tensors are ordinary tensors). ``invalid_actions`` (B, A) bool marks illegal root actions. The results use
    the dtype of ``root.value``; ``generator`` (on the tensors' device) feeds the root Dirichlet noise.

    ``backend``: ``"compiled"`` keeps the trees in numpy arrays and walks them with the numba kernels of
    ``dynarl.planning.mcts_kernels`` (CPU only; float64 bookkeeping whatever the dtype), ``"tensor"`` keeps
    them in torch tensors on the roots' device (the float ops in ``root.value``'s dtype), ``"auto"`` picks
    compiled on the CPU and tensor elsewhere. Both build the same trees as the scalar reference in the tests.
    """
    with torch.inference_mode():  # ~10% fewer dispatcher costs than no_grad on the many small ops
        result = _search(root, recurrent_fn, config, invalid_actions, generator, backend)
    # inference tensors cannot be saved for backward, and targets built from the result may be
    return SearchResult(**{f.name: getattr(result, f.name).clone() for f in fields(result)})


def _root_priors(logits: Tensor, invalid_actions: Tensor | None, config: SearchConfig, generator: torch.Generator | None, dtype: torch.dtype):
    """The roots' legal actions (B, A), priors (softmax over the legal actions, Dirichlet noise mixed in) and the noise."""
    B, A = logits.shape
    legal = torch.isfinite(logits)
    if invalid_actions is not None:
        if invalid_actions.shape != (B, A):
            raise ValueError(f"invalid_actions must be ({B}, {A}) bool, got shape {tuple(invalid_actions.shape)}")
        legal = legal & ~invalid_actions.to(device=logits.device, dtype=torch.bool)
    if bool((~legal.any(1)).any()):
        raise ValueError("a root has no legal action (all masked or -inf prior logits); search only states with a legal move")
    root_prior = torch.softmax(logits.to(dtype).masked_fill(~legal, -math.inf), 1)
    noise = torch.zeros_like(root_prior)
    if config.root_exploration_fraction > 0:
        noise = dirichlet_noise(legal, config.dirichlet_alpha, generator, dtype)
        root_prior = (1 - config.root_exploration_fraction) * root_prior + config.root_exploration_fraction * noise
    return legal, root_prior, noise


def _search_compiled(root: RootOutput, recurrent_fn: RecurrentFn, config: SearchConfig, legal: Tensor, root_prior: Tensor, noise: Tensor,
                     dtype: torch.dtype, max_depth: int) -> SearchResult:
    """The simulations with the trees in numpy arrays walked by ``mcts_kernels`` (CPU): per simulation one
    compiled selection over the B trees, ONE ``recurrent_fn`` call for the B leaves, one compiled backup."""
    from dynarl.planning import mcts_kernels as k  # numba: imported (and its kernels loaded) on the first search

    B, A = legal.shape
    S, N1 = config.num_simulations, config.num_simulations + 1
    puct = config.rule == "puct"
    nodes = np.zeros((5, B, N1))
    nodes[k.RAW, :, 0] = nodes[k.VALUE_SUM, :, 0] = root.value.to(torch.float64).numpy()
    nodes[k.VISITS, :, 0] = 1.0  # the root's network value is its first sample
    depth, expandable = np.zeros((B, N1), np.int64), np.zeros((B, N1), np.bool_)
    expandable[:, 0] = True
    child = np.full((B, N1, A), -1, np.int64)
    prior, legal_np = np.zeros((B, N1, A)), np.zeros((B, N1, A), np.bool_)
    prior[:, 0], legal_np[:, 0] = root_prior.to(torch.float64).numpy(), legal.numpy()
    minmax = np.array([[math.inf], [-math.inf]]).repeat(B, 1)
    path, path_len = np.zeros((B, N1 + 1), np.int64), np.zeros(B, np.int64)
    parent, action = np.zeros(B, np.int64), np.zeros(B, np.int64)
    parent_t = torch.from_numpy(parent)  # shares memory with the kernels' output
    emb_shape = root.embedding.shape
    embeddings = torch.zeros((B * N1,) + tuple(emb_shape[1:]), dtype=root.embedding.dtype)
    base = torch.arange(B) * N1
    embeddings.index_copy_(0, base, root.embedding)
    for sim in range(S):
        slot = sim + 1
        k.select(nodes, expandable, child, prior, legal_np, minmax, path, path_len, parent, action,
                 puct, config.c_uct, config.pb_c_init, config.pb_c_base, config.normalize_q, puct and config.unvisited_value == "parent")
        out, next_emb = recurrent_fn(embeddings.index_select(0, base + parent_t), torch.from_numpy(action.copy()))
        if sim == 0:
            _check_step(out, next_emb, B, A, emb_shape)
        embeddings.index_copy_(0, base + slot, next_emb.to(embeddings.dtype))
        packed = torch.cat([torch.stack([out.reward, out.discount, out.value], 1), out.prior_logits], 1)
        k.expand_and_backup(packed.to("cpu", torch.float64).numpy(), slot, nodes, depth, expandable, child, prior, legal_np, minmax,
                            path, path_len, parent, action, config.two_player, config.normalize_q, max_depth)

    # --- results -------------------------------------------------------------------------------------------
    n, w = nodes[k.VISITS], nodes[k.VALUE_SUM]
    expanded = child >= 0
    at_child = child.clip(0).reshape(B, -1)
    children_visits = np.where(expanded, np.take_along_axis(n, at_child, 1).reshape(B, N1, A), 0.0)
    children_q = np.where(expanded, (np.take_along_axis(nodes[k.REWARD], at_child, 1) + np.take_along_axis(nodes[k.DISCOUNT], at_child, 1)
                                     * np.take_along_axis(w / n.clip(1), at_child, 1)).reshape(B, N1, A), 0.0)

    def out_tensor(x, to=dtype):
        return torch.from_numpy(np.ascontiguousarray(x)).to(to)

    return SearchResult(
        visit_counts=out_tensor(children_visits[:, 0], torch.long),
        root_value=out_tensor(w[:, 0] / n[:, 0]),
        q_values=out_tensor(children_q[:, 0]),
        root_prior=root_prior,
        root_noise=noise,
        node_visits=out_tensor(n, torch.long),
        node_values=out_tensor(w / n.clip(1)),
        raw_values=out_tensor(nodes[k.RAW]),
        children_index=torch.from_numpy(child),
        children_visits=out_tensor(children_visits, torch.long),
        children_q=out_tensor(children_q),
        num_nodes=out_tensor((n > 0).sum(1), torch.long),
    )


def _search(root: RootOutput, recurrent_fn: RecurrentFn, config: SearchConfig, invalid_actions: Tensor | None, generator: torch.Generator | None,
            backend: str) -> SearchResult:
    if not isinstance(config, SearchConfig):
        raise TypeError(f"config must be a SearchConfig, got {type(config).__name__}")
    logits = root.prior_logits
    if logits.dim() != 2:
        raise ValueError(f"root.prior_logits must be (B, A), got shape {tuple(logits.shape)}")
    B, A = logits.shape
    if root.value.shape != (B,) or root.embedding.shape[:1] != (B,):
        raise ValueError(f"root.value must be ({B},) and root.embedding ({B}, ...); got {tuple(root.value.shape)} and {tuple(root.embedding.shape)}")
    device = logits.device
    dtype = root.value.dtype if root.value.is_floating_point() else torch.get_default_dtype()
    S = config.num_simulations
    max_depth = S if config.max_depth is None else min(config.max_depth, S)  # a tree of S + 1 nodes is at most S deep
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not a search backend; use one of {', '.join(BACKENDS[:-1])} or {BACKENDS[-1]}")
    if backend == "auto":
        backend = "compiled" if device.type == "cpu" else "tensor"
    if backend == "compiled" and device.type != "cpu":
        raise ValueError(f"backend='compiled' walks the trees on the CPU, but the roots are on {device}; use backend='tensor' (or 'auto') there")
    legal, root_prior, noise = _root_priors(logits, invalid_actions, config, generator, dtype)
    if backend == "compiled":
        return _search_compiled(root, recurrent_fn, config, legal, root_prior, noise, dtype, max_depth)
    puct = config.rule == "puct"
    parent_start = puct and config.unvisited_value == "parent"
    N1 = S + 1  # node slots per tree
    SCRATCH, NULL = B * N1, B * N1 + 1
    inf = math.inf

    # --- the tree (rows b * N1 + n: node n of tree b) --------------------------------------------------------
    rows_total = B * N1 + 2
    node_data = torch.zeros(_COLUMNS, rows_total, dtype=dtype, device=device)  # column-major: node_data[_N] is contiguous
    node_data[_G, SCRATCH] = 1.0  # (r, g) = (0, 1): G passes through the scratch row unchanged
    node_n = node_data[_N]
    expandable = torch.zeros(rows_total, dtype=torch.bool, device=device)
    ptr = torch.full((rows_total, A), NULL, dtype=torch.long, device=device)
    edge_q, prior, static = (torch.zeros(rows_total, A, dtype=dtype, device=device) for _ in range(3))
    emb_shape = root.embedding.shape
    embeddings = torch.zeros((B, N1) + tuple(emb_shape[1:]), dtype=root.embedding.dtype, device=device)
    emb_flat = embeddings.view((B * N1,) + tuple(emb_shape[1:]))
    node3 = node_data[:, : B * N1].view(_COLUMNS, B, N1)
    ptr3, q3, prior3, static3 = (t[: B * N1].view(B, N1, A) for t in (ptr, edge_q, prior, static))
    node_n3, expandable2 = node_n[: B * N1].view(B, N1), expandable[: B * N1].view(B, N1)
    coef = _coef_table(S + 2, config, dtype, device)
    base = torch.arange(B, device=device).unsqueeze(1) * N1  # (B, 1) row of each tree's root
    legal_bonus = 0.0 if puct else inf

    # --- root ----------------------------------------------------------------------------------------------
    prior3[:, 0] = root_prior
    static3[:, 0] = torch.where(legal, legal_bonus, -inf)
    node3[_RAW, :, 0] = root.value
    node3[_N, :, 0] = 1.0  # the root's network value is its first sample
    node3[_W, :, 0] = root.value
    expandable2[:, 0] = True
    embeddings[:, 0] = root.embedding

    q_min = torch.full((B, 1, 1), inf, dtype=dtype, device=device)
    q_max = torch.full((B, 1, 1), -inf, dtype=dtype, device=device)
    levels = torch.arange(S + 2, device=device)
    level_views: dict[int, tuple[Tensor, Tensor]] = {}  # W -> (levels[:W], levels[1:W])
    base_flat, ptr_flat, edge_q_flat = base.view(-1), ptr.view(-1), edge_q.view(-1)
    node_head = node_data[:3]  # _R, _G, _RAW
    legal_term, illegal_term = torch.tensor(legal_bonus, dtype=dtype, device=device), torch.tensor(-inf, dtype=dtype, device=device)
    root_slot = torch.zeros(B, 1, dtype=torch.long, device=device)
    depth_limited = max_depth < S  # else the depth never binds (a tree of S + 1 nodes is at most S deep)
    tree_depth = 0  # deepest node in any tree: bounds the selection loop (host int, one sync per simulation)
    for sim in range(S):
        slot = sim + 1  # this simulation's new node

        # --- 1a. scores of every edge, one elementwise pass over B x N1 x A values: which child each node picks
        n = node_n.take(ptr3)  # N(s, a): the child's N (the _NULL row has N = 0)
        coef3 = coef.take(node_n3.long()).unsqueeze(2)  # (B, N1, 1) exploration factor of each node's N
        if config.normalize_q:  # the tree's MinMaxStats (scope: this tree only): Q_norm = (Q - min) / (max - min) once max > min
            spread = q_max - q_min
            ok = spread > 0
            q_low, q_range = torch.where(ok, q_min, 0.0), torch.where(ok, spread, 1.0)
            value_score = (q3 - q_low).div_(q_range)
        else:
            value_score = q3
        if puct:  # Q_norm (0 unvisited) + P sqrt(N) c(N) / (1 + N(s, a)), MuZero pseudocode ucb_score
            if parent_start:  # an unvisited child starts at its parent's mean value V(s) = W / N (after LightZero)
                fill = (node3[_W] / node3[_N].clamp(min=1)).unsqueeze(2)
                if config.normalize_q:  # normalised like the Qs, clipped to [0, 1] once there is a range
                    fill = (fill - q_low).div_(q_range)
                    fill = torch.where(ok, fill.clamp(0.0, 1.0), fill)
                value_score = torch.where(n == 0, fill, value_score)
            elif config.normalize_q:
                value_score.masked_fill_(n == 0, 0.0)
            score = torch.addcmul(static3, prior3 / (1 + n), coef3).add_(value_score)
        else:  # unvisited first, then Q_norm + c sqrt(ln N / N(s, a)), 001's Score
            score = torch.where(n > 0, torch.addcmul(value_score, coef3, n.rsqrt()), static3)
        best_action = score.argmax(2, keepdim=True)  # ties: the lowest action
        picked = ptr3.gather(2, best_action).view(B, N1)
        best_action = best_action.view(B, N1)
        goes_on = expandable.take(picked)  # _NULL is not expandable
        next_slot = torch.where(picked == NULL, slot, picked - base)  # never expanded: the new node's slot

        # --- 1b. selection: follow the picked children from the root; the path is slots path[:, 0..depth] ----
        node = root_slot
        nodes = [node]
        for _ in range(tree_depth + 1):  # a tree that stopped wanders on harmlessly; its extra levels are masked
            node = next_slot.gather(1, node)
            nodes.append(node)
        path = torch.cat(nodes, 1)  # (B, W)
        W = path.shape[1]
        if W not in level_views:
            level_views[W] = (levels[:W], levels[1:W])
        levels_w, levels_edges = level_views[W]
        parents = path[:, :-1]
        last = goes_on.gather(1, parents).to(torch.uint8).argmin(1, keepdim=True)  # the first parent whose pick is not descended into
        depth = last + 1  # (B, 1) level (= depth) of the leaf
        parent = path.gather(1, last)
        action = best_action.gather(1, parent)
        parent = base + parent
        expand = path.gather(1, depth) == slot  # else the leaf is an existing node that cannot be expanded: re-evaluate it

        # --- 2. expansion: ONE network call for all B trees, written to slot sim + 1 -------------------------
        out, next_emb = recurrent_fn(emb_flat.index_select(0, parent.view(-1)), action.view(-1))
        if sim == 0:
            _check_step(out, next_emb, B, A, emb_shape)
        new_rows = base_flat + slot
        emb_flat.index_copy_(0, new_rows, next_emb if next_emb.dtype == emb_flat.dtype else next_emb.to(emb_flat.dtype))
        child_logits = out.prior_logits if out.prior_logits.dtype == dtype else out.prior_logits.to(dtype)
        child_legal = torch.isfinite(child_logits)
        child_prior = torch.softmax(torch.where(child_legal, child_logits, -inf), 1)
        prior.index_copy_(0, new_rows, torch.where(child_legal, child_prior, 0.0))  # all-illegal rows: 0, not NaN
        static.index_copy_(0, new_rows, torch.where(child_legal, legal_term, illegal_term))
        can_expand = (out.discount != 0) & child_legal.any(1)
        expandable.index_copy_(0, new_rows, can_expand & (depth.view(-1) < max_depth) if depth_limited else can_expand)
        edge_into = torch.stack([out.reward, -out.discount if config.two_player else out.discount, out.value])
        node_head.index_copy_(1, new_rows, edge_into if edge_into.dtype == dtype else edge_into.to(dtype))
        edge = torch.where(expand, parent * A + action, SCRATCH * A)  # trees that revisit a leaf write to the scratch row
        ptr_flat.index_copy_(0, edge.view(-1), new_rows)

        # --- 3. backup: G = r + gamma G_child up the path (two-player: g = -gamma), N += 1, W += G -------------
        rows = torch.where(levels_w <= depth, base + path, SCRATCH)  # (B, W)
        flat = rows.view(-1)
        r, g, raw, n, w = node_data.index_select(1, flat).view(_COLUMNS, B, W).unbind(0)
        r_at, g_at = r.unbind(1), g.unbind(1)
        returns = [raw.gather(1, depth).view(-1)]  # G at the leaf: its network value; scratch levels below pass it on
        for k in range(W - 1, 0, -1):
            returns.append(torch.addcmul(r_at[k], g_at[k], returns[-1]))
        G = torch.stack(returns[::-1], 1)  # (B, W)
        n, w = n + 1, w + G  # MuZero: Q_{k+1} = (N Q_k + G) / (N + 1)
        node_data.index_copy_(1, flat, torch.stack([r, g, raw, n, w]).view(_COLUMNS, -1))  # repeats: only the scratch row
        # Q(s, a) of the path's edges (level k -> k + 1, k < depth)
        q = torch.addcmul(r, g, w / n)[:, 1:]  # (B, W - 1)  r + gamma V(s')  (two-player: r - gamma V)
        off = levels_edges > depth
        edge = torch.where(off, SCRATCH, rows[:, :-1]) * A + best_action.gather(1, parents)
        edge_q_flat.index_copy_(0, edge.view(-1), q.reshape(-1))
        if config.normalize_q:  # MinMaxStats over the Q of every edge this backup wrote
            q = q.unsqueeze(2)
            off = off.unsqueeze(2)
            q_max = torch.maximum(q_max, q.masked_fill(off, -inf).amax(1, keepdim=True))
            q_min = torch.minimum(q_min, q.masked_fill(off, inf).amin(1, keepdim=True))
        tree_depth = max(tree_depth, int(depth.max()))

    # --- results -------------------------------------------------------------------------------------------
    children_visits = node_n.take(ptr3).long()
    node_visits = node3[_N].long()
    return SearchResult(
        visit_counts=children_visits[:, 0],
        root_value=node3[_W, :, 0] / node3[_N, :, 0],  # the wrapper clones every field out of inference mode
        q_values=q3[:, 0],
        root_prior=root_prior,
        root_noise=noise,
        node_visits=node_visits,
        node_values=node3[_W] / node3[_N].clamp(min=1),
        raw_values=node3[_RAW],
        children_index=torch.where(ptr3 == NULL, -1, ptr3 - base.unsqueeze(2)),
        children_visits=children_visits,
        children_q=q3,
        num_nodes=(node_visits > 0).sum(1),
    )


def visit_policy(visit_counts: Tensor, temperature: float) -> Tensor:
    """pi(a) = N(a)^(1/T) / sum_b N(b)^(1/T) (MuZero's action selection); T = 0: one-hot argmax, ties to the lowest action."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ConfigError(f"temperature={temperature!r} is invalid: must be a finite number >= 0; use 0 for the most visited action, 1 for proportional to visits")
    counts = visit_counts.to(torch.get_default_dtype() if not visit_counts.is_floating_point() else visit_counts.dtype)
    if temperature == 0:
        return torch.nn.functional.one_hot(counts.argmax(-1), counts.shape[-1]).to(counts.dtype)
    return torch.softmax(counts.log() / temperature, -1)  # log space: N^(1/T) overflows for small T
