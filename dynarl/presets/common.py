from __future__ import annotations

from dataclasses import dataclass

MUJOCO_V5 = ("InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Reacher-v5", "Pusher-v5", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Swimmer-v5", "Ant-v5", "Humanoid-v5")


@dataclass(frozen=True)
class Preset:
    """Config overrides (dotted keys) for one (algorithm, task), and where the numbers come from."""

    overrides: dict
    source: str
