"""Action-sequence optimisers over a batched objective (000 section 2, 001 planning, 003 "MPC").

Every optimiser maximises ``objective(x [N, *shape]) -> [N]``: N candidate solutions evaluated as one
batch (for MPC a solution is an action sequence [H, A]; for POPLIN-P a parameter perturbation [D]).
Solutions stay inside ``[lower, upper]`` (broadcast to ``shape``). A non-finite value (NaN, +-inf)
ranks worst, never as zero: a model that blew up must not look like a safe plan. Every random draw
goes through the ``torch.Generator`` given at construction.

- :class:`RandomShooting`: 001's "guess & check": sample N sequences uniformly, keep the arg max.
- :class:`CEM`: 001's cross-entropy method (sample from N(mu, sigma^2), keep the top ``elite_fraction``,
  refit) with PETS's details: a normal truncated at two standard deviations whose spread is shrunk so the
  samples stay inside the bounds, smoothing ``alpha`` (weight kept on the old mean/variance).
- :class:`MPPI`: model-predictive path integral (Williams et al. 2017): exponentially weighted average of
  perturbed sequences, temperature ``temperature``, noise low-passed along time with ``beta``.
- :class:`ICEM`: improved CEM (Pinneri et al. 2020): temporally coloured noise with exponent
  ``noise_beta``, a population that shrinks by ``population_decay`` per iteration, a share of the elites
  kept into the next iteration, and the mean added as a candidate in the last one.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Callable

import torch

from dynarl.config import non_negative, one_of, param, positive, unit_interval, unit_interval_open_closed
from dynarl.errors import ConfigError

Objective = Callable[[torch.Tensor], torch.Tensor]
OPTIMIZERS = ("cem", "random_shooting", "mppi", "icem")


@dataclass
class OptimizerConfig:
    """Settings of every trajectory optimiser; each reads the ones it uses (names from the seeds and papers)."""

    optimizer: str = param("cem", one_of(*OPTIMIZERS), "cem (PETS), random_shooting (Nagabandi et al. 2018), mppi, icem")
    population_size: int = param(500, positive, "candidate solutions per iteration (PETS: 400-500, mbrl-lib cart-pole: 350)")
    elite_fraction: float = param(0.1, unit_interval_open_closed, "share of the population refitted by CEM/iCEM (PETS: 0.1)")
    num_iterations: int = param(5, positive, "optimiser iterations per planning step (PETS: 5)")
    alpha: float = param(0.1, unit_interval, "smoothing: weight kept on the previous mean/variance (PETS: 0.1)")
    init_std: float = param(0.25, positive, "initial standard deviation as a fraction of (upper - lower) (PETS: 1/4)")
    return_mean_elites: bool | None = param(
        None,
        help="true: execute the final (smoothed) mean; false: the best sample seen; null: each paper's choice "
        "(CEM: the mean, as PETS; iCEM: the best elite sequence, as Pinneri et al. 2020)",
    )
    temperature: float = param(1.0, positive, "MPPI: weights exp((R - max R) / temperature)")
    beta: float = param(0.0, unit_interval, "MPPI: noise smoothing along time, eps_t <- beta eps_{t-1} + (1 - beta) eps_t")
    noise_beta: float = param(2.0, non_negative, "iCEM: coloured-noise exponent (0 white, 2 red; Pinneri et al.: 2-2.5)")
    population_decay: float = param(1.25, positive, "iCEM: population divided by this factor each iteration")
    keep_elite_fraction: float = param(0.3, unit_interval, "iCEM: share of the elites carried into the next iteration")

    def size_problem(self, prefix: str = "") -> str | None:
        """One line on a population that cannot be optimised over (fewer than 2 candidates, or, for CEM
        and iCEM, an ``elite_fraction`` that leaves less than one elite), or None."""
        if self.population_size < 2:
            return (
                f"{prefix}population_size={self.population_size} is invalid: the planner needs at least 2 candidates "
                f"to compare (PETS: 400-500; e.g. {prefix}population_size=200)"
            )
        if self.optimizer in ("cem", "icem") and self.elite_fraction * self.population_size < 1:
            return (
                f"{prefix}elite_fraction={self.elite_fraction:g} is invalid with {prefix}population_size={self.population_size}: "
                f"it leaves {self.elite_fraction * self.population_size:.3g} elites; it must be >= 1/population_size = "
                f"{1 / self.population_size:.3g} (PETS: 0.1)"
            )
        return None


def rank_values(values: torch.Tensor) -> torch.Tensor:
    """Objective values with every non-finite entry (NaN, +-inf) replaced by -inf: they rank worst."""
    return torch.where(torch.isfinite(values), values, torch.full_like(values, -math.inf))


class TrajectoryOptimizer(abc.ABC):
    """Maximises a batched objective over solutions of shape ``shape`` inside ``[lower, upper]``."""

    def __init__(self, cfg: OptimizerConfig, lower: torch.Tensor, upper: torch.Tensor, generator: torch.Generator):
        self.cfg = cfg
        self.lower, self.upper = lower, upper
        self.generator = generator
        self.last_best_value = -math.inf

    @abc.abstractmethod
    def optimize(self, objective: Objective, init_mean: torch.Tensor) -> torch.Tensor:
        """The solution (shape of ``init_mean``) found from the initial mean (a warm start or the bound centre)."""

    def reset(self) -> None:
        """Episode start: forget anything carried between planning steps."""

    def shift(self, shift_fn) -> None:
        """Between planning steps: move carried solutions one step on with ``shift_fn(solution)``."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def _bounds(self, shape) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lower.expand(shape), self.upper.expand(shape)

    def _init_var(self, shape) -> torch.Tensor:
        lo, hi = self._bounds(shape)
        return ((hi - lo) * self.cfg.init_std).square()

    def _randn(self, shape, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=like.device, dtype=like.dtype)


