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


def assert_updates_agree(eager, compiled, batch, updates: int = 3, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """``updates`` updates of two learners on ``batch`` give the same metrics, each update's random draws the same
    (the generator reseeded before each learner's update; inductor drawing its random numbers as eager torch does)."""
    import torch._inductor.config as inductor_config

    for _ in range(updates):
        metrics = []
        for learner in (eager, compiled):
            torch.manual_seed(1)
            with inductor_config.patch(fallback_random=True):
                metrics.append(learner.update(batch))
        assert metrics[0].keys() == metrics[1].keys()
        for k in metrics[0]:
            torch.testing.assert_close(metrics[1][k], metrics[0][k], rtol=rtol, atol=atol, msg=k)
