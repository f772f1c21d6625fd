import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "tinydigits" / "models"

# Tests send Ctrl-C (SIGINT) to the programs they start. A shell runs a background job with
# SIGINT ignored, and children inherit that: the programs would never see the signal and the
# tests would fail for the wrong reason. A Python handler is reset to the default on exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def run_cli(*args, env=None, timeout=120):
    """Run `tinydigits ...` in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "tinydigits.cli", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})},
    )


@pytest.fixture(scope="session")
def mnist():
    from tinydigits.datasets import load_mnist

    return load_mnist()


@pytest.fixture(scope="session")
def fsdd():
    """All 3,000 FSDD recordings, loaded once for the whole run (~1.5 s)."""
    from tinydigits.datasets import load_fsdd

    return load_fsdd()
