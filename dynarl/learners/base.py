"""What every learner shares: a pure update rule over a batch, and its saveable state."""

from __future__ import annotations

import abc
import copy
import functools
import types
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import torch
from torch import nn
from torch.func import functional_call, grad_and_value

from dynarl.config import one_of, param, positive, positive_sizes, unit_interval, unit_interval_open_closed
from dynarl.data.batch import Batch
from dynarl.nn.optim import FusedAdam, one_device_and_dtype


@dataclass
class LossOptions:
    """How a learner runs its pure loss methods (:meth:`Learner._wrap_losses`): in bf16 autocast, compiled, or both."""

    precision: str = param("fp32", one_of("fp32", "bf16"), "bf16: autocast the networks' matmuls to bfloat16 (fp32 weights, optimiser and losses; layers with <= 16 inputs or outputs stay fp32)")
    compile: bool = param(False, help="torch.compile each gradient computation as one graph (forward, backward, clipping); the first updates compile, ~30 s on CPU; on GPUs it fuses small kernels")


@dataclass
class ActorCriticConfig(LossOptions):
    """Hyper-parameters shared by the off-policy actor-critics (SAC, TD3, DDPG)."""

    gamma: float = param(0.99, unit_interval_open_closed, "discount")
    tau: float = param(0.005, unit_interval, "Polyak rate: target <- (1 - tau) target + tau online (DDPG's convention, Lillicrap et al. 2016)")
    actor_lr: float = param(3e-4, positive, "actor Adam learning rate")
    critic_lr: float = param(3e-4, positive, "critic Adam learning rate")
    hidden_sizes: tuple[int, ...] = param((256, 256), positive_sizes, "hidden layer widths of actor and critics")


class ModuleCall(nn.Module):
    """A learner's modules as one module, so ``functional_call`` can put other tensors in their parameters' place
    while any function of the learner runs: ``functional_call(call, params, (fn, args, kwargs))``."""

    def __init__(self, modules: dict[str, nn.Module]):
        super().__init__()
        self.parts = nn.ModuleDict(modules)

    def forward(self, fn, args, kwargs):
        return fn(*args, **kwargs)


def compiled(fn: Callable, fullgraph: bool = False) -> Callable:
    """``torch.compile(fn)`` through a function with a code object of its own.

    Dynamo keeps its compiled graphs, and its limit of 8 per function (``recompile_limit``), on the code object it
    traces. Every learner's gradient functions and wrapped losses would otherwise share a few code objects (the
    same closure, torch's autocast wrapper), and after about four SAC learners in one process, as in a sweep or a
    benchmark of sequential seeds, the rest would run uncompiled."""

    def call(*args, **kwargs):
        return fn(*args, **kwargs)

    return torch.compile(types.FunctionType(call.__code__.replace(), call.__globals__, call.__name__, None, call.__closure__), fullgraph=fullgraph)


