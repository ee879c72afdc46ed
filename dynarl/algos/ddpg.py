"""DDPG on a real environment: the off-policy loop driving the DDPG learner."""

from __future__ import annotations

from dataclasses import dataclass, field

from dynarl.algos.off_policy import OffPolicyAlgorithm, OffPolicyConfig
from dynarl.learners.ddpg import DDPGLearner, DDPGLearnerConfig


@dataclass
class DDPGConfig(OffPolicyConfig):
    algo: str = "ddpg"
    learner: DDPGLearnerConfig = field(default_factory=DDPGLearnerConfig)


class DDPG(OffPolicyAlgorithm):
    """DDPG: off-policy actor-critic for continuous actions (see dynarl.learners.ddpg)."""

    name = "ddpg"
    config_cls = DDPGConfig
    learner_cls = DDPGLearner
