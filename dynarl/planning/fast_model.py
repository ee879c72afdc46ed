"""A faster stand-in for a :class:`~dynarl.models.DynamicsModel` inside the planner's model env.

Planning evaluates population x particles rows per horizon step, tens of times per env step, so the
ensemble forward is almost all of PETS's cost. :class:`PlanningModel` keeps ``DynamicsModel.predict``'s
contract (same inputs, same outputs in data units) and computes it with:

- the elites' weights gathered and cast once per model version, not per call;
- ``precision="bf16"``: every layer in bfloat16, so the wide (rows x width) activations never change dtype.
  Only the thin tensors are cast: the input is normalised in float32 and then cast (normalised values
  keep bf16's relative precision; raw observations with a large mean would not), and the output is cast
  back to float32 before de-normalisation, the variance and the state update (the normalisers are not
  folded into the weights: a folded bias in bf16 would round small deltas away). On CPUs with AVX512-BF16
  or AMX this is 2-3x the float32 throughput, and it is the work a bare bf16 ensemble forward does;
- ``compile=True``: the network is ``torch.compile``d (bias + SiLU fused into one pass per layer).

It is read-only: the trainer keeps training the wrapped model; ``refresh()`` (or any in-place change to
the weights, detected through their version counters) makes the next call re-gather the weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dynarl.models import losses
from dynarl.models.dynamics import DynamicsModel
from dynarl.nn.mlp import in_row_passes


def _network(x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> torch.Tensor:
    """baddbmm + SiLU per layer in the weights' dtype (no SiLU after the last layer)."""
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases)):
        x = torch.baddbmm(b, x, w)
        if i < last:
            x = F.silu(x, inplace=True)  # x is the fresh baddbmm output (no autograd here); in place is faster in bf16
    return x


def _predict(obs, act, weights, biases, low, extra: dict, t: int, d: int, probabilistic: bool, predict_delta: bool):
    """The whole prediction (normalisation, network, variance bounds, de-normalisation, state update) in one
    function, so that ``torch.compile`` fuses its element-wise tail too. Returns (next mean, mean, var, raw out)."""
    x = torch.cat([obs, act.to(obs.dtype)], dim=-1)
    x = ((x - extra["in_mean"]) / extra["in_std"]).to(low)
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(weights[0].shape[0], *x.shape)
    out = in_row_passes(lambda part: _network(part, weights, biases), x, max(w.shape[-1] for w in weights)).float()
    mean = out[..., :t] * extra["out_std"] + extra["out_mean"]
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
        ws = [(layer.weight if members is None else layer.weight[members]).detach().to(self.low).contiguous() for layer in layers]
        bs = [(layer.bias if members is None else layer.bias[members]).detach().to(self.low) for layer in layers]
        tsd = m.target_normalizer.std
        extra = {
            "in_mean": m.input_normalizer.mean.detach().float(),
            "in_std": m.input_normalizer.std.detach().float(),
            "out_mean": m.target_normalizer.mean.detach().float(),
            "out_std": tsd.detach().float(),
            "var_factor": m.variance_scale * tsd.square(),
        }
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
