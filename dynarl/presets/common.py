from __future__ import annotations

import re
from dataclasses import dataclass, field

MUJOCO_V5 = ("InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Reacher-v5", "Pusher-v5", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Swimmer-v5", "Ant-v5", "Humanoid-v5")


@dataclass(frozen=True)
class Preset:
    """Config overrides (dotted keys) for one (algorithm, task), and where the numbers come from.

    Offline methods tune per dataset, not only per task: ``levels`` maps a dataset level (``medium-replay``,
    ``medium-expert``, ...) to its own complete preset, used when the run's dataset id names that level
    (:meth:`for_dataset`). The preset itself is then the medium dataset's, and serves every other level.
    """

    overrides: dict
    source: str
    levels: dict[str, Preset] = field(default_factory=dict)

    def for_dataset(self, dataset: str) -> Preset:
        level = dataset_level(dataset, self.levels)
        return self.levels[level] if level is not None else self


def dataset_level(dataset: str, levels) -> str | None:
    """Which of ``levels`` a dataset id names: the last part of the id without its version, equal to a level or
    ending in ``-level`` (``local/hopper/medium-replay-v0``, ``hopper-medium-replay-v2``: ``medium-replay``);
    the longest such level, so ``medium-expert`` is not read as ``expert``. None when it names none."""
    name = re.sub(r"-v\d+$", "", dataset.rsplit("/", 1)[-1]).replace("_", "-")
    matches = [level for level in levels if name == level or name.endswith("-" + level)]
    return max(matches, key=len) if matches else None
