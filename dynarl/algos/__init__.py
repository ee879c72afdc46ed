from dynarl.algos.ddpg import DDPG
from dynarl.algos.registry import ALGORITHMS, build_config, get_algorithm
from dynarl.algos.sac import SAC
from dynarl.algos.td3 import TD3

__all__ = ["SAC", "TD3", "DDPG", "ALGORITHMS", "build_config", "get_algorithm"]
