"""FusedAdam: torch's fused Adam on a shorter path; the same numbers and the same state_dict."""

import copy

import pytest
import torch

from dynarl.nn.optim import FusedAdam


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3), torch.nn.Linear(3, 2))


def _steps(net: torch.nn.Module, opt: torch.optim.Optimizer, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        opt.zero_grad(set_to_none=True)
        x = torch.randn(8, 5, generator=g)
        net(x).pow(2).mean().backward()
        net[3].weight.grad = None  # a parameter without a gradient this step is left alone, as torch does
        opt.step()


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_fused_adam_matches_torch_fused_adam(weight_decay):
    a, b = _net(0), _net(0)
    groups = lambda net: [{"params": net[0].parameters(), "lr": 1e-2}, {"params": list(net[2].parameters()) + list(net[3].parameters())}]  # noqa: E731
    ours = FusedAdam(groups(a), lr=3e-3, weight_decay=weight_decay)
    torch_adam = torch.optim.Adam(groups(b), lr=3e-3, weight_decay=weight_decay, fused=True)
    _steps(a, ours, 7, 1)
    _steps(b, torch_adam, 7, 1)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    s, t = ours.state_dict(), torch_adam.state_dict()
    assert s["param_groups"] == t["param_groups"]
    for k in t["state"]:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(s["state"][k][name], t["state"][k][name]), (k, name)
    assert 4 not in s["state"] or torch.equal(s["state"][4]["exp_avg"], t["state"][4]["exp_avg"])


def test_fused_adam_state_dict_interchanges_with_torch():
    a, b = _net(0), _net(0)
    first = torch.optim.Adam(a.parameters(), lr=1e-3, fused=True)
    _steps(a, first, 3, 2)
    b.load_state_dict(a.state_dict())
    resumed = FusedAdam(b.parameters(), lr=1e-3)
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))  # as from a file: torch would share the moment tensors
    _steps(a, first, 4, 3)
    _steps(b, resumed, 4, 3)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_group_torch_must_step_sends_every_group_through_torch_once():
    """A group of mixed dtypes takes torch's own step; the groups before it are not stepped a second time."""
    def make():
        torch.manual_seed(0)
        return torch.nn.Linear(3, 2), torch.nn.Linear(2, 1).double(), torch.nn.Linear(2, 1)

    ours_mods, ref_mods = make(), make()
    groups = lambda m: [{"params": m[0].parameters()}, {"params": list(m[1].parameters()) + list(m[2].parameters())}]  # noqa: E731
    ours, ref = FusedAdam(groups(ours_mods), lr=1e-2), torch.optim.Adam(groups(ref_mods), lr=1e-2, fused=True)
    for mods, opt in ((ours_mods, ours), (ref_mods, ref)):
        for _ in range(3):
            opt.zero_grad()
            x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
            h = mods[0](x)
            (mods[1](h.double()).sum() + mods[2](h).sum()).backward()
            opt.step()
    for a, b in zip([p for m in ours_mods for p in m.parameters()], [p for m in ref_mods for p in m.parameters()], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("scale", [1e-3, 1e3])  # under and over the bound: left alone, then scaled down
def test_learner_clip_grad_norm_matches_torch(scale):
    """The learners' gradient clipping gives torch's ``clip_grad_norm_`` numbers bit for bit, mixed dtypes included."""
    from dynarl.learners.base import Learner

    for dtypes in ([torch.float32] * 4, [torch.float32, torch.float64, torch.float32, torch.float64]):
        torch.manual_seed(0)
        ours = [torch.nn.Parameter(torch.randn(7, 3, dtype=dt)) for dt in dtypes]
        ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
        for p, q in zip(ours, ref):
            p.grad = torch.randn_like(p) * scale
            q.grad = p.grad.clone()
        ours[2].grad = ref[2].grad = None  # a parameter without a gradient is skipped, as torch does
        Learner._clip_grad_norm(None, ours, 1.0)  # it reads nothing of the learner
        torch.nn.utils.clip_grad_norm_(ref, 1.0, foreach=True)
        for p, q in zip(ours, ref):
            assert (p.grad is None and q.grad is None) or torch.equal(p.grad, q.grad)
