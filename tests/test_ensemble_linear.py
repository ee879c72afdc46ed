"""EnsembleLinear's CPU shortcuts (a value head's product and sum in fp32, shared rows expanded into baddbmm)
compute what each member's own linear layer computes, forward and backward."""

from __future__ import annotations

import pytest
import torch

from dynarl.nn.mlp import EnsembleLinear


def _per_member(layer: EnsembleLinear, x: torch.Tensor) -> torch.Tensor:
    rows = [x if x.dim() == 2 else x[e] for e in range(layer.members)]
    return torch.stack([rows[e] @ layer.weight[e] + layer.bias[e] for e in range(layer.members)])


@pytest.mark.parametrize("out_dim", [1, 5])
@pytest.mark.parametrize("shared_rows", [True, False])
def test_outputs_and_gradients_match_each_members_own_layer(out_dim, shared_rows):
    torch.manual_seed(0)
    layer = EnsembleLinear(3, 16, out_dim)
    x = torch.randn(40, 16) if shared_rows else torch.randn(3, 40, 16)
    grads = []
    for forward in (layer, lambda v: _per_member(layer, v)):
        xi = x.clone().requires_grad_()
        layer.zero_grad()
        y = forward(xi)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        grads.append((y.detach(), xi.grad, layer.weight.grad.clone(), layer.bias.grad.clone()))
    assert grads[0][0].shape == (3, 40, out_dim)
    for ours, reference in zip(*grads):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_thin_ensemble_layers_stay_fp32_under_bf16_autocast_and_wide_ones_do_not():
    """A value head (one output) and an input layer of 4 compute in fp32 under the CPU's bf16 autocast, the same
    numbers as without it; a 64 -> 17 layer is autocast to bf16 and agrees with each member's own layer to bf16's
    precision."""
    torch.manual_seed(0)
    head, first, wide = EnsembleLinear(2, 64, 1), EnsembleLinear(2, 4, 64), EnsembleLinear(2, 64, 17)
    x64, x4 = torch.randn(2, 100, 64), torch.randn(100, 4)  # the input layer's rows are shared by the members
    with torch.autocast("cpu", torch.bfloat16):
        outs = head(x64), first(x4), wide(x64)
    assert [y.dtype for y in outs] == [torch.float32, torch.float32, torch.bfloat16]
    assert torch.equal(outs[0], head(x64)) and torch.equal(outs[1], first(x4))
    torch.testing.assert_close(outs[2].float(), _per_member(wide, x64).detach(), rtol=2e-2, atol=5e-2)


def test_a_thin_linear_layer_stays_fp32_under_bf16_autocast_and_a_wide_one_does_not():
    """dynarl.nn.mlp.Linear: a layer with at most THIN inputs or outputs computes in fp32 under the CPU's bf16
    autocast (the same numbers as without autocast); a wider one is autocast as nn.Linear is."""
    from torch import nn

    from dynarl.nn.mlp import THIN, Linear

    torch.manual_seed(0)
    x4, x64 = torch.randn(8, 4), torch.randn(8, 64)
    first, head, wide = Linear(4, 64), Linear(64, THIN), Linear(64, THIN + 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        thin_out, head_out, wide_out = first(x4), head(x64), wide(x64)
    assert thin_out.dtype == head_out.dtype == torch.float32 and wide_out.dtype == torch.bfloat16
    assert torch.equal(thin_out, first(x4)) and torch.equal(head_out, head(x64))
    plain = nn.Linear(64, THIN + 1)
    plain.load_state_dict(wide.state_dict())  # the same parameters, the same checkpoint keys
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(plain(x64), wide_out)
