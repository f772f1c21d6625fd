"""Keras -> `.tflite` variants, and their verification against the float Keras model.

Training side (TensorFlow). The conversion path is the one Keras 3 uses itself
(ExportArchive -> SavedModel -> `TFLiteConverter.from_saved_model`), with one change:
builtin ops only. `model.export(format="litert")` also allows SELECT_TF_OPS, which
writes Flex ops that the Pi's interpreter cannot run.

Verification runs every variant with the LiteRT interpreter (the device runtime's
`Classifier`, the same code the Pi runs) on the full test set.
"""

import math
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import tensorflow as tf

from tinydigits import ctc
from tinydigits.blocks import LogMelSpectrogram  # registers the custom layers for loading
from tinydigits.catalog import VARIANTS
from tinydigits.runtime import Classifier

DESCRIPTIONS = {
    "float32": "float32 weights and activations",
    "float16": "float16 weights, float32 compute",
    "dynamic": "int8 weights, float activations (dynamic range)",
    "int8": "int8 weights and activations, float32 input/output",
    "int8_io": "int8 throughout, int8 input/output",
}
CALIBRATION_SAMPLES = 500  # representative inputs for int8 activation ranges


@dataclass(frozen=True)
class Gate:
    """When a variant is refused: when the evidence says it is worse than the float model.

    The test is McNemar's, exact: on the inputs where exactly one of the two models is right,
    if the variant were as accurate as Keras, "Keras right, variant wrong" would be a fair
    coin. A variant is refused if that many or more such inputs would come up less often
    than `SIGNIFICANCE`. A test set of 300 has too few disagreements for the test to see a
    small loss, so floors on the accuracy drop and the agreement stand beside it; each floor
    allows at least `SLACK` inputs, so a floor never demands more than the test set can show.
    """

    max_accuracy_drop: float  # percentage points below the Keras model's accuracy
    min_agreement: float  # fraction of test inputs with the same prediction as Keras
    max_prob_diff: float | None  # largest |p_tflite - p_keras|; None: not gated (quantized)

    def failures(self, v: "Verification") -> list:
        found = []
        if v.p_value < SIGNIFICANCE:
            found.append(f"measurably less accurate than Keras: wrong on {v.worse} inputs Keras "
                         f"gets right, right on {v.better} it gets wrong "
                         f"(McNemar p {_p(v.p_value)}, below {SIGNIFICANCE})")
        drop, allowed = (v.keras_accuracy - v.accuracy) * 100, self.allowed_drop(v.inputs)
        if drop > allowed:
            found.append(f"accuracy {v.accuracy:.2%} is {drop:.2f} points below Keras "
                         f"{v.keras_accuracy:.2%} (allowed {allowed:.2f})")
        if v.agreement < self.required_agreement(v.inputs):
            found.append(f"agrees with Keras on {v.agreement:.2%} of inputs "
                         f"(needs {self.required_agreement(v.inputs):.2%})")
        if self.max_prob_diff is not None and v.max_prob_diff > self.max_prob_diff:
            found.append(f"largest probability difference {v.max_prob_diff:.4f} > "
                         f"{self.max_prob_diff}")
        return found

    def allowed_drop(self, inputs: int) -> float:
        return max(self.max_accuracy_drop, 100 * SLACK / inputs)

    def required_agreement(self, inputs: int) -> float:
        return min(self.min_agreement, 1 - SLACK / inputs)


SIGNIFICANCE = 0.01  # one-sided: a 1-in-100 chance of refusing a variant as good as Keras
SLACK = 2  # inputs: the least that any floor allows to flip, whatever the test set's size
GATES = {
    # float32 is the same arithmetic reordered: anything more than rounding is a bug.
    "float32": Gate(0.0, 0.999, 1e-3),
    "float16": Gate(0.5, 0.99, 0.05),
    # Quantized variants: borderline inputs flip both ways; what matters is the balance.
    "dynamic": Gate(1.0, 0.98, None),
    "int8": Gate(1.0, 0.98, None),
    "int8_io": Gate(1.0, 0.98, None),
}


def _p(p: float) -> str:
    return f"= {p:.2g}" if p >= 1e-15 else "< 1e-15"


