from dynarl.learners.base import Learner
from dynarl.learners.ddpg import DDPGLearner, DDPGLearnerConfig
from dynarl.learners.sac import SACLearner, SACLearnerConfig
from dynarl.learners.td3 import TD3Learner, TD3LearnerConfig

__all__ = ["Learner", "SACLearner", "SACLearnerConfig", "TD3Learner", "TD3LearnerConfig", "DDPGLearner", "DDPGLearnerConfig"]
