"""Keras -> `.tflite` variants, and their verification against the float Keras model.

Training side (TensorFlow). The conversion path is the one Keras 3 uses itself
(ExportArchive -> SavedModel -> `TFLiteConverter.from_saved_model`), with one change:
builtin ops only. `model.export(format="litert")` also allows SELECT_TF_OPS, which
writes Flex ops that the Pi's interpreter cannot run.

Verification runs every variant with the LiteRT interpreter (the device runtime's
`Classifier`, the same code the Pi runs) on the full test set.
"""

import re
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np
import tensorflow as tf

from tinydigits.blocks import LogMelSpectrogram  # registers the custom layers for loading
from tinydigits.runtime import VARIANTS, Classifier

DESCRIPTIONS = {
    "float32": "float32 weights and activations",
    "float16": "float16 weights, float32 compute",
    "dynamic": "int8 weights, float activations (dynamic range)",
    "int8": "int8 weights and activations, float32 input/output",
    "int8_io": "int8 throughout, int8 input/output",
}
CALIBRATION_SAMPLES = 500  # representative inputs for int8 activation ranges


@dataclass(frozen=True)
class Thresholds:
    """What a variant must reach against the float Keras model on the full test set."""

    max_accuracy_drop: float  # percentage points below the Keras model's accuracy
    min_agreement: float  # fraction of test inputs with the same argmax as Keras
    max_prob_diff: float  # largest |p_tflite - p_keras| over all inputs and classes


THRESHOLDS = {
    # float32 is the same arithmetic reordered: anything more than rounding is a bug.
    "float32": Thresholds(0.01, 0.999, 1e-3),
    "float16": Thresholds(0.5, 0.995, 0.05),
    # Quantized variants: an occasional borderline input may flip, so the largest
    # probability difference is bounded loosely; agreement is what matters.
    "dynamic": Thresholds(0.2, 0.995, 0.6),
    "int8": Thresholds(0.2, 0.995, 0.6),
    "int8_io": Thresholds(0.2, 0.995, 0.6),
}


def _converter(model, saved_model_dir):
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32, name="input")
    archive.add_endpoint("serve", lambda x: model(x, training=False), input_signature=[spec])
    archive.write_out(saved_model_dir, verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops
    return converter


def float_layers(model) -> tuple:
    """Names of layers that every variant must keep in float32 (the audio front end)."""
    return tuple(layer.name for layer in model.layers if isinstance(layer, LogMelSpectrogram))


def _tensors_of_layers(tflite_model: bytes, layer_names) -> list:
    """Output tensor names of the ops that the given Keras layers became."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite_model)
    tensors = interpreter.get_tensor_details()
    patterns = [re.compile(rf"/{re.escape(name)}(_\d+)?/") for name in layer_names]
    names = []
    for op in interpreter._get_ops_details():
        for i in op["outputs"]:
            if any(p.search(tensors[i]["name"]) for p in patterns):
                names.append(tensors[i]["name"])
    return names


def convert(model, variant: str, calibration: np.ndarray, keep_float: tuple = ()) -> bytes:
    """One `.tflite` variant of a Keras model, as bytes.

    `calibration` holds representative inputs (no batch axis needed beyond the first).
    `keep_float` names Keras layers that int8 variants must leave in float32, such as an
    audio front end that quantization would destroy.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")

    def representative():
        for x in calibration[:CALIBRATION_SAMPLES]:
            yield [x[None].astype(np.float32)]

    with tempfile.TemporaryDirectory() as tmp:
        converter = _converter(model, tmp)
        if variant == "float32":
            return converter.convert()
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "float16":
            converter.target_spec.supported_types = [tf.float16]
            return converter.convert()
        if variant == "dynamic":
            return converter.convert()
        converter.representative_dataset = representative
        if variant == "int8_io":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
            if not keep_float:
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if not keep_float:
            return converter.convert()
        denylist = _tensors_of_layers(convert(model, "float32", calibration), keep_float)
        if not denylist:
            raise ValueError(f"no ops found for the float layers {keep_float}")
        options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=denylist, fully_quantize=variant == "int8_io")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative, debug_options=options)
        return debugger.get_nondebug_quantized_model()


@dataclass
class Verification:
    variant: str
    accuracy: float
    keras_accuracy: float
    agreement: float
    max_prob_diff: float
    size_bytes: int
    latency_ms_median: float
    latency_ms_p95: float
    failures: list

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self):
        return {**asdict(self), "passed": self.passed, "description": DESCRIPTIONS[self.variant]}


