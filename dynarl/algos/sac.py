"""SAC on a real environment: the off-policy loop driving the SAC learner."""

from __future__ import annotations

from dataclasses import dataclass, field

from dynarl.algos.off_policy import OffPolicyAlgorithm, OffPolicyConfig
from dynarl.learners.sac import SACLearner, SACLearnerConfig


@dataclass
class SACConfig(OffPolicyConfig):
    algo: str = "sac"
    learner: SACLearnerConfig = field(default_factory=SACLearnerConfig)


class SAC(OffPolicyAlgorithm):
    """SAC: off-policy actor-critic for continuous actions (see dynarl.learners.sac)."""

    name = "sac"
    config_cls = SACConfig
    learner_cls = SACLearner
