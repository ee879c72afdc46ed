"""Several seeds' learners trained as one: every weight gains a leading seed dimension.

``vectorize(learners, ...)`` builds a learner of the same class whose parameters are the seeds' parameters
stacked, ``[S, *shape]``, and makes each seed's own learner a view of its slice, so evaluating, saving or
loading seed i through its own learner reads and writes the stacked weights. The class's ``per_seed``
methods (the pure losses and ``act``) run once for all seeds through ``torch.vmap`` over
``torch.func.functional_call``; the rest of ``update`` (optimiser steps, target updates) is the class's own
code acting on the stacked tensors. That is exact per seed because nothing there mixes rows of the seed
dimension:

- the per-seed losses are summed before ``backward``, and seeds share no parameter, so each seed's
  gradient is its own loss's gradient;
- Adam is elementwise, so one Adam over stacked tensors is S independent Adams (the step count is shared,
  as the seeds update in lock-step); Polyak averaging and target copies are elementwise too;
- gradient clipping by global norm, the one reduction across parameters, is done per seed.

Random draws inside the mapped methods (policy samples, target smoothing) cannot come from each seed's
generator under vmap: the first call of each method with given shapes records its draws on seed 0 without
the map, and every call then draws them beforehand from each seed's generator (``seed_scope(i)``), in the
order and shapes a separate run draws them, and plays them back inside the map (:mod:`dynarl.nn.noise`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager

import gymnasium as gym
import torch
from torch import nn
from torch.func import functional_call, vmap

from dynarl.errors import ConfigError
from dynarl.learners.base import Learner, ModuleCall
from dynarl.nn import noise
from dynarl.nn.mlp import EnsembleLinear


class _SeedStacked:
    """What a vectorised learner changes in its learner class (a mix-in placed first)."""

    seeds: int
    _seed_scope: Callable[[int], AbstractContextManager]

    def _permutation(self, n: int) -> torch.Tensor:
        """One permutation per seed, each drawn from that seed's stream: [S, n]."""
        perms = []
        for i in range(self.seeds):
            with self._seed_scope(i):
                perms.append(torch.randperm(n, device=self.device))
        return torch.stack(perms)

    def _rows(self, x: torch.Tensor, idx) -> torch.Tensor:
        """Each seed's rows ``idx[i]`` (a [S, n] index) or ``idx`` (a slice) of the seed-stacked ``x``."""
        if isinstance(idx, slice):
            return x[:, idx]
        return x[torch.arange(self.seeds, device=x.device)[:, None], idx]

    def _clip_grad_norm(self, params: list[torch.Tensor], max_norm: float) -> None:
        """torch's ``clip_grad_norm_`` formula per seed: g_i <- g_i min(1, max_norm / (||g_i|| + 1e-6))."""
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, self._seed_clip_coefficients(grads, max_norm))

    def _clipped(self, grads: list[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
        return [g * c for g, c in zip(grads, self._seed_clip_coefficients(grads, max_norm), strict=True)]

    def _seed_clip_coefficients(self, grads: list[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
        """min(1, max_norm / (||g_i|| + 1e-6)) per seed i, shaped to scale each of ``grads``."""
        norms = torch.stack([g.reshape(self.seeds, -1).norm(dim=1) for g in grads]).norm(dim=0)
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        return [coef.reshape(-1, *([1] * (g.dim() - 1))) for g in grads]

    # compiled gradients (``compile``): the random draws are made outside the graph, the map runs inside it

    def _loss_inputs(self, loss: str, args: tuple):
        return self._seed_maps[loss].draws(args, {})

    def _loss_with(self, loss: str, params: dict[str, torch.Tensor], inputs, args: tuple):
        seed_map = self._seed_maps[loss]
        return seed_map.run({**seed_map.params, **params}, inputs, args, {})


def vectorize(learners: list[Learner], observation_space: gym.Space, action_space: gym.Space,
              seed_scope: Callable[[int], AbstractContextManager]) -> Learner:
    """One learner training ``learners`` (one per seed, same class and config) as a batch; see the module doc.

    ``seed_scope(i)`` is a context in which the process's generator is seed i's (the caller keeps one
    generator state per seed). The returned learner's ``update`` takes a batch stacked over seeds
    (``[S, B, ...]`` per field) and returns metrics with a leading seed dimension.
    """
    first = learners[0]
    cls = type(first)
    if not cls.per_seed:
        raise ConfigError(f"{cls.__name__} does not declare its per-seed methods; it cannot be vectorised over seeds")
    if getattr(first, "value_expansion", None) is not None:
        raise ConfigError("model-based value expansion and vectorised seeds do not combine yet (its imagined paths run each seed's own model); set mve_horizon=1")
    devices = [first.device] if first.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # its own initial weights are overwritten: keep the seeds' streams
        vec = type(f"SeedStacked{cls.__name__}", (_SeedStacked, cls), {})(first.cfg, observation_space, action_space, first.device)
    vec.seeds = len(learners)
    vec._seed_scope = seed_scope
    for module in vec.modules.values():
        for layer in module.modules():
            if getattr(layer, "fp32_under_autocast", False):
                # under the map a thin layer's matmul is a batched one, which fp32 runs on a slow path when it has
                # few outputs (8 bf16 SAC seeds: 17.2 against 14.9 ms per update): the stacked layers all stay bf16
                layer.fp32_under_autocast = False
    counts = {learner.num_updates for learner in learners}
    if len(counts) != 1:
        raise ConfigError(f"the seeds' learners have made different numbers of updates ({sorted(counts)}); vectorised seeds move in lock-step")
    vec.num_updates = counts.pop()  # resumed seeds: schedules keyed on the count (TD3's policy delay, DQN's target copies) go on from it
    _stack_parameters(vec, learners)
    vec._finite = torch.ones(vec.seeds, dtype=torch.bool, device=vec.device)
    for i, learner in enumerate(learners):
        learner._finite = vec._finite[i]  # a view: the stacked learner's checks are each seed's own
    vec._optimizer_links = {name: False for name in vec.optimizers}
    vec._seed_learners = learners
    _stack_optimizer_state(vec, learners)
    container = vec._module_call
    params = dict(container.named_parameters())  # the stacked tensors: their identity never changes, only values
    recorded: dict = {}
    biases = _matmul_biases(container)
    vec._seed_maps = {}
    for name in cls.per_seed:
        cast = biases if name in vec.bf16_methods else set()
        fn = vec._losses.get(name, getattr(vec, name))  # a loss as wrapped before compilation: compiled, the map runs in its gradient's graph
        vec._seed_maps[name] = _SeedMap(fn, name, container, params, cast, recorded, vec.seeds, vec.device, seed_scope)
        setattr(vec, name, vec._seed_maps[name])
    return vec


def after_update(vec: Learner) -> None:
    """Give each seed's learner the update count and (once Adam has made it) a view of its optimiser state."""
    for learner in vec._seed_learners:
        learner.num_updates = vec.num_updates
    for name, linked in vec._optimizer_links.items():
        if not linked and vec.optimizers[name].state:
            _link_optimizer_state(vec, name)


# --- stacking ------------------------------------------------------------------------------------------------


def _stack_parameters(vec: Learner, learners: list[Learner]) -> None:
    for name, module in vec.modules.items():
        if any(True for _ in module.buffers()):
            raise ConfigError(f"the learner's module '{name}' has buffers (running statistics); vectorised seeds support parameters only")
        seeds = [dict(learner.modules[name].named_parameters()) for learner in learners]
        for pname, p in module.named_parameters():
            p.data = torch.stack([s[pname].data for s in seeds])
            for i, s in enumerate(seeds):
                s[pname].data = p.data[i]


def _paired_params(vec: Learner, learner: Learner, name: str):
    for group_v, group_s in zip(vec.optimizers[name].param_groups, learner.optimizers[name].param_groups, strict=True):
        yield from zip(group_v["params"], group_s["params"], strict=True)


def _stack_optimizer_state(vec: Learner, learners: list[Learner]) -> None:
    """Resumed seeds bring optimiser state: stack it into the stacked learner's optimisers, then link views."""
    for name, opt in vec.optimizers.items():
        if not learners[0].optimizers[name].state:
            continue
        pairs = [list(_paired_params(vec, learner, name)) for learner in learners]
        for k, (p_vec, _) in enumerate(pairs[0]):
            states = [learner.optimizers[name].state[pairs[i][k][1]] for i, learner in enumerate(learners)]
            if len({float(s["step"]) for s in states}) != 1:
                raise ConfigError(f"the seeds' '{name}' optimisers have taken different numbers of steps; vectorised seeds move in lock-step")
            opt.state[p_vec] = {key: (states[0][key].clone() if key == "step" else torch.stack([s[key] for s in states])) for key in states[0]}
        _link_optimizer_state(vec, name)


def _link_optimizer_state(vec: Learner, name: str) -> None:
    """Seed i's optimiser state becomes views of slice i (Adam's moments); the step count, the same for all
    seeds, is one shared tensor."""
    opt = vec.optimizers[name]
    for i, learner in enumerate(vec._seed_learners):
        for p_vec, p_seed in _paired_params(vec, learner, name):
            learner.optimizers[name].state[p_seed] = {key: (value if key == "step" else value[i]) for key, value in opt.state[p_vec].items()}
    vec._optimizer_links[name] = True


# --- the map over seeds --------------------------------------------------------------------------------------


def _as_tree(arg):
    """A dataclass of tensors (Batch, Rollout) as a dict of its tensors (vmap maps dicts, not dataclasses)."""
    if dataclasses.is_dataclass(arg):
        return {k: v for k, v in vars(arg).items() if v is not None}
    return arg


def _from_tree(arg, kind: type | None):
    return kind(**arg) if kind is not None else arg


def _matmul_biases(container: ModuleCall) -> set[str]:
    """The names of the biases that only a linear layer's matmul reads (nn.Linear, EnsembleLinear)."""
    return {f"{name}.bias" for name, m in container.named_modules() if isinstance(m, (nn.Linear, EnsembleLinear)) and m.bias is not None}


class _SeedMap:
    """A per-seed method ``fn`` mapped over the seed dimension: calling it runs :meth:`draws` then :meth:`run`.

    ``bf16_biases``, for a method that runs under bf16 autocast, enter the map cast to bf16: vmap splits a linear
    layer into a matmul and an add, and autocast, which would cast the bias with the matmul's operands, then leaves it
    fp32 and the add promotes every activation back to fp32."""

    def __init__(self, fn, name: str, container: ModuleCall, params: dict, bf16_biases: set[str], recorded: dict, seeds: int, device: torch.device, seed_scope):
        self.fn, self.name, self.container, self.params = fn, name, container, params
        self.bf16_biases, self.recorded, self.seeds, self.device, self.seed_scope = bf16_biases, recorded, seeds, device, seed_scope

    def __call__(self, *args, **kwargs):
        return self.run(self.params, self.draws(args, kwargs), args, kwargs)

    def draws(self, args: tuple, kwargs: dict) -> list[torch.Tensor]:
        """The method's random draws for ``args``, each seed's from its own generator, stacked: [S, ...] each."""
        trees, batches = _trees(args)
        key = (self.name, tuple(_shapes(t) for t in trees), tuple(sorted(kwargs.items())))
        if key not in self.recorded:  # the draws of one call, from seed 0 without the map
            with torch.no_grad(), noise.tape(noise.NoiseTape()) as tape:
                first = {k: v[0] for k, v in self.params.items()}
                functional_call(self.container, first, (self.fn, tuple(_from_tree(_index(t, 0), b) for t, b in zip(trees, batches, strict=True)), kwargs))
            self.recorded[key] = tape.recorded
        if not self.recorded[key]:
            return []
        per_seed_draws = []
        for i in range(self.seeds):
            with self.seed_scope(i):
                per_seed_draws.append(noise.draw(self.recorded[key], self.device))
        return [torch.stack(draws) for draws in zip(*per_seed_draws, strict=True)]

    def run(self, params: dict, played: list[torch.Tensor], args: tuple, kwargs: dict):
        """``fn`` per seed under ``torch.vmap`` with the seed-stacked ``params`` and ``played`` draws."""
        trees, batches = _trees(args)
        fn, container = self.fn, self.container

        def per_seed(params, played, args, kwargs):
            with noise.tape(noise.NoiseTape(played)):
                return functional_call(container, params, (fn, tuple(_from_tree(a, b) for a, b in zip(args, batches, strict=True)), kwargs))

        in_dims = (0, 0, tuple(0 if _mapped(t) else None for t in trees), None)
        mapped_params = {k: v.to(torch.bfloat16) if k in self.bf16_biases else v for k, v in params.items()} if self.bf16_biases else params
        return vmap(per_seed, in_dims=in_dims)(mapped_params, played, trees, kwargs)


def _trees(args: tuple) -> tuple[tuple, tuple]:
    """The arguments as vmap maps them (dataclasses as dicts of tensors), and the dataclass types to rebuild them."""
    return tuple(_as_tree(a) for a in args), tuple(type(a) if dataclasses.is_dataclass(a) else None for a in args)


def _mapped(tree) -> bool:
    return isinstance(tree, (torch.Tensor, dict))


def _shapes(tree):
    if isinstance(tree, torch.Tensor):
        return tuple(tree.shape)
    if isinstance(tree, dict):
        return tuple((k, tuple(v.shape)) for k, v in tree.items())
    return tree


def _index(tree, i: int):
    if isinstance(tree, torch.Tensor):
        return tree[i]
    if isinstance(tree, dict):
        return {k: v[i] for k, v in tree.items()}
    return tree


__all__ = ["after_update", "vectorize"]
