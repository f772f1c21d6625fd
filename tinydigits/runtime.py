"""Device side: NumPy + LiteRT only. Runs a `.tflite` digit classifier.

Imports `ai_edge_litert` (the supported runtime, aarch64 wheels for 64-bit Raspberry Pi
OS) and falls back to `tflite_runtime`; never TensorFlow or Keras. Handles int8 / uint8
input and output tensors with their scale and zero point, so callers always pass and
receive float32.
"""

import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from tinydigits.errors import RuntimeUnavailable

REPO_ROOT = Path(__file__).resolve().parent.parent
LABELS = [str(d) for d in range(10)]
NOT_A_DIGIT = "none"  # label of an optional 11th class: noise, clicks, breath, not a digit


def models_dir() -> Path:
    return Path(os.environ.get("TINYDIGITS_MODELS") or REPO_ROOT / "models")


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        raise RuntimeUnavailable(
            "no LiteRT interpreter installed: pip install ai-edge-litert==2.3.0 "
            "(64-bit OS) or tflite-runtime (see README)"
        ) from None


@contextlib.contextmanager
def _quiet_native_stderr():
    """Hide the C++ runtime's INFO lines ("Created TensorFlow Lite XNNPACK delegate") that
    would interleave with our one-line-per-file output. Python exceptions still carry the
    interpreter's error messages, so nothing a user needs is lost."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded, pytest capture): leave it
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class Classifier:
    """A `.tflite` model that maps one input (no batch axis) to class probabilities."""

    def __init__(self, model_path, num_threads=1):
        self.path = Path(model_path)
        if not self.path.is_file():
            raise RuntimeUnavailable(f"{self.path}: no such model file")
        Interpreter, self.runtime = _interpreter_class()
        try:
            with _quiet_native_stderr():
                self.interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            hint = ""
            if self.runtime == "tflite-runtime":
                hint = ("; tflite-runtime 2.14 cannot load some ops that TF 2.21 writes: "
                        "pip install ai-edge-litert==2.3.0")
            raise RuntimeUnavailable(
                f"{self.path}: {self.runtime} cannot load it ({first}){hint}") from None
        (self._in,) = self.interpreter.get_input_details()
        (self._out,) = self.interpreter.get_output_details()
        self.input_shape = tuple(int(d) for d in self._in["shape"][1:])
        self.input_dtype = np.dtype(self._in["dtype"])
        self.classes = int(self._out["shape"][-1])
        self.labels = LABELS + [NOT_A_DIGIT] * (self.classes - len(LABELS))

    @property
    def kind(self) -> str:
        """'image' for a 28x28x1 input, 'audio' for a 1-D waveform."""
        return "audio" if len(self.input_shape) == 1 else "image"

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        scale, zero_point = self._in["quantization"]
        if self.input_dtype.kind == "f":
            return x.astype(self.input_dtype)
        info = np.iinfo(self.input_dtype)
        q = np.round(x / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def _dequantize(self, q: np.ndarray) -> np.ndarray:
        if np.dtype(self._out["dtype"]).kind == "f":
            return q.astype(np.float32)
        scale, zero_point = self._out["quantization"]
        return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (float32, shape (classes,)) for one input."""
        x = np.asarray(x, dtype=np.float32).reshape((1, *self.input_shape))
        self.interpreter.set_tensor(self._in["index"], self._quantize(x))
        self.interpreter.invoke()
        return self._dequantize(self.interpreter.get_tensor(self._out["index"])[0])

    def predict(self, x: np.ndarray) -> tuple[str, float]:
        """(label, confidence) for one input."""
        p = self.probabilities(x)
        best = int(p.argmax())
        return self.labels[best], float(p[best])