def mcnemar_p(worse: int, better: int) -> float:
    """One-sided exact McNemar p-value: P(X >= worse), X ~ Binomial(worse + better, 1/2)."""
    n = worse + better
    return sum(math.comb(n, k) for k in range(worse, n + 1)) / 2**n if n else 1.0


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
    inputs: int  # test inputs compared
    accuracy: float
    keras_accuracy: float
    agreement: float  # fraction with the same prediction as Keras
    worse: int  # inputs the variant gets wrong and Keras right
    better: int  # inputs the variant gets right and Keras wrong
    p_value: float  # McNemar, one-sided: the chance of `worse` or more if equally accurate
    max_prob_diff: float
    size_bytes: int = 0
    latency_ms_median: float = 0.0
    latency_ms_p95: float = 0.0
    failures: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self):
        return {**asdict(self), "passed": self.passed, "description": DESCRIPTIONS[self.variant]}


def judge(variant, y_test, keras_scores, scores, gate=None, decode=None) -> Verification:
    """Compare a variant's scores with the Keras model's on the same test inputs, and gate.

    `decode` turns a batch of scores into predictions (default: argmax per input).
    """
    decode = decode or (lambda p: p.argmax(-1))
    y_test, keras_pred, pred = (np.asarray(a) for a in (y_test, decode(keras_scores),
                                                         decode(scores)))
    keras_right, right = keras_pred == y_test, pred == y_test
    worse, better = int((keras_right & ~right).sum()), int((right & ~keras_right).sum())
    v = Verification(variant, len(y_test), float(right.mean()), float(keras_right.mean()),
                     float((pred == keras_pred).mean()), worse, better, mcnemar_p(worse, better),
                     float(np.abs(np.asarray(scores) - np.asarray(keras_scores)).max()))
    v.failures = (gate or GATES[variant]).failures(v)
    return v


def run_tflite(path, x: np.ndarray, progress=None) -> np.ndarray:
    """The model's scores for every input, one at a time as the device runs them:
    probabilities (N, classes), or per-frame CTC probabilities (N, frames, 11)."""
    classifier = Classifier(path, num_threads=1)
    out = []
    for i in range(len(x)):
        scores = classifier.scores(x[i])
        out.append(ctc.softmax(scores).astype(np.float32) if classifier.output == "ctc"
                   else scores)
        if progress:
            progress(i)
    return np.stack(out)


def keras_scores(model, spec, x: np.ndarray) -> np.ndarray:
    """The Keras model's scores on the test inputs, in the form `run_tflite` gives them."""
    scores = model.predict(x, batch_size=32 if spec.output == "ctc" else 256, verbose=0)
    return ctc.softmax(scores).astype(np.float32) if spec.output == "ctc" else scores


def decoder(spec):
    """Scores (N, ...) -> N predictions: a class index, or a CTC model's digit string."""
    if spec.output == "ctc":
        return lambda scores: np.array(["".join(str(c - 1) for c in ctc.greedy_path(p))
                                        for p in scores])
    return lambda scores: np.asarray(scores).argmax(-1)


def measure_latency(path, x: np.ndarray, runs=300, warmup=20) -> tuple[float, float]:
    """Median and 95th percentile milliseconds per input, batch 1, one thread."""
    classifier = Classifier(path, num_threads=1)
    times = []
    for i in range(warmup + runs):
        sample = x[i % len(x)]
        start = time.perf_counter()
        classifier.scores(sample)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times)), float(np.percentile(times, 95))


def verify(variant, path, x_test, y_test, keras_scores, gate=None, progress=None,
           decode=None):
    """Run one `.tflite` file on the test set, compare it with Keras, gate it, time it."""
    v = judge(variant, y_test, keras_scores, run_tflite(path, x_test, progress), gate, decode)
    v.size_bytes = path.stat().st_size
    v.latency_ms_median, v.latency_ms_p95 = measure_latency(path, x_test)
    return v


def markdown_table(results, title="") -> str:
    lines = [f"### {title}", ""] if title else []
    lines += [
        "| variant | accuracy | agreement with Keras | worse / better than Keras | McNemar p "
        "| max prob diff | size KB | ms median | ms p95 | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        verdict = "pass" if r.passed else "REFUSED: " + "; ".join(r.failures)
        lines.append(
            f"| {r.variant} | {r.accuracy:.2%} | {r.agreement:.2%} | {r.worse} / {r.better} | "
            f"{_p(r.p_value).lstrip('= ')} | {r.max_prob_diff:.4f} | {r.size_bytes / 1024:.1f} | "
            f"{r.latency_ms_median:.3f} | {r.latency_ms_p95:.3f} | {verdict} |")
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
    if dataset == "digit_strings":  # strings of FSDD test words, padded to one length
        from tinydigits.digit_strings import verification_strings

        calibration, x_test, strings = verification_strings(data_dir, seed)
        return calibration, x_test, np.array(strings)
    raise ValueError(f"unknown dataset {dataset!r}")

