"""Errors a user can act on.

Every error that reaches the CLI as a :class:`DynarlError` is printed as one short message, without a
traceback, and the process exits non-zero. Messages name what was wrong and how to fix it.
"""


class DynarlError(Exception):
    """Base class of user-facing errors (bad input, not bugs)."""


class ConfigError(DynarlError, ValueError):
    """An invalid configuration: unknown key, wrong type or out-of-range value."""


class EnvError(DynarlError, ValueError):
    """An unknown environment or an environment the algorithm cannot drive."""


class CheckpointError(DynarlError):
    """A checkpoint that is missing, truncated, corrupt, foreign or of another algorithm."""


class TrainingDivergedError(DynarlError, FloatingPointError):
    """A loss, parameter or prediction became non-finite during training."""


class RunInterrupted(DynarlError):
    """A run stopped by SIGINT or SIGTERM after saving a checkpoint; ``exit_code`` is 128 + the signal."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def command_status(call) -> int:
    """Run ``call()`` as a command's body: its exit status (0 when it returns None); an interrupted run prints
    its message and gives its exit code (128 + the signal), any other :class:`DynarlError` one ``dynarl: error:``
    line and 2 (the CLI and its worker processes)."""
    import sys

    try:
        return call() or 0
    except RunInterrupted as e:
        print(f"dynarl: {e}", file=sys.stderr)
        return e.exit_code
    except DynarlError as e:
        print(f"dynarl: error: {e}", file=sys.stderr)
        return 2
