"""A faster stand-in for a :class:`~dynarl.models.DynamicsModel` inside the planner's model env.

Planning evaluates population x particles rows per horizon step, tens of times per env step, so the
ensemble forward is almost all of PETS's cost. :class:`PlanningModel` keeps ``DynamicsModel.predict``'s
contract (same inputs, same outputs in data units) and computes it with:

- the input normaliser folded into the first layer and the output de-normaliser of the mean folded into
  the last one (``(x - m) / s @ W + b = x @ (W / s) + (b - (m / s) @ W)``), so no extra passes over rows;
- the elites' weights gathered and cast once per model version, not per call;
- ``precision="bf16"``: the hidden (width x width) layers in bfloat16 (the first and last layers, which
  are thin, stay in float32, and so do the variance and the state update); on CPUs with AVX512-BF16 or
  AMX this is 2-3x the float32 throughput;
- ``compile=True``: the network is ``torch.compile``d (bias + SiLU + casts fused into one pass per layer).

It is read-only: the trainer keeps training the wrapped model; ``refresh()`` (or any in-place change to
the weights, detected through their version counters) makes the next call re-gather the weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dynarl.models import losses
from dynarl.models.dynamics import DynamicsModel


def _network(x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor], low: torch.dtype) -> torch.Tensor:
    """First layer fp32, hidden layers in ``low`` precision, last layer fp32; SiLU between layers."""
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases)):
        if i == last:
            x = x.float()
        x = torch.baddbmm(b, x, w)
        if i < last:
            x = F.silu(x)
            if i == 0:
                x = x.to(low)
    return x


def _predict(obs, act, weights, biases, low, extra: dict, t: int, d: int, probabilistic: bool, predict_delta: bool):
    """The whole prediction (network, variance bounds, de-normalised variance, state update) in one function,
    so that ``torch.compile`` fuses its element-wise tail too. Returns (mean [.., t], var [.., t], raw out)."""
    x = torch.cat([obs, act.to(obs.dtype)], dim=-1)
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(weights[0].shape[0], *x.shape)
    out = _network(x, weights, biases, low)
    mean = out[..., :t]
    if probabilistic:
        logvar = losses.soft_bound_logvar(out[..., t : 2 * t], extra["max_logvar"], extra["min_logvar"])
        var = logvar.exp() * extra["var_factor"]
    else:
        var = torch.zeros_like(mean)
    next_mean = mean[..., :d] + obs if predict_delta else mean[..., :d]
    return next_mean, mean, var, out


class PlanningModel:
    """``DynamicsModel.predict`` for planning, in bf16 and/or compiled; other attributes come from the model."""

    def __init__(self, model: DynamicsModel, precision: str = "bf16", compile: bool = False):
        if model.cfg.activation not in ("silu", "swish"):
            raise ValueError(f"PlanningModel supports SiLU networks, not activation={model.cfg.activation!r}; use precision=fp32")
        self.model = model
        self.precision = precision
        self.low = torch.bfloat16 if precision == "bf16" else torch.float32
        self._fn = torch.compile(_predict, dynamic=False) if compile else _predict
        self._key = None
        self._params = None

    def __getattr__(self, name):  # cfg, device, elite_idx, probabilistic, members ... of the wrapped model
        return getattr(self.__dict__["model"], name)

    def refresh(self) -> None:
        """Drop the cached weights (they are also re-gathered whenever the model's tensors change)."""
        self._key = None

    def _version(self, members: torch.Tensor | None) -> tuple:
        m = self.model
        tensors = [layer.weight for layer in m.net.layers] + [m.input_normalizer.mean, m.target_normalizer.std, m.variance_scale]
        if m.probabilistic:
            tensors += [m.max_logvar, m.min_logvar]
        ids = tuple(members.tolist()) if members is not None else None
        return (ids, tuple((t.data_ptr(), t._version) for t in tensors))

    @torch.no_grad()
    def _prepare(self, members: torch.Tensor | None):
        m = self.model
        layers = m.net.layers
        ws = [(layer.weight if members is None else layer.weight[members]).detach().float() for layer in layers]
        bs = [(layer.bias if members is None else layer.bias[members]).detach().float() for layer in layers]
        mu, sd = m.input_normalizer.mean, m.input_normalizer.std
        bs[0] = bs[0] - torch.matmul((mu / sd).view(1, 1, -1), ws[0])
        ws[0] = ws[0] / sd.view(1, -1, 1)
        t = m.target_dim
        tmu, tsd = m.target_normalizer.mean, m.target_normalizer.std
        ws[-1] = ws[-1].clone()
        bs[-1] = bs[-1].clone()
        ws[-1][..., :t] *= tsd
        bs[-1][..., :t] = bs[-1][..., :t] * tsd + tmu
        for i in range(1, len(ws) - 1):
            ws[i], bs[i] = ws[i].to(self.low).contiguous(), bs[i].to(self.low)
        ws[-1] = ws[-1].contiguous()
        extra = {"var_factor": m.variance_scale * tsd.square()}
        if m.probabilistic:
            extra["max_logvar"], extra["min_logvar"] = m.max_logvar.detach(), m.min_logvar.detach()
        return ws, bs, extra

    @torch.no_grad()
    def predict(self, obs: torch.Tensor, act: torch.Tensor, members: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        key = self._version(members)
        if key != self._key:
            self._params, self._key = self._prepare(members), key
        ws, bs, extra = self._params
        m = self.model
        t, d = m.target_dim, m.obs_dim
        next_mean, mean, var, out = self._fn(obs, act, ws, bs, self.low, extra, t, d, m.probabilistic, m.cfg.predict_delta)
        result = {"next_obs_mean": next_mean, "next_obs_var": var[..., :d]}
        if m.cfg.learn_reward:
            result["reward_mean"], result["reward_var"] = mean[..., d], var[..., d]
        if m.cfg.learn_termination:
            result["termination_prob"] = torch.sigmoid(out[..., -1])
        return result
