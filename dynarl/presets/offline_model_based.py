"""Presets of offline model-based RL (MOPO, COMBO): OfflineRL-Kit's suggested settings for the D4RL datasets.

Source: yihaosun1124/OfflineRL-Kit, ``run_example/run_mopo.py`` and ``run_example/run_combo.py`` ("suggested
hypers"); their shared defaults (7-member, 5-elite 4x200 ensemble fitted once, 50k rollouts every 1,000 updates
kept 5 epochs, SAC actor lr 1e-4 / critic 3e-4 / alpha lr 1e-4, real ratio 0.05 for MOPO and 0.5 for COMBO, COMBO's
critic 3x256 and rho_s=mix) are the configs' defaults already; COMBO's presets also take its
``deterministic_backup=True`` (no entropy bonus in the critic target), which is not the CQL learner's default.
A preset is chosen by the dataset's env and holds the medium dataset's values; the medium-replay and
medium-expert ones are picked by the dataset id (``local/hopper/medium-replay-v0``: medium-replay):

    MOPO  medium-replay: halfcheetah h=5 lambda=0.5, hopper h=5 lambda=2.5, walker2d h=1 lambda=2.5
          medium-expert: halfcheetah h=5 lambda=2.5, hopper h=5 lambda=5.0, walker2d h=1 lambda=2.5
    COMBO medium-replay: halfcheetah h=5 beta=0.5, hopper h=5 beta=0.5, walker2d h=1 beta=0.5
          medium-expert: halfcheetah h=5 beta=5.0, hopper h=5 beta=5.0, walker2d h=1 beta=5.0

The penalty is MOPO's code's aleatoric one, ``max_i ||sigma_i||_2`` (``aleatoric_norm=std``): the lambdas are
tuned for it. OfflineRL-Kit trains 3M (MOPO) / 1M (COMBO) updates; the budget here stays the user's ``steps``.
"""

from __future__ import annotations

from dynarl.presets.common import Preset

_SOURCE = "OfflineRL-Kit run_example/run_{}.py, suggested hypers for {}-{}-v2"


def _mopo(task: str, h: int, penalty_coef: float, level: str = "medium", levels: dict | None = None) -> Preset:
    keys = {"rollout_length": h, "penalty": "aleatoric", "aleatoric_norm": "std", "penalty_coef": penalty_coef}
    return Preset(keys, _SOURCE.format("mopo", task, level), levels or {})


def _combo(task: str, h: int, beta: float, level: str = "medium", levels: dict | None = None) -> Preset:
    return Preset({"rollout_length": h, "learner.cql_alpha": beta, "learner.deterministic_backup": True}, _SOURCE.format("combo", task, level), levels or {})


def _levels(make, task: str, settings: dict[str, tuple]) -> dict[str, Preset]:
    return {level: make(task, *values, level) for level, values in settings.items()}


PRESETS: dict[tuple[str, str], Preset] = {
    ("mopo", "HalfCheetah-v5"): _mopo("halfcheetah", 5, 0.5, levels=_levels(_mopo, "halfcheetah", {"medium-replay": (5, 0.5), "medium-expert": (5, 2.5)})),
    ("mopo", "Hopper-v5"): _mopo("hopper", 5, 5.0, levels=_levels(_mopo, "hopper", {"medium-replay": (5, 2.5), "medium-expert": (5, 5.0)})),
    ("mopo", "Walker2d-v5"): _mopo("walker2d", 5, 0.5, levels=_levels(_mopo, "walker2d", {"medium-replay": (1, 2.5), "medium-expert": (1, 2.5)})),
    ("combo", "HalfCheetah-v5"): _combo("halfcheetah", 5, 0.5, levels=_levels(_combo, "halfcheetah", {"medium-replay": (5, 0.5), "medium-expert": (5, 5.0)})),
    ("combo", "Hopper-v5"): _combo("hopper", 5, 5.0, levels=_levels(_combo, "hopper", {"medium-replay": (5, 0.5), "medium-expert": (5, 5.0)})),
    ("combo", "Walker2d-v5"): _combo("walker2d", 1, 5.0, levels=_levels(_combo, "walker2d", {"medium-replay": (1, 0.5), "medium-expert": (1, 5.0)})),
}
