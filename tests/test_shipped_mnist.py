"""The shipped MNIST `.tflite` variants meet the targets on the full test set (10,000)."""

import numpy as np
import pytest
from conftest import MODELS

ACCURACY = {"float32": 0.995, "float16": 0.995, "dynamic": 0.994, "int8": 0.994,
            "int8_io": 0.994}
MIN_AGREEMENT = 0.998  # argmax agreement with the float Keras model
MAX_INT8_BYTES = 100 * 1024


@pytest.fixture(scope="module")
def test_set(mnist):
    _, (x_test, y_test) = mnist
    return (x_test[..., None] / 255.0).astype(np.float32), y_test.astype(int)


@pytest.fixture(scope="module")
def keras_predictions(test_set):
    import keras

    model = keras.saving.load_model(MODELS / "mnist.keras")
    return model.predict(test_set[0], batch_size=500, verbose=0).argmax(1)


def test_keras_model_reaches_target(test_set, keras_predictions):
    assert (keras_predictions == test_set[1]).mean() >= 0.995


@pytest.mark.parametrize("variant", list(ACCURACY))
def test_variant_meets_targets(variant, test_set, keras_predictions):
    from tinydigits.convert import run_tflite

    path = MODELS / f"mnist.{variant}.tflite"
    predicted = run_tflite(path, test_set[0]).argmax(1)
    accuracy = (predicted == test_set[1]).mean()
    agreement = (predicted == keras_predictions).mean()
    assert accuracy >= ACCURACY[variant], f"{variant}: accuracy {accuracy:.4f}"
    assert agreement >= MIN_AGREEMENT, f"{variant}: agreement {agreement:.4f}"
    if variant.startswith("int8"):
        assert path.stat().st_size <= MAX_INT8_BYTES


def test_int8_io_model_really_has_int8_io():
    from tinydigits.runtime import Classifier

    c = Classifier(MODELS / "mnist.int8_io.tflite")
    assert c.input_dtype == np.int8
    assert c._in["quantization"][0] > 0  # a real scale, which the runtime applies
