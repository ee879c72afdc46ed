"""Process-wide settings a training run makes: how the C heap hands memory back to the OS.

torch allocates CPU tensors with the C library's ``malloc``. glibc maps a block larger than its mmap threshold
(128 KiB at first, then raised as such blocks are freed) fresh from the OS and unmaps it on free, and returns
free memory at the top of its heap to the OS whenever that exceeds its trim threshold (twice the mmap
threshold). A training step that frees and reallocates a few megabytes of activations each update then pays a
page fault for every 4 KiB page it touches again: eight SAC seeds trained as one (``--seeds``) took about
3,000 faults per env step in bf16 and 5,800 in fp32, 13-18% of the step (``benchmarks/vector_seeds.py``).
:func:`keep_freed_memory` fixes both thresholds, so freed memory stays in the process for the next update
(the RSS stays at its peak, as with torch's own caching allocator on a GPU).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest; blocks above it are still mapped and unmapped
TRIM_THRESHOLD = 2**30  # free heap kept before any is returned to the OS

_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Keep freed heap memory in this process for reuse (glibc only; elsewhere nothing changes).

    Returns whether the setting is in force. Idempotent; it lasts for the life of the process.
    """
    global _kept
    if _kept is None:
        _kept = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(ctypes.util.find_library("c"))
            # setting either threshold also stops glibc from moving them as blocks are freed
            _kept = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _kept
