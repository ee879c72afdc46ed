"""A run keeps freed CPU memory in its process (keep_freed_memory): no page faults for reallocated tensors."""

import json
import platform
import subprocess
import sys

_CHURN = """
import json, resource, sys, torch
import dynarl

dynarl.SAC(env="Pendulum-v1", **dict(a.split("=") for a in sys.argv[1:]))  # the run config applies the setting

def made_and_freed():  # 256 MiB of activations made and freed, as an update does
    ts = [torch.ones(2**22) for _ in range(16)]
    del ts

made_and_freed()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
made_and_freed()
from dynarl.process import keep_freed_memory
print(json.dumps({"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start, "in_force": keep_freed_memory()}))
"""


def _churn(*overrides: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHURN, *overrides], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_run_keeps_freed_memory_so_reallocated_tensors_fault_no_pages():
    kept = _churn()
    if platform.libc_ver()[0] != "glibc":  # the setting is glibc's (mallopt): elsewhere it reports itself off
        assert kept["in_force"] is False
        return
    assert kept["in_force"] is True
    # glibc's defaults hand the freed blocks back to the OS (however its thresholds have moved, they stay under
    # 32 MiB for mapping and 64 MiB for trimming), so making them again faults most of their 65,536 4 KiB pages;
    # kept, the second round reuses the first round's pages (at most a block's 4,096 where a small allocation
    # took a piece of the freed space)
    assert _churn("keep_freed_memory=false")["faults"] > 32_768
    assert kept["faults"] <= 8_192
