"""TD3 on a real environment: the off-policy loop driving the TD3 learner."""

from __future__ import annotations

from dataclasses import dataclass, field

from dynarl.algos.off_policy import OffPolicyAlgorithm, OffPolicyConfig
from dynarl.learners.td3 import TD3Learner, TD3LearnerConfig


@dataclass
class TD3Config(OffPolicyConfig):
    algo: str = "td3"
    learner: TD3LearnerConfig = field(default_factory=TD3LearnerConfig)


class TD3(OffPolicyAlgorithm):
    """TD3: off-policy actor-critic for continuous actions (see dynarl.learners.td3)."""

    name = "td3"
    config_cls = TD3Config
    learner_cls = TD3Learner