def run_tflite(path, x: np.ndarray, progress=None) -> np.ndarray:
    """Probabilities for every input, one at a time as the device runs them."""
    classifier = Classifier(path, num_threads=1)
    out = np.empty((len(x), classifier.classes), np.float32)
    for i in range(len(x)):
        out[i] = classifier.probabilities(x[i])
        if progress:
            progress(i)
    return out


def measure_latency(path, x: np.ndarray, runs=300, warmup=20) -> tuple[float, float]:
    """Median and 95th percentile milliseconds per input, batch 1, one thread."""
    classifier = Classifier(path, num_threads=1)
    times = []
    for i in range(warmup + runs):
        sample = x[i % len(x)]
        start = time.perf_counter()
        classifier.probabilities(sample)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times)), float(np.percentile(times, 95))


def verify(variant, path, x_test, y_test, keras_probs, thresholds=None, progress=None):
    """Compare one `.tflite` file with the Keras model's probabilities on the test set."""
    thresholds = thresholds or THRESHOLDS[variant]
    probs = run_tflite(path, x_test, progress)
    keras_accuracy = float((keras_probs.argmax(1) == y_test).mean())
    accuracy = float((probs.argmax(1) == y_test).mean())
    agreement = float((probs.argmax(1) == keras_probs.argmax(1)).mean())
    max_diff = float(np.abs(probs - keras_probs).max())
    median, p95 = measure_latency(path, x_test)
    failures = []
    drop = (keras_accuracy - accuracy) * 100
    if drop > thresholds.max_accuracy_drop:
        failures.append(f"accuracy {accuracy:.2%} is {drop:.2f} points below Keras "
                        f"{keras_accuracy:.2%} (allowed {thresholds.max_accuracy_drop})")
    if agreement < thresholds.min_agreement:
        failures.append(f"agreement with Keras {agreement:.2%} < {thresholds.min_agreement:.2%}")
    if max_diff > thresholds.max_prob_diff:
        failures.append(f"largest probability difference {max_diff:.4f} > "
                        f"{thresholds.max_prob_diff}")
    return Verification(variant, accuracy, keras_accuracy, agreement, max_diff,
                        path.stat().st_size, median, p95, failures)


def markdown_table(results, title="") -> str:
    lines = [f"### {title}", ""] if title else []
    lines += [
        "| variant | accuracy | agreement with Keras | max prob diff | size KB | ms median "
        "| ms p95 | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        verdict = "pass" if r.passed else "REFUSED: " + "; ".join(r.failures)
        lines.append(
            f"| {r.variant} | {r.accuracy:.2%} | {r.agreement:.2%} | {r.max_prob_diff:.4f} | "
            f"{r.size_bytes / 1024:.1f} | {r.latency_ms_median:.3f} | {r.latency_ms_p95:.3f} | "
            f"{verdict} |")
    return "\n".join(lines) + "\n"


def verification_data(dataset: str, data_dir=None, seed=0):
    """(calibration inputs, test inputs, test labels) exactly as the device prepares them."""
    from tinydigits import datasets

    rng = np.random.default_rng(seed)
    if dataset == "mnist":
        (x_train, _), (x_test, y_test) = datasets.load_mnist(data_dir)
        calibration = x_train[rng.permutation(len(x_train))[:CALIBRATION_SAMPLES]]
        return (calibration[..., None] / 255.0).astype(np.float32), \
            (x_test[..., None] / 255.0).astype(np.float32), y_test.astype(int)
    if dataset == "spoken_digits":
        from tinydigits.audio import prepare_clip

        fsdd = datasets.load_fsdd(data_dir)
        train, test = fsdd.official_split()
        clips = np.stack([prepare_clip(a, fsdd.sample_rate) for a in fsdd.audio])
        calibration = clips[rng.permutation(train)[:CALIBRATION_SAMPLES]]
        return calibration, clips[test], fsdd.digit[test]
    raise ValueError(f"unknown dataset {dataset!r}")


def dataset_of(model) -> str:
    """Which dataset a model was trained on, from its input shape."""
    shape = tuple(model.input_shape[1:])
    if shape == (28, 28, 1):
        return "mnist"
    if len(shape) == 1:
        return "spoken_digits"
    raise ValueError(f"cannot tell the dataset of a model with input shape {shape}")
