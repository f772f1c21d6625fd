"""Errors the user can fix. Device side: no TensorFlow, no Keras.

The command line prints these as one line (`file: reason`) and exits non-zero;
anything else escaping is a bug.
"""


class InputError(ValueError):
    """An input file that tinydigits refuses, with the reason in words."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DatasetError(RuntimeError):
    """A missing or corrupt dataset file, with the one thing that fixes it."""


class RuntimeUnavailable(RuntimeError):
    """No interpreter can load the model (missing package or unsupported ops)."""
