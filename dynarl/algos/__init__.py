"""The algorithms users run: each composes data sources, a learner and a schedule, and registers itself."""

from dynarl.algos.alphazero import AlphaZero
from dynarl.algos.dqn import DQN, DoubleDQN
from dynarl.algos.dyna_q import DynaQ, QLearning
from dynarl.algos.imitation import GCBC, DAgger
from dynarl.algos.mbpo import MBPO, DynaDDPG, DynaTD3
from dynarl.algos.mcts import MCTS
from dynarl.algos.mopo import COMBO, MOPO
from dynarl.algos.muzero import MuZero
from dynarl.algos.off_policy import DDPG, SAC, TD3
from dynarl.algos.offline import AWAC, BC, CQL, FQI, IQL, OfflineSAC
from dynarl.algos.on_policy import A2C, PPO, REINFORCE, TRPO
from dynarl.algos.pets import PETS
from dynarl.algos.poplin import POPLINA, POPLINP
from dynarl.algos.registry import ALGORITHMS, build_config, get_algorithm, register
from dynarl.algos.slbo import SLBO

__all__ = ["SAC", "TD3", "DDPG", "DQN", "DoubleDQN", "QLearning", "DynaQ", "PPO", "A2C", "TRPO", "REINFORCE", "MBPO", "DynaTD3", "DynaDDPG", "PETS", "POPLINA", "POPLINP", "SLBO", "BC", "CQL", "IQL", "AWAC", "OfflineSAC", "FQI", "MOPO", "COMBO", "GCBC", "DAgger", "MCTS", "AlphaZero", "MuZero", "ALGORITHMS", "build_config", "get_algorithm", "register"]
