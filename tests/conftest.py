import subprocess
import sys

import pytest


def run_cli(*args: str, timeout: float = 600, cwd=None) -> subprocess.CompletedProcess:
    """Run the real `dynarl` command in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "dynarl.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture
def cli():
    return run_cli


# small, fast settings for loop-level tests (not learning tests)
TINY = ["learning_starts=200", "batch_size=32", "learner.hidden_sizes=[32,32]", "eval_every=500", "eval_episodes=1", "log_every=250", "checkpoint_every=500", "quiet=true"]
