"""Environments: creation with actionable errors, dynarl's own tasks and per-task reward knowledge.

Importing this package registers ``dynarl/ContinuousCartPole-v0`` in Gymnasium's registry.
"""

from dynarl.envs.cartpole import register as _register_cartpole

_register_cartpole()

from dynarl.envs.make import check_continuous_actions, make_env  # noqa: E402
from dynarl.envs.tasks import TaskSpec, get_task, registered_tasks  # noqa: E402

__all__ = ["make_env", "get_task", "TaskSpec", "registered_tasks", "check_continuous_actions"]