class AheadOfTime:
    """``fn`` compiled whole (``torch.compile(fullgraph=True)``) ahead of time for each kind of input it meets, and
    called without Dynamo's per-call frame evaluation.

    A function that ``torch.compile`` wraps pays, on every call, for Dynamo's frame hook and cache lookup: 20-30 us
    of a 400 us bf16 DQN update on one CPU core. torch's ahead-of-time compile (``aot_compile``) returns the same
    graph as a plain function together with its guards. Here each variant's guards are checked before it runs (a
    few microseconds), and inputs that no variant accepts (another batch shape, an optional field filled) compile
    a new variant, as Dynamo recompiles, up to its limit of 8; past it, or where torch cannot compile ``fn`` this
    way (a graph break, guards it cannot serialise, the seeds' map), the call goes to :func:`compiled`'s per-call path.

    The ahead-of-time compile keeps only the guards it can serialise: those on tensors (shape, dtype, stride,
    device), on Python values the graph read (config numbers and flags) and on the global state (grad mode,
    autocast), not those on object identity. A learner's gradient functions meet the same modules and loss
    methods on every call, so that is enough here; it is not a general replacement for ``torch.compile``.
    torch's autograd cache is off for these compiles: where it cannot hash a graph (one with an autocast region)
    it keys the entry by a draw from Python's ``random``, which takes a draw from the user's seeded stream and
    gives every process seeded alike the same key, so one program's graph was loaded for another's.
    """

    LIMIT = 8

    def __init__(self, fn: Callable):
        self._fn = fn
        self._whole = compiled(fn, fullgraph=True)
        self._per_call: Callable | None = None
        self._variants: list = []

    def __getstate__(self) -> dict:
        """Nothing. torch pickles the objects a new graph's guards read into that graph's guard state, the learner
        among them, and with it its other AheadOfTime objects, whose compiled variants cannot be pickled (this is why
        SAC's actor loss, compiled after the critic's, fell back to the per-call path). No copy needs them."""
        return {}

    def __call__(self, *args):
        for variant in self._variants:
            if variant.guard_check(*args):
                return variant(*args)
        if self._per_call is None and len(self._variants) < self.LIMIT:
            variant = self._compile_ahead(args)
            if variant is not None:
                self._variants.append(variant)
                return variant(*args)
        if self._per_call is None:
            self._per_call = compiled(self._fn)
        return self._per_call(*args)

    def _compile_ahead(self, args: tuple):
        """A variant for ``args``, or None where torch cannot compile ``fn`` ahead of time (a graph break, say)."""
        for _ in range(3):
            try:
                with torch._functorch.config.patch(enable_autograd_cache=False):
                    variant = self._whole.aot_compile((args, {}))
            except torch._dynamo.exc.RestartAnalysis:
                continue  # trace again, as Dynamo's own path does (it has marked a Python float to trace as a tensor)
            except Exception:  # noqa: BLE001 - the per-call path takes what the ahead-of-time compile cannot
                return None
            variant.disable_guard_check()  # __call__ checks the guards, once per call
            return variant
        return None


def clip_coefficient(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """min(1, max_norm / (||g|| + 1e-6)) for the global norm of ``grads``: the factor torch's ``clip_grad_norm_``
    scales them by (a tensor, so no host sync)."""
    total_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    return torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)


def _optimizer_step(opt: torch.optim.Optimizer) -> None:
    """``opt.step()``, inside ``torch.no_grad()``; a :class:`FusedAdam` steps without torch's step wrapper (dynarl
    registers no step hooks)."""
    if isinstance(opt, FusedAdam):
        opt.step_without_hooks()
    else:
        opt.step()


