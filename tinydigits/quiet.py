"""Training side. Loads TensorFlow without its start-up log lines; import it before Keras.

    import tinydigits.quiet  # noqa: F401  (first: ruff's isort keeps it in its own section)

TensorFlow writes ~8 lines to stderr while it loads and finds its devices (oneDNN notes,
"Could not find cuda drivers", CPU instruction advice, a failed cuInit on a machine with
no GPU), some before its own log level applies, so TF_CPP_MIN_LOG_LEVEL cannot hide them.
This sends fd 2 to a file while TensorFlow loads and initialises, then replays any line
that is not one of those notes: a real error still shows. TINYDIGITS_VERBOSE=1 leaves
stderr alone.
"""

import os
import re
import sys
import tempfile

NOTES = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog"
    r"|[IW]\d{4} "  # INFO and WARNING lines of TensorFlow's C++ logging
    r"|E\d{4} .*(cuInit|cuda|CUDA|cuDNN|cuFFT|cuBLAS)"  # no GPU here, and none needed
    r"|To enable the following instructions|.*rebuild TensorFlow with)")


def _load_quietly():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryFile("w+") as log:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # device discovery: where cuInit complains
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            sys.stderr.writelines(line for line in log if not NOTES.match(line))


if os.environ.get("TINYDIGITS_VERBOSE") != "1" and "tensorflow" not in sys.modules:
    _load_quietly()
