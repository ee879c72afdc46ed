"""Environments: creation with actionable errors, dynarl's own tasks and per-task reward knowledge.

Importing this package registers ``dynarl/ContinuousCartPole-v0`` in Gymnasium's registry.
"""

from dynarl.envs.cartpole import register as _register_cartpole

_register_cartpole()

from dynarl.envs import point_maze as _point_maze  # noqa: E402,F401  (registers dynarl/PointMaze-v0)
from dynarl.envs.board_games import register as _register_board_games  # noqa: E402
from dynarl.envs.dyna_maze import register as _register_dyna_maze  # noqa: E402
from dynarl.envs.make import env_source, make_env  # noqa: E402
from dynarl.envs.tasks import TaskSpec, get_task, registered_tasks  # noqa: E402

_register_dyna_maze()
_register_board_games()

__all__ = ["make_env", "env_source", "get_task", "TaskSpec", "registered_tasks"]
