"""Torch thread defaults (issue 17, item 13): every algorithm runs on one torch thread unless told otherwise.

Beside anything else on a shared 2-core machine, the default of one torch thread per core slowed SAC and
MBPO many times over (benchmarks/RESULTS.md); ``torch_threads=0`` keeps torch's own count.
"""

from __future__ import annotations

import pytest
import torch

from dynarl.algos.registry import ALGORITHMS, build_config, get_algorithm


@pytest.fixture
def two_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def test_every_algorithm_defaults_to_one_torch_thread():
    from dynarl.presets import all_presets

    assert {algo: cls.config_cls().torch_threads for algo, cls in ALGORITHMS.items()} == {algo: 1 for algo in ALGORITHMS}
    assert not [key for key, preset in all_presets().items() if "torch_threads" in preset.overrides]  # and no preset changes it
    assert build_config("sac", None, {}).torch_threads == 1


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg", "mbpo"])
def test_off_policy_and_dyna_agents_put_one_thread_in_force_and_zero_keeps_torchs(algo, two_threads):
    """SAC, TD3, DDPG and MBPO used to inherit torch_threads=0 and so run one thread per core."""
    cls = get_algorithm(algo)
    assert cls("Pendulum-v1", quiet=True).cfg.torch_threads == 1
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)
    cls("Pendulum-v1", quiet=True, torch_threads=0)
    assert torch.get_num_threads() == 2