class RandomShooting(TrajectoryOptimizer):
    """001 "guess & check": ``population_size`` uniform samples per iteration; the best sample seen wins."""

    def optimize(self, objective: Objective, init_mean: torch.Tensor) -> torch.Tensor:
        lo, hi = self._bounds(init_mean.shape)
        best, best_value = init_mean, -math.inf
        for _ in range(self.cfg.num_iterations):
            u = torch.rand((self.cfg.population_size, *init_mean.shape), generator=self.generator, device=init_mean.device, dtype=init_mean.dtype)
            samples = lo + u * (hi - lo)
            values = rank_values(objective(samples))
            i = int(values.argmax())
            if float(values[i]) > best_value:
                best, best_value = samples[i], float(values[i])
        self.last_best_value = best_value
        return best


_PHI_MINUS_2 = 0.5 * (1 + math.erf(-2 / math.sqrt(2)))  # standard normal CDF at -2


def truncated_normal(shape, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal samples truncated to [-2, 2] (PETS's ``truncnorm(-2, 2)``), seeded.

    Inverse-CDF sampling, ``z = sqrt(2) erfinv(2u - 1)`` with u uniform on [Phi(-2), Phi(2)]: one pass, no
    rejection loop (torch's ``trunc_normal_`` resamples, which is slow on large populations).
    """
    u = torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)
    u = _PHI_MINUS_2 + (1 - 2 * _PHI_MINUS_2) * u
    return torch.erfinv(2 * u - 1).mul_(math.sqrt(2)).clamp_(-2.0, 2.0)


class CEM(TrajectoryOptimizer):
    """Cross-entropy method (001 steps 1-6) with PETS's truncated sampling and smoothing.

    Each iteration: shrink the spread so that mean +- 2 std lies inside the bounds, sample
    ``mean + std * z`` with z ~ N(0, 1) truncated to [-2, 2], evaluate, keep the top
    ``elite_fraction``, then ``mean <- alpha mean + (1 - alpha) mean(elites)`` and likewise the variance.
    """

    def optimize(self, objective: Objective, init_mean: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        lo, hi = self._bounds(init_mean.shape)
        mean, var = init_mean.clone(), self._init_var(init_mean.shape)
        n_elite = max(1, math.ceil(cfg.elite_fraction * cfg.population_size))
        best, best_value = mean.clone(), -math.inf
        for _ in range(cfg.num_iterations):
            room = torch.minimum(mean - lo, hi - mean).clamp_min(0) / 2
            std = torch.minimum(var, room.square()).sqrt()
            z = truncated_normal((cfg.population_size, *mean.shape), self.generator, mean)
            samples = torch.clamp(mean + std * z, lo, hi)
            values = rank_values(objective(samples))
            top_values, top = values.topk(n_elite)
            elites = samples[top]
            if float(top_values[0]) > best_value:
                best, best_value = elites[0].clone(), float(top_values[0])
            mean = cfg.alpha * mean + (1 - cfg.alpha) * elites.mean(0)
            var = cfg.alpha * var + (1 - cfg.alpha) * elites.var(0, unbiased=False)
        self.last_best_value = best_value
        return mean if cfg.return_mean_elites in (None, True) else best


class MPPI(TrajectoryOptimizer):
    """Model-predictive path integral: ``mean <- sum_i w_i x_i``, ``w = softmax((R - max R) / temperature)``.

    Perturbations ``eps ~ N(0, (init_std (upper - lower))^2)`` are low-passed along the first (time) axis with
    ``beta`` and the samples are clipped to the bounds. Candidates with non-finite returns get weight 0;
    if every candidate is non-finite the mean is kept.
    """

    def optimize(self, objective: Objective, init_mean: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        lo, hi = self._bounds(init_mean.shape)
        mean, std = init_mean.clone(), self._init_var(init_mean.shape).sqrt()
        best_value = -math.inf
        for _ in range(cfg.num_iterations):
            eps = self._randn((cfg.population_size, *mean.shape), mean) * std
            if cfg.beta > 0 and mean.dim() > 1:
                for t in range(1, mean.shape[0]):  # a loop over horizon steps only
                    eps[:, t] = cfg.beta * eps[:, t - 1] + (1 - cfg.beta) * eps[:, t]
            samples = torch.clamp(mean + eps, lo, hi)
            values = rank_values(objective(samples))
            top = float(values.max())
            if top == -math.inf:
                continue
            best_value = max(best_value, top)
            w = torch.softmax((values - top) / cfg.temperature, dim=0)
            mean = torch.tensordot(w, samples, dims=1)
        self.last_best_value = best_value
        return mean


def coloured_noise(shape, exponent: float, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Gaussian noise [*shape] with power spectrum ~ 1/f^exponent along axis 1 (time), unit variance per entry.

    Built in the frequency domain: complex white noise scaled by f^(-exponent/2), transformed back with an
    inverse real FFT and divided by its theoretical standard deviation. ``exponent=0`` is white noise.
    """
    n, H, rest = shape[0], shape[1], tuple(shape[2:])
    if exponent == 0 or H < 2:
        return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
    f = torch.fft.rfftfreq(H, device=like.device, dtype=torch.float64)
    f[0] = f[1]  # no infinite power at DC: the lowest frequency sets the cap
    scale = f.pow(-exponent / 2)
    # the two real halves of the spectrum; DC (and Nyquist for even H) are real-valued
    re = torch.randn((n, *rest, f.numel()), generator=generator, device=like.device, dtype=torch.float64) * scale
    im = torch.randn((n, *rest, f.numel()), generator=generator, device=like.device, dtype=torch.float64) * scale
    im[..., 0] = 0
    re[..., 0] *= math.sqrt(2)
    if H % 2 == 0:
        im[..., -1] = 0
        re[..., -1] *= math.sqrt(2)
    # Var(x_t) = (2 s_0^2 + 4 sum_k s_k^2 [+ 2 s_Nyquist^2]) / H^2 for the spectrum above
    coef = torch.full_like(scale, 4.0)
    coef[0] = 2.0
    if H % 2 == 0:
        coef[-1] = 2.0
    sigma = (coef * scale.square()).sum().sqrt() / H
    x = torch.fft.irfft(torch.complex(re, im), n=H) / sigma  # [n, *rest, H]
    return x.movedim(-1, 1).to(like.dtype).contiguous()


class ICEM(TrajectoryOptimizer):
    """Improved CEM (Pinneri et al. 2020): coloured noise, shrinking population, kept elites, mean candidate.

    A share of the elites is kept into the next iteration and, shifted one step by the controller, into
    the first iteration of the next planning step. Samples are clipped to the bounds (not truncated), as in
    the paper. The best elite sequence seen is returned, as in the paper's Algorithm 1 ("execute the first
    action of the best elite sequence"), unless ``return_mean_elites=true`` (the smoothed mean, CEM's choice).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kept: torch.Tensor | None = None  # elites carried to the next planning step

    def reset(self) -> None:
        self.kept = None

    def shift(self, shift_fn) -> None:
        if self.kept is not None:
            self.kept = torch.stack([shift_fn(solution) for solution in self.kept])

    def state_dict(self) -> dict:
        return {"kept": None if self.kept is None else self.kept.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.kept = state["kept"]

    def optimize(self, objective: Objective, init_mean: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        lo, hi = self._bounds(init_mean.shape)
        mean, std = init_mean.clone(), self._init_var(init_mean.shape).sqrt()
        n_elite = max(1, math.ceil(cfg.elite_fraction * cfg.population_size))
        kept = self.kept.to(mean) if self.kept is not None and self.kept.shape[1:] == mean.shape else None
        best, best_value = mean.clone(), -math.inf
        for i in range(cfg.num_iterations):
            pop = max(2 * n_elite, int(cfg.population_size * cfg.population_decay ** (-i)))
            exponent = cfg.noise_beta if mean.dim() > 1 else 0.0
            samples = torch.clamp(mean + std * coloured_noise((pop, *mean.shape), exponent, self.generator, mean), lo, hi)
            extra = [kept] if kept is not None else []
            if i == cfg.num_iterations - 1:
                extra.append(mean.unsqueeze(0))
            if extra:
                samples = torch.cat([samples, *extra])
            values = rank_values(objective(samples))
            top_values, top = values.topk(min(n_elite, samples.shape[0]))
            elites = samples[top]
            if float(top_values[0]) > best_value:
                best, best_value = elites[0].clone(), float(top_values[0])
            n_keep = int(round(cfg.keep_elite_fraction * elites.shape[0]))
            kept = elites[:n_keep] if n_keep > 0 else None
            mean = cfg.alpha * mean + (1 - cfg.alpha) * elites.mean(0)
            std = (cfg.alpha * std.square() + (1 - cfg.alpha) * elites.var(0, unbiased=False)).sqrt()
        self.kept = kept
        self.last_best_value = best_value
        return mean if cfg.return_mean_elites is True else best


def make_optimizer(cfg: OptimizerConfig, lower: torch.Tensor, upper: torch.Tensor, generator: torch.Generator) -> TrajectoryOptimizer:
    problem = cfg.size_problem()
    if problem:
        raise ConfigError(problem)
    cls = {"cem": CEM, "random_shooting": RandomShooting, "mppi": MPPI, "icem": ICEM}[cfg.optimizer]
    return cls(cfg, lower, upper, generator)
