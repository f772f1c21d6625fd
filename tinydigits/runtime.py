"""Device side: NumPy + LiteRT only. Runs a `.tflite` digit classifier.

Imports `ai_edge_litert` (the supported runtime, aarch64 wheels for 64-bit Raspberry Pi
OS) and falls back to `tflite_runtime`; never TensorFlow or Keras. Handles int8 / uint8
input and output tensors with their scale and zero point, so callers always pass and
receive float32.
"""

import contextlib
import math
import mmap
import os
import struct
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from tinydigits import catalog
from tinydigits.catalog import DIGITS, NOT_A_DIGIT, VARIANTS
from tinydigits.errors import RuntimeUnavailable

MAX_VARIABLE_SAMPLES = 8000 * 30  # a variable-length audio model hears at most 30 s at once
VARIABLE_SAMPLES_AT_LOAD = 8000  # its input length until the first input sets it
MAX_TENSOR_BYTES = 64 * 2**20  # our largest tensor is 253 KB (spoken digits: 101x40x16 float32)
_TENSOR_DTYPES = {np.dtype(t) for t in ("float32", "int8", "uint8")}  # what _quantize handles




def models_dir() -> Path:
    """Where the shipped models are: package data (`tinydigits/models/`, so a clone, an
    editable install and a wheel all find them), unless $TINYDIGITS_MODELS says otherwise."""
    override = os.environ.get("TINYDIGITS_MODELS")
    return Path(override) if override else Path(str(resources.files("tinydigits") / "models"))


def model_path(kind: str, choice: str | None = None) -> Path:
    """`--model`: a variant name picks that variant of the shipped model for `kind`, anything
    else is a path; None is the shipped default."""
    spec = catalog.shipped(kind)
    if choice is None or choice in VARIANTS:
        return models_dir() / f"{spec.stem}.{choice or spec.default_variant}.tflite"
    return Path(choice)


def _is_variable_length(tensor: dict) -> bool:
    """A 1-D input (after the batch) whose length the model leaves open: [1, -1]."""
    return np.asarray(tensor.get("shape_signature", tensor["shape"])).tolist()[1:] == [-1]


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


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
def quiet_native_stderr():
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


