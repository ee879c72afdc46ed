"""Comparing two agents' checkpoint states tensor by tensor (the resume and same-seed tests)."""

from __future__ import annotations

import torch


def state_tensors(state, prefix: str = ""):
    """Every tensor in a nested state, by path (counters and wall-clock excluded)."""
    if isinstance(state, torch.Tensor):
        yield prefix, state
    elif isinstance(state, dict):
        for k, v in state.items():
            if k not in ("counters", "config"):
                yield from state_tensors(v, f"{prefix}/{k}")
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            yield from state_tensors(v, f"{prefix}/{i}")


def assert_same_state(a, b) -> dict[str, torch.Tensor]:
    """Agents ``a`` and ``b`` hold bit-identical tensors under the same paths; returns ``a``'s, by path."""
    sa, sb = dict(state_tensors(a.state_dict())), dict(state_tensors(b.state_dict()))
    assert sa.keys() == sb.keys()
    differ = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not differ, f"differ after the same steps: {differ[:5]}"
    return sa
