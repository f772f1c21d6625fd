"""The shipped spoken-digit `.tflite` variants on the FSDD official test split (300 clips),
and the same clips as WAVs from other recorders: rates, channels, sample formats, levels."""

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import MODELS

from tinydigits.audio import prepare_clip, prepare_wav
from tinydigits.runtime import Classifier

KERAS_MIN_ACCURACY = 0.993
TFLITE_MIN_ACCURACY = {"float32": 0.993, "float16": 0.993, "dynamic": 0.99, "int8": 0.99}
MIN_AGREEMENT = 0.995
MAX_INT8_BYTES = 150 * 1024
SAME_ANSWER = 0.98  # WAVs from other recorders vs the original clip


@pytest.fixture(scope="module")
def test_clips(fsdd):
    _, test = fsdd.official_split()
    return test, np.stack([prepare_clip(fsdd.audio[i], 8000) for i in test]), fsdd.digit[test]


@pytest.fixture(scope="module")
def keras_predictions(test_clips):
    import keras

    import tinydigits.blocks  # noqa: F401  registers the front-end layers

    model = keras.saving.load_model(MODELS / "spoken_digits.keras")
    return model.predict(test_clips[1], batch_size=100, verbose=0).argmax(1)


def test_keras_model_reaches_target(test_clips, keras_predictions):
    assert (keras_predictions == test_clips[2]).mean() >= KERAS_MIN_ACCURACY


@pytest.mark.parametrize("variant", list(TFLITE_MIN_ACCURACY))
def test_variant_meets_targets(variant, test_clips, keras_predictions):
    from tinydigits.convert import run_tflite

    path = MODELS / f"spoken_digits.{variant}.tflite"
    predicted = run_tflite(path, test_clips[1]).argmax(1)
    accuracy = (predicted == test_clips[2]).mean()
    agreement = (predicted == keras_predictions).mean()
    assert accuracy >= TFLITE_MIN_ACCURACY[variant], f"{variant}: accuracy {accuracy:.4f}"
    assert agreement >= MIN_AGREEMENT, f"{variant}: agreement {agreement:.4f}"
    if variant == "int8":
        assert path.stat().st_size <= MAX_INT8_BYTES


def test_front_end_is_float_in_every_variant():
    """Quantizing the log-mel front end destroys it: its ops, their weights and outputs must
    stay float (QUANTIZE, where the front end hands over to the int8 layers, excepted)."""
    from ai_edge_litert.interpreter import Interpreter

    quantized = {"int8", "uint8", "int16", "float16"}
    for path in sorted(MODELS.glob("spoken_digits.*.tflite")):
        interpreter = Interpreter(model_path=str(path))
        tensors = interpreter.get_tensor_details()
        front = [op for op in interpreter._get_ops_details()
                 if any("/frontend" in tensors[i]["name"] for i in op["outputs"])]
        assert len(front) > 10, path
        for op in front:
            if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
                continue
            dtypes = {str(np.dtype(tensors[i]["dtype"]))
                      for i in [*op["inputs"], *op["outputs"]] if i >= 0}
            assert not dtypes & quantized, (path.name, op["op_name"], dtypes)


def write_variants(fsdd, index, folder):
    """The clip as other recorders would have written it."""
    x = fsdd.audio[index]
    peak = np.abs(x).max()
    up = {rate: soxr.resample(x, 8000, rate) for rate in (16000, 44100)}
    silence = np.zeros(2 * 8000, np.float32)
    variants = {
        "16k.wav": (up[16000], 16000, "PCM_16"),
        "44k_stereo.wav": (np.stack([up[44100], 0.8 * up[44100]], 1), 44100, "PCM_16"),
        "24bit.wav": (x, 8000, "PCM_24"),
        "float.wav": (x, 8000, "FLOAT"),
        # An 8-bit recorder uses its range: at FSDD's level (theo peaks at -31 dBFS) 8 bits
        # leave ~4 steps, which no reader can undo.
        "u8.wav": (0.9 * x / peak, 8000, "PCM_U8"),
        "minus30dB.wav": (x * 10 ** (-30 / 20), 8000, "PCM_16"),
        "padded.wav": (np.concatenate([silence, x, silence]), 8000, "PCM_16"),
    }
    paths = {}
    for name, (audio, rate, subtype) in variants.items():
        paths[name] = folder / f"{index}_{name}"
        sf.write(paths[name], audio, rate, subtype=subtype)
    return paths


def test_wavs_from_other_recorders_get_the_same_answer(fsdd, test_clips, tmp_path):
    classifier = Classifier(MODELS / "spoken_digits.int8.tflite")
    indices = test_clips[0]
    original = [classifier.predict(c)[0] for c in test_clips[1]]
    same = {}
    for k, index in enumerate(indices):
        for name, path in write_variants(fsdd, index, tmp_path).items():
            answer = classifier.predict(prepare_wav(path))[0]
            same.setdefault(name, []).append(answer == original[k])
            path.unlink()
    rates = {name: float(np.mean(v)) for name, v in same.items()}
    assert min(rates.values()) >= SAME_ANSWER, rates
