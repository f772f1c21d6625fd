"""Training side: ask glibc's malloc to keep the memory TensorFlow frees between steps.

Every training step frees and allocates the same large buffers again. By default glibc
returns freed memory at the top of the heap to the kernel (trim) and serves big blocks
with mmap (unmapped on free), so the next step faults every page in anew: on a VM that
is slow (docs/digit_strings.md: 4.1 -> 2.9 min for the string recipe's first 4 epochs,
the same losses, with the environment variables MALLOC_TRIM_THRESHOLD_ and
MALLOC_TOP_PAD_). `keep_freed_memory` sets the same options from inside the process with
mallopt(3), so a plain `python recipes/...` gets them. Weights are unchanged: this moves
no number, only page faults. Memory stays bounded: at most TOP_PAD above what the
process last used, and glibc still trims past TRIM_THRESHOLD.
"""

import ctypes
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's <malloc.h>
TRIM_THRESHOLD = 1_000_000_000  # bytes free at the heap's top before any goes back: 1 GB
TOP_PAD = 512 * 1024 * 1024  # extra asked of the kernel each time the heap grows
MMAP_THRESHOLD = 32 * 1024 * 1024  # smaller blocks come from the heap: glibc's maximum on
# 64-bit (a larger value is refused)


def keep_freed_memory() -> bool:
    """Set glibc's malloc options; False where there is no glibc (macOS, musl) or an option
    is refused, which changes nothing but speed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(option, value) == 1 for option, value in (
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD),
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD)))
