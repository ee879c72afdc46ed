"""Presets of offline model-free RL (IQL, CQL, AWAC): CORL's settings for the D4RL locomotion datasets.

Source: tinkoff-ai/CORL, ``configs/offline/{iql,cql,awac}/{halfcheetah,hopper,walker2d}/{level}_v2.yaml`` and the
network sizes of ``algorithms/offline/{cql,awac}.py``. A preset is chosen by the dataset's env (the v5 task of the
same name) and holds the medium dataset's values; where CORL sets another level differently (only on Hopper: IQL's
medium-expert, random, expert and full-replay, and CQL's levels other than medium drop the reward normalisation),
that level's preset is picked by the dataset id (``local/hopper/medium-replay-v0``: medium-replay). What the
configs share is the learners' defaults already (batch 256, gamma 0.99, learning rates 3e-4, IQL's expectile 0.7
and beta 3, CQL's 10 actions per proposal). Not reproduced: CQL's orthogonal initialisation. CORL trains 1M
updates; the budget here stays the user's ``steps``, and IQL's cosine decay of the actor lr is set to CORL's 1M
(almost constant over a shorter run).
"""

from __future__ import annotations

from dynarl.presets.common import Preset

_SOURCE = "CORL configs/offline/{}/{}/{}_v2.yaml"
_OTHER_LEVELS = ("random", "medium-replay", "medium-expert", "expert", "full-replay")


def _iql(task: str, normalize_reward: bool, tau: float, deterministic: bool, level: str = "medium", beta: float = 3.0, expectile: float = 0.7, levels: dict | None = None) -> Preset:
    keys = {"normalize_reward": normalize_reward, "learner.tau": tau, "learner.actor": "deterministic" if deterministic else "gaussian", "learner.beta": beta, "learner.expectile": expectile, "learner.actor_lr_decay_steps": 1_000_000}
    return Preset(keys, _SOURCE.format("iql", task, level.replace("-", "_")), levels or {})


def _cql(task: str, normalize_reward: bool, level: str = "medium", levels: dict | None = None) -> Preset:
    keys = {"normalize_reward": normalize_reward, "learner.cql_alpha": 10.0, "learner.actor_lr": 3e-5, "learner.hidden_sizes": (256, 256, 256), "learner.deterministic_backup": True}
    return Preset(keys, _SOURCE.format("cql", task, level.replace("-", "_")) + " (backup_entropy=false; actor and critics 3x256)", levels or {})


def _hopper_iql() -> Preset:
    """CORL's Hopper IQL: medium and medium-replay normalise rewards, use a deterministic actor and a slow target;
    medium-expert takes beta 6 and expectile 0.5; random, expert and full-replay the other tasks' settings."""
    levels = {level: _iql("hopper", False, 0.005, False, level) for level in _OTHER_LEVELS}
    levels["medium-replay"] = _iql("hopper", True, 0.001, True, "medium-replay")
    levels["medium-expert"] = _iql("hopper", False, 0.005, False, "medium-expert", beta=6.0, expectile=0.5)
    return _iql("hopper", True, 0.001, True, levels=levels)


def _hopper_cql() -> Preset:
    """CORL's Hopper CQL normalises rewards on the medium dataset only."""
    return _cql("hopper", True, levels={level: _cql("hopper", False, level) for level in _OTHER_LEVELS})


def _awac(task: str) -> Preset:
    return Preset({"learner.awac_lambda": 1 / 3, "learner.hidden_sizes": (256, 256, 256)}, _SOURCE.format("awac", task, "medium") + " (awac_lambda 0.3333; actor and critic 3x256)")


PRESETS: dict[tuple[str, str], Preset] = {
    ("iql", "HalfCheetah-v5"): _iql("halfcheetah", False, 0.005, False),
    ("iql", "Hopper-v5"): _hopper_iql(),
    ("iql", "Walker2d-v5"): _iql("walker2d", False, 0.005, False),
    ("cql", "HalfCheetah-v5"): _cql("halfcheetah", False),
    ("cql", "Hopper-v5"): _hopper_cql(),
    ("cql", "Walker2d-v5"): _cql("walker2d", False),
    ("awac", "HalfCheetah-v5"): _awac("halfcheetah"),
    ("awac", "Hopper-v5"): _awac("hopper"),
    ("awac", "Walker2d-v5"): _awac("walker2d"),
}
