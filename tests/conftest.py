import os
import subprocess
import sys

# One torch thread in every test process and every CLI subprocess: results then do not depend on the
# machine's core count (learning tests are calibrated at one thread), and `pytest -n 2` runs two test
# processes on the two CI cores without oversubscribing them.
os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Learning tests (marked slow) first, so that with `-n` they spread over the workers from the start."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def run_cli(*args: str, timeout: float = 600, cwd=None) -> subprocess.CompletedProcess:
    """Run the real `dynarl` command in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "dynarl.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture
def cli():
    return run_cli


# small, fast settings for loop-level tests (not learning tests)
TINY = ["learning_starts=200", "batch_size=32", "learner.hidden_sizes=[32,32]", "eval_every=500", "eval_episodes=1", "log_every=250", "checkpoint_every=500", "quiet=true"]