class Learner(abc.ABC):
    """A pure update rule: ``update(batch) -> metrics`` and ``act(obs, deterministic)``.

    Every learner is built as ``Learner(cfg, observation_space, action_space, device)`` from Gymnasium spaces;
    continuous learners act in [-1, 1]^|A| (the algorithm's :class:`dynarl.envs.spaces.ActionAdapter` scales).

    It owns its networks and optimisers and never sees where a batch came from. Subclasses list their
    modules and optimisers so checkpoints can save and restore them whole.
    """

    name = "learner"
    # the pure methods (losses, ``act``) that a vectorised learner maps over seeds with torch.vmap; the rest of
    # ``update`` (optimiser steps, target updates) runs once on the seed-stacked parameters
    per_seed: tuple[str, ...] = ()

    def __init__(self, device: torch.device):
        self.device = device
        self.num_updates = 0
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        # accumulated (without host syncs) so a non-finite loss is caught at the next check
        self._finite = torch.ones((), dtype=torch.bool, device=device)
        self.bf16_methods: tuple[str, ...] = ()  # the methods _wrap_losses put under bf16 autocast
        self._losses: dict[str, Callable] = {}  # the wrapped methods before compilation: what one-graph gradients differentiate
        self._gradients: dict[tuple[str, str], Callable] = {}  # compiled gradient functions by (optimiser, loss)

    @abc.abstractmethod
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update of every network from ``batch``; returns detached metric tensors."""

    @abc.abstractmethod
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions for a batch of observations (no gradient)."""

    def _wrap_losses(self, *names: str) -> None:
        """Run the named pure methods (the losses, and network passes that feed them) under bf16 autocast and/or
        torch.compile, as configured.

        Networks return float32 outputs, so losses and their reductions stay in float32 either way.
        """
        for name in names:
            self._losses[name], wrapped = self._as_configured(getattr(self, name))
            if self.cfg.precision == "bf16":
                self.bf16_methods += (name,)
            setattr(self, name, wrapped)

    def _as_configured(self, fn: Callable) -> tuple[Callable, Callable]:
        """``fn`` under bf16 autocast where ``precision="bf16"``, before and after ``torch.compile`` where ``compile``
        (the same function twice where it is not): how :meth:`_wrap_losses` runs a loss, for any network pass."""
        if self.cfg.precision == "bf16":
            fn = self._autocast()(fn)
        return fn, (compiled(fn) if self.cfg.compile else fn)

    def _autocast(self) -> torch.autocast:
        """bf16 autocast where ``precision="bf16"`` (as :meth:`_wrap_losses` runs the losses), else a no-op."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16")

    def _step(self, name: str, loss: torch.Tensor, inputs: list[torch.Tensor] | None = None, max_grad_norm: float = 0.0) -> None:
        """One gradient step of optimiser ``name`` on ``loss`` (only ``inputs`` receive gradients), with the
        gradient's global norm clipped to ``max_grad_norm`` when it is positive."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.sum().backward(inputs=inputs)  # a vectorised learner's loss holds one value per seed
        if max_grad_norm > 0:
            self._clip_grad_norm(inputs or [p for group in opt.param_groups for p in group["params"]], max_grad_norm)
        with torch.no_grad():
            _optimizer_step(opt)

    def _minimise(self, name: str, loss: str, *args, inputs: list[torch.Tensor] | None = None, max_grad_norm: float = 0.0):
        """One gradient step of optimiser ``name`` on the loss method ``loss`` called with ``args`` (its output is the
        loss, or a tuple of the loss and more); returns that output.

        Eager, autograd differentiates (:meth:`_step`: only ``inputs`` receive gradients). Compiled (``compile``, for a
        method :meth:`_wrap_losses` wrapped), ``torch.func`` differentiates the method with respect to the optimiser's
        parameters, so its forward pass, backward pass and the gradient clipping are one graph (compiled ahead of time,
        :class:`AheadOfTime`), and Adam's fused kernel steps the result: a DQN update of CartPole's 4-256-256-2 network
        took 547 us this way on one CPU core, against 667 us with the loss alone compiled (whose backward goes through
        autograd's engine).
        """
        if not (self.cfg.compile and loss in self._losses and self._one_graph(loss)):
            out = getattr(self, loss)(*args)
            self._step(name, out[0] if isinstance(out, tuple) else out, inputs, max_grad_norm)
            return out
        if (name, loss) not in self._gradients:
            self._gradients[name, loss] = AheadOfTime(self._gradient_function(loss))
        with torch.no_grad():  # torch.func differentiates inside; outside, nothing needs a graph
            grads, out = self._gradients[name, loss](self._optimised[name], self._loss_inputs(loss, args), max_grad_norm, *args)
            self._step_with(name, grads)
        return out

    def _one_graph(self, loss: str) -> bool:
        """Whether :meth:`_minimise` may differentiate ``loss`` in one compiled graph."""
        return True

    def _gradient_function(self, loss: str) -> Callable:
        """``(params, inputs, max_grad_norm, *args) -> (gradients of ``loss`` with respect to ``params``, in their order,
        clipped when ``max_grad_norm > 0``; the loss method's output)`` for :meth:`_minimise` (``inputs``:
        :meth:`_loss_inputs`)."""

        def gradients(params: dict[str, torch.Tensor], inputs, max_grad_norm: float, *args):
            def loss_of(p: dict[str, torch.Tensor]):
                out = self._loss_with(loss, p, inputs, args)
                value, rest = (out[0], out[1:]) if isinstance(out, tuple) else (out, ())
                return value.sum(), (value, rest)  # a vectorised learner's loss holds one value per seed

            grads, (_, (value, rest)) = grad_and_value(loss_of, has_aux=True)(params)
            grads = list(grads.values())
            if max_grad_norm > 0:
                grads = self._clipped(grads, max_grad_norm)
            return grads, ((value, *rest) if rest else value)

        return gradients

    def _loss_inputs(self, loss: str, args: tuple):
        """What the compiled gradient of ``loss`` takes besides the parameters and ``args`` (a vectorised learner's
        random draws, made outside the graph); nothing here."""
        return None

    def _loss_with(self, loss: str, params: dict[str, torch.Tensor], inputs, args: tuple):
        """The loss method ``loss(*args)`` with ``params`` in place of the learner's own parameters of those names."""
        return functional_call(self._module_call, params, (self._losses[loss], args, {}))

    def _clipped(self, grads: list[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
        """``grads`` scaled so that their global norm is at most ``max_norm`` (torch's ``clip_grad_norm_`` formula)."""
        coef = clip_coefficient(grads, max_norm)
        return [g * coef for g in grads]

    @functools.cached_property
    def _module_call(self) -> ModuleCall:
        return ModuleCall(self.modules)

    @functools.cached_property
    def _optimised(self) -> dict[str, dict[str, torch.Tensor]]:
        """Each optimiser's parameters by their names in :attr:`_module_call`, in the optimiser's order."""
        names = {id(p): n for n, p in self._module_call.named_parameters()}
        return {k: {names[id(p)]: p for group in opt.param_groups for p in group["params"]} for k, opt in self.optimizers.items()}

    def _step_with(self, name: str, grads: list[torch.Tensor]) -> None:
        """A step of optimiser ``name`` on gradients computed elsewhere (``grads``, already clipped, in the order of
        the optimiser's parameters), inside ``torch.no_grad()``."""
        for p, g in zip(self._optimised[name].values(), grads, strict=True):
            # contiguous, as autograd leaves them: the fused Adam kernel reads a strided gradient (a vmapped layer's
            # transposed weight gradient) in the wrong order on the CPU
            p.grad = g.contiguous()
        _optimizer_step(self.optimizers[name])

    def _permutation(self, n: int) -> torch.Tensor:
        """A random permutation of ``n`` rows (minibatch shuffling)."""
        return torch.randperm(n, device=self.device)

    def _rows(self, x: torch.Tensor, idx) -> torch.Tensor:
        """Rows ``idx`` (an index tensor or a slice) of ``x``; a vectorised learner takes each seed's own."""
        return x[idx]

    def _clip_grad_norm(self, params: list[torch.Tensor], max_norm: float) -> None:
        """Scale the gradients of ``params`` so their global norm is at most ``max_norm`` (no host sync).

        torch's ``clip_grad_norm_(foreach=True)`` op for op (the same numbers), without its regrouping by
        device and dtype on every call, which it keeps for gradients of mixed devices or dtypes."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        if not one_device_and_dtype(grads):
            torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
            return
        torch._foreach_mul_(grads, clip_coefficient(grads, max_norm))

    def _watch(self, *losses: torch.Tensor) -> None:
        for loss in losses:
            self._finite &= torch.isfinite(loss.detach())

    def all_finite(self) -> bool:
        """True when every loss so far and every parameter is finite (one host sync)."""
        ok = self._finite.clone()
        for module in self.modules.values():
            for p in module.parameters():
                ok &= torch.isfinite(p).all()
        return bool(ok)

    def state_dict(self) -> dict:
        return {
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.num_updates = int(state["num_updates"])


class ActorCriticLearner(Learner):
    """The off-policy actor-critics (SAC, TD3, DDPG): one critic target and loss, two hooks.

    ``target_policy(s) -> (a, bonus)`` gives the action the target follows in ``s`` and the per-step value
    bonus that comes with it (SAC: ``-alpha log pi(a|s)``; DDPG/TD3: 0), so that

        V'(s') = min_i Q'_i(s', a') + bonus(a'),  a', bonus = target_policy(s')
        y      = r + gamma (1 - terminated) V'(s')

    Truncated transitions bootstrap: a time limit is not a terminal state. ``value_expansion`` (set by an
    algorithm that owns a model: MVE, :class:`dynarl.learners.value_expansion.ValueExpansion`) replaces the
    one-step target with H-step ones built from the same two hooks, and the critic loss with its own.
    """

    critic: nn.Module
    critic_target: nn.Module
    value_expansion = None  # a ValueExpansion: ``(learner, batch) -> Q^_0`` and ``critic_loss(learner, batch)``

    @abc.abstractmethod
    def target_policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        """(a, bonus) for bootstrapped and imagined steps."""

    def _one_graph(self, loss: str) -> bool:
        """Not the critic's loss with value expansion: its imagined path steps a model env, which inductor fails to
        compile inside torch.func's transform; that loss is compiled alone and autograd differentiates it."""
        return self.value_expansion is None or loss != "critic_loss"

    @torch.no_grad()
    def next_value(self, next_obs: torch.Tensor) -> torch.Tensor:
        """V'(s') = min_i Q'_i(s', a') + bonus, with (a', bonus) = target_policy(s')."""
        next_act, bonus = self.target_policy(next_obs)
        return self.critic_target(next_obs, next_act).min(0).values + bonus

    @torch.no_grad()
    def td_target(self, batch: Batch) -> torch.Tensor:
        """y = r + gamma (1 - terminated) V'(s'); one critic gives DDPG's target, two the clipped double Q."""
        if self.value_expansion is not None:
            return self.value_expansion(self, batch)
        return batch.reward + self.cfg.gamma * (1.0 - batch.terminated) * self.next_value(batch.next_obs)

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """J_Q = E[1/2 (Q_i(s, a) - y)^2] summed over the critics; also the metrics to log (``q``: the mean Q).
        With ``value_expansion`` set, MVE's loss over the imagined path instead."""
        if self.value_expansion is not None:
            return self.value_expansion.critic_loss(self, batch)
        return self.bellman_loss(batch, self.critic(batch.obs, batch.act))

    def bellman_loss(self, batch: Batch, q: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """J_Q = E[1/2 (Q_i(s, a) - y)^2] summed over the critics, for their values ``q`` [members, B] at ``batch``'s
        pairs; also ``{"q": the mean Q}`` for the log."""
        return 0.5 * (q - self.td_target(batch)).pow(2).mean(1).sum(), {"q": q.detach().mean()}


class StochasticActor:
    """``act`` and ``log_prob`` of learners whose ``actor(obs, deterministic) -> (action, log_prob)`` also has
    ``log_prob(obs, act)`` (SAC's tanh-Gaussian, AWAC's Gaussian): actions in [-1, 1]."""

    actor: nn.Module

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.actor(obs, deterministic)[0]

    @torch.no_grad()
    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) (off-policy evaluation, behaviour log-probabilities)."""
        return self.actor.log_prob(obs, act)


def flat_dim(space: gym.Space) -> int:
    """The length of a space's flattened (Box) or one-hot (Discrete) vector."""
    return int(gym.spaces.flatdim(space))


def target_copy(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """theta' <- (1 - tau) theta' + tau theta, as one fused foreach op."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


def adam(params, lr: float) -> torch.optim.Adam:
    return FusedAdam(params, lr=lr)
