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
    """Learning tests (marked slow) dealt out to the xdist workers, each worker's share at the head of its block.

    xdist's worksteal scheduler gives worker w the w-th contiguous block of this list (sizes n // W, then the
    rest split the same way) and later steals from the end of the longest queue. Sorting the slow tests to the
    front would put all of them in worker 0's block, to run one after another; dealing them round-robin into
    the blocks starts every worker on its share at once, and the fast tests at the blocks' ends are what gets
    stolen to even out the finish. Without xdist (W = 1) this is simply slow tests first.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    fast = [item for item in items if item.get_closest_marker("slow") is None]
    ordered, left = [], len(items)
    for w in range(workers):
        size = left // (workers - w)  # the block xdist sends worker w
        share = slow[w::workers]
        take = max(size - len(share), 0)
        ordered += share + fast[:take]
        fast, left = fast[take:], left - size
    items[:] = ordered + fast


def run_cli(*args: str, timeout: float = 600, cwd=None) -> subprocess.CompletedProcess:
    """Run the real `dynarl` command in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "dynarl.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture
def cli():
    return run_cli


# small, fast settings for loop-level tests (not learning tests)
TINY = ["learning_starts=200", "batch_size=32", "learner.hidden_sizes=[32,32]", "eval_every=500", "eval_episodes=1", "log_every=250", "checkpoint_every=500", "quiet=true"]
