"""Compiled tree bookkeeping for the batched search on the CPU: selection and backup of B trees in one numba call.

``dynarl.planning.mcts.search`` runs its simulations with these kernels when the trees live on the CPU (the
network is still called once per simulation for all B leaves, in torch). They walk each tree node by node,
the way the scalar reference does, which on a CPU costs far less than the ~130 small tensor ops per simulation
of the tensor path (``benchmarks/mcts_speed.py``); on other devices the tensor path keeps the trees there.

Arrays (per tree b, node slot n, action a; slot 0 is the root, simulation s writes slot s + 1):
``nodes`` (5, B, N1) float64 rows REWARD of the edge into the node, DISCOUNT of that edge (signed: -gamma
two-player), RAW network value, VISITS, VALUE_SUM of backed-up returns; ``depth`` (B, N1) int64; ``expandable`` (B, N1) bool;
``child`` (B, N1, A) int64 slot of the child, -1 until expanded; ``prior`` (B, N1, A) float64, 0 where illegal;
``legal`` (B, N1, A) bool; ``minmax`` (2, B) float64 the tree's MinMaxStats (min, max of every backed-up Q);
``path`` (B, N1 + 1) int64 and ``path_len`` (B,) the slots of the current simulation's path.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

REWARD, DISCOUNT, RAW, VISITS, VALUE_SUM = range(5)  # the rows of ``nodes``


@njit(cache=True, nogil=True)
def _normalized(q, lo, hi):
    return (q - lo) / (hi - lo) if hi > lo else q


@njit(cache=True, nogil=True)
def _pick(b, node, nodes, child, prior, legal, minmax, puct, c_uct, pb_c_init, pb_c_base, normalize_q, parent_start):
    """The action a node selects: pUCT (MuZero's ucb_score) or UCT (unvisited first, then UCB1); ties: lowest."""
    A = child.shape[2]
    lo, hi = minmax[0, b], minmax[1, b]
    if not puct:
        for a in range(A):
            if legal[b, node, a] and child[b, node, a] < 0:
                return a
    n_parent = nodes[VISITS, b, node]
    pb_c, root_n, fill = 0.0, 0.0, 0.0
    if puct:
        pb_c = math.log((n_parent + pb_c_base + 1.0) / pb_c_base) + pb_c_init
        root_n = math.sqrt(n_parent)
        if parent_start:
            fill = nodes[VALUE_SUM, b, node] / n_parent
            if normalize_q and hi > lo:
                fill = min(1.0, max(0.0, (fill - lo) / (hi - lo)))
    best, best_action = -np.inf, -1
    for a in range(A):
        if not legal[b, node, a]:
            continue
        c = child[b, node, a]
        n = nodes[VISITS, b, c] if c >= 0 else 0.0
        if n > 0:
            q = nodes[REWARD, b, c] + nodes[DISCOUNT, b, c] * (nodes[VALUE_SUM, b, c] / n)
            value_score = _normalized(q, lo, hi) if normalize_q else q
        else:
            value_score = fill
        if puct:
            score = pb_c * (root_n / (n + 1.0)) * prior[b, node, a] + value_score  # the reference's order of operations
        else:
            score = value_score + c_uct * math.sqrt(math.log(n_parent) / n)
        if score > best:
            best, best_action = score, a
    return best_action


@njit(cache=True, nogil=True)
def select(nodes, expandable, child, prior, legal, minmax, path, path_len, parent, action,
           puct, c_uct, pb_c_init, pb_c_base, normalize_q, parent_start):
    """Descend every tree from its root. Writes ``path``/``path_len`` (the existing nodes on the way, the root
    first) and the edge taken last, ``parent`` slot and ``action``: an edge never taken (to expand) or one into a
    node that cannot be expanded (a terminal, at max depth, or without a legal action; re-evaluated)."""
    for b in range(path.shape[0]):
        node, length = 0, 1
        path[b, 0] = 0
        while True:
            a = _pick(b, node, nodes, child, prior, legal, minmax, puct, c_uct, pb_c_init, pb_c_base, normalize_q, parent_start)
            c = child[b, node, a]
            parent[b], action[b] = node, a
            if c < 0:  # an edge never taken: expand it
                break
            path[b, length] = c
            length += 1
            if not expandable[b, c]:  # terminal, at max depth, or no legal action: re-evaluate it
                break
            node = c
        path_len[b] = length


@njit(cache=True, nogil=True)
def expand_and_backup(out, slot, nodes, depth, expandable, child, prior, legal, minmax, path, path_len, parent, action,
                      two_player, normalize_q, max_depth):
    """Store the network's output ``out`` (B, 3 + A): reward, discount, value, prior logits (-inf illegal) as
    node ``slot`` of every tree that expands this simulation, then back the leaf value up the path:
    G = r + gamma G (r - gamma G two-player), N += 1, W += G, and the MinMaxStats over each edge's
    Q(s, a) = r + gamma V(s')."""
    B, A = child.shape[0], child.shape[2]
    for b in range(B):
        # a tree that re-evaluates a leaf still took part in the call; its output only fills the unused slot
        nodes[REWARD, b, slot] = out[b, 0]
        nodes[DISCOUNT, b, slot] = -out[b, 1] if two_player else out[b, 1]
        nodes[RAW, b, slot] = out[b, 2]
        length = path_len[b]
        if child[b, parent[b], action[b]] < 0:
            d = depth[b, parent[b]] + 1
            depth[b, slot] = d
            top, any_legal = -np.inf, False
            for a in range(A):
                x = out[b, 3 + a]
                ok = math.isfinite(x)
                legal[b, slot, a] = ok
                if ok:
                    any_legal = True
                    top = max(top, x)
            total = 0.0
            for a in range(A):
                p = math.exp(out[b, 3 + a] - top) if legal[b, slot, a] else 0.0
                prior[b, slot, a] = p
                total += p
            if total > 0:  # else no legal action: the priors stay 0 and the node is not expandable
                for a in range(A):
                    prior[b, slot, a] /= total
            expandable[b, slot] = out[b, 1] != 0 and any_legal and d < max_depth
            child[b, parent[b], action[b]] = slot
            path[b, length] = slot
            length += 1
            path_len[b] = length
        G = nodes[RAW, b, path[b, length - 1]]
        for i in range(length - 1, -1, -1):
            node = path[b, i]
            nodes[VISITS, b, node] += 1.0
            nodes[VALUE_SUM, b, node] += G
            if i > 0:
                if normalize_q:
                    q = nodes[REWARD, b, node] + nodes[DISCOUNT, b, node] * (nodes[VALUE_SUM, b, node] / nodes[VISITS, b, node])
                    minmax[0, b] = min(minmax[0, b], q)
                    minmax[1, b] = max(minmax[1, b], q)
                G = nodes[REWARD, b, node] + nodes[DISCOUNT, b, node] * G