def _lists_a_subgraph(path: Path) -> bool:
    """False if the `.tflite` flatbuffer's root table has no `subgraphs` (field 2) or an
    empty one. LiteRT 2.3's verifier accepts such a file and its InterpreterBuilder then
    dereferences the missing vector: a segfault (found by tests/test_fuzz.py). Anything
    this cannot follow returns True and is left to LiteRT's own verifier."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size < 8:
            return True
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:  # reads ~5 pages

            def read(fmt, pos):
                if not 0 <= pos <= len(data) - struct.calcsize(fmt):
                    raise ValueError("out of bounds")
                return struct.unpack_from(fmt, data, pos)[0]

            try:
                root = read("<I", 0)
                vtable = root - read("<i", root)
                if read("<H", vtable) < 4 + 2 * 3:  # the vtable ends before field 2's slot
                    return False
                field = read("<H", vtable + 4 + 2 * 2)
                return field != 0 and read("<I", root + field + read("<I", root + field)) > 0
            except ValueError:
                return True


class Classifier:
    """A `.tflite` digit model: one input (no batch axis) to class probabilities
    (`output == "classes"`) or to per-frame CTC scores over blank + 10 digits (`"ctc"`).

    A model built with a `None` time axis (`variable_length`) takes 1-D audio of any length
    up to MAX_VARIABLE_SAMPLES: the input tensor is resized to each input's length.
    """

    def __init__(self, model_path, num_threads=1):
        self.path = Path(model_path)
        if not self.path.is_file():
            raise RuntimeUnavailable(f"{self.path}: " + (
                "not a regular file" if self.path.exists() else "no such model file"))
        Interpreter, self.runtime = _interpreter_class()
        if not _lists_a_subgraph(self.path):
            raise RuntimeUnavailable(f"{self.path}: {self.runtime} cannot load it "
                                     "(the model lists no subgraph)")
        try:
            with quiet_native_stderr():
                self.interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
                self._check_tensors()  # before allocate_tensors, which would abort or swap
                inputs = self.interpreter.get_input_details()
                if len(inputs) == 1 and _is_variable_length(inputs[0]):  # its shape is [1, 1]:
                    self.interpreter.resize_tensor_input(  # too short for the front end's pad
                        inputs[0]["index"], [1, VARIABLE_SAMPLES_AT_LOAD])
                self.interpreter.allocate_tensors()
                inputs = self.interpreter.get_input_details()
                outputs = self.interpreter.get_output_details()
        except (ValueError, RuntimeError) as e:  # UnicodeDecodeError too: a corrupt tensor name
            raise RuntimeUnavailable(f"{self.path}: {self.runtime} cannot load it "
                                     f"({_first_line(e)}){self._fallback_hint()}") from None
        if len(inputs) != 1 or len(outputs) != 1:
            raise RuntimeUnavailable(f"{self.path}: has {len(inputs)} inputs and {len(outputs)} "
                                     "outputs; a digit classifier has one of each")
        self._in, self._out = inputs[0], outputs[0]
        in_shape, out_shape = [d.tolist() for d in (self._in["shape"], self._out["shape"])]
        self.variable_length = _is_variable_length(self._in)
        self.output = ("classes" if len(out_shape) == 2 and 2 <= out_shape[1] <= len(DIGITS) + 1
                       else "ctc" if len(out_shape) == 3 and out_shape[2] == len(DIGITS) + 1
                       else None)
        if (len(in_shape) < 2 or in_shape[0] != 1 or min(in_shape) < 1
                or self.output is None or out_shape[0] != 1
                or any(np.dtype(d["dtype"]) not in _TENSOR_DTYPES for d in (self._in, self._out))
                or any(np.dtype(d["dtype"]).kind != "f" and not d["quantization"][0] > 0
                       for d in (self._in, self._out))):
            raise RuntimeUnavailable(
                f"{self.path}: maps {np.dtype(self._in['dtype'])}{in_shape} to "
                f"{np.dtype(self._out['dtype'])}{out_shape}; not a digit classifier "
                "(expected one input with a batch of 1 and class or per-frame scores out)")
        self.input_shape = (None,) if self.variable_length else tuple(
            int(d) for d in self._in["shape"][1:])
        self.input_dtype = np.dtype(self._in["dtype"])
        self.classes = int(self._out["shape"][-1])
        self.labels = [*DIGITS, *[NOT_A_DIGIT] * (self.classes - len(DIGITS))]

    def _fallback_hint(self) -> str:
        if self.runtime != "tflite-runtime":
            return ""
        return ("; tflite-runtime 2.14 cannot load some ops that TF 2.21 writes: "
                "pip install ai-edge-litert==2.3.0")

    def _check_tensors(self):
        """Refuse what a corrupt file can declare and LiteRT would act on: scales its kernels
        abort the whole process on (a CHECK, not an error), and shapes asking for gigabytes."""
        # The wrapper's per-tensor calls, not get_tensor_details(): that silently skips any
        # tensor whose name is not UTF-8, and a corrupt name must not hide a corrupt scale.
        wrapper = self.interpreter._interpreter
        if not hasattr(wrapper, "NumSubgraphs"):  # an older tflite-runtime: cannot check
            return
        for g in range(wrapper.NumSubgraphs()):
            for i in range(wrapper.NumTensors(g)):
                shape, dtype = wrapper.TensorSize(i, g), wrapper.TensorType(i, g)
                size = math.prod(int(d) for d in shape) * (np.dtype(dtype).itemsize if dtype else 1)
                if size > MAX_TENSOR_BYTES:
                    raise ValueError(f"tensor {i} of shape {shape.tolist()} would take "
                                     f"{size / 2**20:,.0f} MiB")
                scales = np.asarray(wrapper.TensorQuantizationParameters(i, g)[0])
                bad = ~(np.isfinite(scales) & (scales > 0))
                if bad.any():
                    raise ValueError(f"tensor {i} has quantization scale {scales[bad][0]:g}")

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

    def _fit_input(self, x: np.ndarray) -> np.ndarray:
        """`x` shaped as the input tensor, resizing a variable-length input to its length."""
        if not self.variable_length:
            if x.size != np.prod(self.input_shape):
                raise RuntimeUnavailable(
                    f"{self.path}: takes input {self.input_shape}, not {x.shape}")
            return x.reshape((1, *self.input_shape))
        x = x.reshape(-1)
        if not 0 < len(x) <= MAX_VARIABLE_SAMPLES:
            raise RuntimeUnavailable(f"{self.path}: takes 1 to {MAX_VARIABLE_SAMPLES:,} "
                                     f"samples, not {len(x):,}")
        if int(self._in["shape"][1]) != len(x):
            with quiet_native_stderr():
                self.interpreter.resize_tensor_input(self._in["index"], [1, len(x)])
                self.interpreter.allocate_tensors()
            self._in = self.interpreter.get_input_details()[0]
            self._out = self.interpreter.get_output_details()[0]
        return x[None]

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The model's output for one input, float32, without the batch axis: (classes,)
        probabilities, or (frames, 11) per-frame CTC scores."""
        x = self._fit_input(np.asarray(x, dtype=np.float32))
        try:
            self.interpreter.set_tensor(self._in["index"], self._quantize(x))
            self.interpreter.invoke()
            q = self.interpreter.get_tensor(self._out["index"])[0]
        except (ValueError, RuntimeError) as e:  # a kernel's own check failed at run time
            raise RuntimeUnavailable(
                f"{self.path}: {self.runtime} cannot run it ({_first_line(e)})") from None
        p = self._dequantize(q)
        if not np.isfinite(p).all():  # corrupt weights; argmax would pick a class at random
            raise RuntimeUnavailable(f"{self.path}: gives non-finite scores (a corrupt model?)")
        return p

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (float32, shape (classes,)) for one input."""
        if self.output != "classes":
            raise RuntimeUnavailable(f"{self.path}: gives per-frame scores, not one class")
        return self.scores(x)

    def predict(self, x: np.ndarray) -> tuple[str, float]:
        """(label, confidence) for one input."""
        p = self.probabilities(x)
        best = int(p.argmax())
        return self.labels[best], float(p[best])
