"""Presets of offline model-free RL (IQL, CQL, AWAC): CORL's settings for the D4RL locomotion medium datasets.

Source: tinkoff-ai/CORL, ``configs/offline/{iql,cql,awac}/{halfcheetah,hopper,walker2d}/medium_v2.yaml`` and the
network sizes of ``algorithms/offline/{cql,awac}.py``. A preset is chosen by the dataset's env (the v5 task of the
same name), so it holds the medium datasets' values; CORL changes some for other levels (e.g. IQL's
``normalize_reward`` and target rate), pass those as overrides. What the configs share is the learners' defaults
already (batch 256, gamma 0.99, learning rates 3e-4, IQL's expectile 0.7 and beta 3, CQL's 10 actions per
proposal). Not reproduced: CQL's orthogonal initialisation. CORL trains 1M updates; the budget here stays the
user's ``steps``, and IQL's cosine decay of the actor lr is set to CORL's 1M (almost constant over a shorter run).
"""

from __future__ import annotations

from dynarl.presets.common import Preset

_SOURCE = "CORL configs/offline/{}/{}/medium_v2.yaml"


def _iql(task: str, normalize_reward: bool, tau: float, deterministic: bool) -> Preset:
    keys = {"normalize_reward": normalize_reward, "learner.tau": tau, "learner.actor": "deterministic" if deterministic else "gaussian", "learner.actor_lr_decay_steps": 1_000_000}
    return Preset(keys, _SOURCE.format("iql", task))


def _cql(task: str, normalize_reward: bool) -> Preset:
    keys = {"normalize_reward": normalize_reward, "learner.cql_alpha": 10.0, "learner.actor_lr": 3e-5, "learner.hidden_sizes": (256, 256, 256), "learner.deterministic_backup": True}
    return Preset(keys, _SOURCE.format("cql", task) + " (backup_entropy=false; actor and critics 3x256)")


def _awac(task: str) -> Preset:
    return Preset({"learner.awac_lambda": 1 / 3, "learner.hidden_sizes": (256, 256, 256)}, _SOURCE.format("awac", task) + " (awac_lambda 0.3333; actor and critic 3x256)")


PRESETS: dict[tuple[str, str], Preset] = {
    ("iql", "HalfCheetah-v5"): _iql("halfcheetah", False, 0.005, False),
    ("iql", "Hopper-v5"): _iql("hopper", True, 0.001, True),
    ("iql", "Walker2d-v5"): _iql("walker2d", False, 0.005, False),
    ("cql", "HalfCheetah-v5"): _cql("halfcheetah", False),
    ("cql", "Hopper-v5"): _cql("hopper", True),
    ("cql", "Walker2d-v5"): _cql("walker2d", False),
    ("awac", "HalfCheetah-v5"): _awac("halfcheetah"),
    ("awac", "Hopper-v5"): _awac("hopper"),
    ("awac", "Walker2d-v5"): _awac("walker2d"),
}
