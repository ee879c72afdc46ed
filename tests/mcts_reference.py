"""A plain scalar MCTS: one tree, Python objects, one node at a time -- the oracle for dynarl.planning.mcts.

It follows the same conventions as the batched search, written the obvious way:

- a node is created with 0 visits and counts its first visit in the backup of the simulation that made
  it; the root starts with 1 visit and value sum v(root);
- selection: pUCT (MuZero pseudocode ``ucb_score``) or UCT (001: unvisited children first, then
  Q + c sqrt(ln N / n)); actions are scanned in increasing order and only a strictly larger score
  replaces the best, so ties go to the lowest action; illegal children (root mask, -inf logit) are skipped;
- the descent stops at a missing child (expand it) or at a child that cannot be expanded (terminal,
  at max depth, or without a legal action), whose network value is backed up again;
- backup: G = r + gamma G (r - gamma G two-player), visits and value sums on the path; MinMaxStats of the
  tree are updated with Q(s, a) = r + gamma V(s') of every edge on the path;
- Dirichlet noise is not drawn here: the caller passes the noise vector.
"""

from __future__ import annotations

import math

import torch


class Node:
    def __init__(self, depth: int):
        self.depth = depth
        self.visit_count = 0
        self.value_sum = 0.0
        self.raw_value = 0.0
        self.reward = 0.0  # of the edge into this node
        self.discount = 1.0
        self.prior: dict[int, float] = {}  # legal actions only
        self.children: dict[int, Node] = {}
        self.embedding = None
        self.expandable = True

    def value(self) -> float:
        return self.value_sum / self.visit_count


class MinMaxStats:
    def __init__(self):
        self.maximum = -math.inf
        self.minimum = math.inf

    def update(self, value: float):
        self.maximum = max(self.maximum, value)
        self.minimum = min(self.minimum, value)

    def normalize(self, value: float) -> float:
        if self.maximum > self.minimum:
            return (value - self.minimum) / (self.maximum - self.minimum)
        return value


def softmax_legal(logits: list[float], legal: list[bool]) -> dict[int, float]:
    top = max(x for x, ok in zip(logits, legal) if ok)
    exps = {a: math.exp(x - top) for a, (x, ok) in enumerate(zip(logits, legal)) if ok}
    total = sum(exps.values())
    return {a: e / total for a, e in exps.items()}


def edge_q(child: Node, two_player: bool) -> float:
    sign = -1.0 if two_player else 1.0
    return child.reward + sign * child.discount * child.value()


def unvisited_score(node: Node, stats: MinMaxStats, config) -> float:
    """pUCT value term of an unvisited child: 0 (MuZero's pseudocode) or the parent's mean value, normalised
    like a Q and clipped to [0, 1] (LightZero)."""
    if config.unvisited_value == "zero":
        return 0.0
    v = node.value()
    if config.normalize_q and stats.maximum > stats.minimum:
        return min(1.0, max(0.0, stats.normalize(v)))
    return v


def select(node: Node, stats: MinMaxStats, config) -> int:
    if config.rule == "uct":
        for a in sorted(node.prior):
            if a not in node.children:
                return a
    best, best_action = -math.inf, None
    for a in sorted(node.prior):
        child = node.children.get(a)
        n = 0 if child is None else child.visit_count
        q = 0.0 if n == 0 else edge_q(child, config.two_player)
        value_score = (stats.normalize(q) if config.normalize_q else q) if n > 0 else unvisited_score(node, stats, config)
        if config.rule == "puct":
            pb_c = math.log((node.visit_count + config.pb_c_base + 1) / config.pb_c_base) + config.pb_c_init
            pb_c *= math.sqrt(node.visit_count) / (n + 1)
            score = pb_c * node.prior[a] + value_score
        else:
            score = value_score + config.c_uct * math.sqrt(math.log(node.visit_count) / n)
        if score > best:
            best, best_action = score, a
    return best_action


def _set_children(node: Node, logits: list[float], legal: list[bool]):
    node.prior = softmax_legal(logits, legal) if any(legal) else {}


def reference_search(prior_logits, value: float, embedding, recurrent_fn, config, invalid=None, noise=None):
    """One tree: prior_logits (A,) list or tensor, embedding (1, ...) tensor, recurrent_fn on batches of one.

    Returns (visit counts per root action, root value, Q per root action (0 unvisited), the root node).
    """
    logits = [float(x) for x in prior_logits]
    A = len(logits)
    max_depth = config.max_depth if config.max_depth is not None else math.inf
    legal = [math.isfinite(x) and not (invalid is not None and bool(invalid[a])) for a, x in enumerate(logits)]
    root = Node(0)
    root.embedding = embedding
    _set_children(root, logits, legal)
    if noise is not None and config.root_exploration_fraction > 0:
        f = config.root_exploration_fraction
        root.prior = {a: (1 - f) * p + f * float(noise[a]) for a, p in root.prior.items()}
    root.visit_count, root.value_sum, root.raw_value = 1, float(value), float(value)
    stats = MinMaxStats()
    for _ in range(config.num_simulations):
        node, path = root, [root]
        while True:
            a = select(node, stats, config)
            child = node.children.get(a)
            if child is None:
                out, next_embedding = recurrent_fn(node.embedding, torch.tensor([a]))
                child = Node(node.depth + 1)
                child.embedding = next_embedding
                child.reward, child.discount, child.raw_value = float(out.reward[0]), float(out.discount[0]), float(out.value[0])
                child_logits = [float(x) for x in out.prior_logits[0]]
                _set_children(child, child_logits, [math.isfinite(x) for x in child_logits])
                child.expandable = child.discount != 0 and bool(child.prior) and child.depth < max_depth
                node.children[a] = child
                path.append(child)
                break
            path.append(child)
            if not child.expandable:
                break
            node = child
        G = path[-1].raw_value
        for i in range(len(path) - 1, -1, -1):
            node = path[i]
            node.visit_count += 1
            node.value_sum += G
            if i > 0:
                stats.update(edge_q(node, config.two_player))
                G = node.reward + (-1.0 if config.two_player else 1.0) * node.discount * G
    visits = [root.children[a].visit_count if a in root.children else 0 for a in range(A)]
    q = [edge_q(root.children[a], config.two_player) if a in root.children else 0.0 for a in range(A)]
    return visits, root.value(), q, root


def count_nodes(node: Node) -> int:
    return 1 + sum(count_nodes(c) for c in node.children.values())
