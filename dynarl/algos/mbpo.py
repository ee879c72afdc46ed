"""MBPO and the other Dyna-style configurations: the loop of :mod:`dynarl.algos.dyna` with a chosen learner."""

from __future__ import annotations

from dataclasses import dataclass, field

from dynarl.algos.dyna import DynaConfig, DynaLoop
from dynarl.algos.off_policy import OffPolicyAlgorithm
from dynarl.algos.registry import register
from dynarl.learners.ddpg import DDPGLearner, DDPGLearnerConfig
from dynarl.learners.sac import SACLearner, SACLearnerConfig
from dynarl.learners.td3 import TD3Learner, TD3LearnerConfig


@dataclass
class MBPOConfig(DynaConfig):
    algo: str = "mbpo"
    learner: SACLearnerConfig = field(default_factory=SACLearnerConfig)


@register
class MBPO(DynaLoop, OffPolicyAlgorithm):
    """MBPO: SAC trained on branched model rollouts mixed with real data (Janner et al. 2019)."""

    name = "mbpo"
    config_cls = MBPOConfig
    learner_cls = SACLearner


@dataclass
class DynaTD3Config(DynaConfig):
    algo: str = "dyna_td3"
    learner: TD3LearnerConfig = field(default_factory=TD3LearnerConfig)


@register
class DynaTD3(DynaLoop, OffPolicyAlgorithm):
    """The Dyna-style loop with TD3 as the learner."""

    name = "dyna_td3"
    config_cls = DynaTD3Config
    learner_cls = TD3Learner


@dataclass
class DynaDDPGConfig(DynaConfig):
    algo: str = "dyna_ddpg"
    learner: DDPGLearnerConfig = field(default_factory=DDPGLearnerConfig)


@register
class DynaDDPG(DynaLoop, OffPolicyAlgorithm):
    """The Dyna-style loop with DDPG as the learner."""

    name = "dyna_ddpg"
    config_cls = DynaDDPGConfig
    learner_cls = DDPGLearner
