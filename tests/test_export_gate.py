"""The exporter's gate refuses a variant that is measurably worse than its float model, and
only that; the exporter installs a whole set or nothing, with a manifest that matches it."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import MODELS, REPO

from tinydigits import convert, manifest


def test_mcnemar_p_is_the_binomial_tail():
    assert convert.mcnemar_p(0, 0) == 1.0
    assert convert.mcnemar_p(1, 0) == 0.5  # one flip: a coin toss, no evidence at all
    assert convert.mcnemar_p(7, 0) == 1 / 128
    assert convert.mcnemar_p(0, 7) == 1.0
    assert convert.mcnemar_p(5, 5) == pytest.approx(638 / 1024)  # P(X >= 5), X ~ B(10, 1/2)
    assert convert.mcnemar_p(60, 40) == pytest.approx(0.0284, abs=1e-4)


@pytest.fixture(scope="module")
def spoken():
    import keras

    import tinydigits.blocks  # noqa: F401  registers the front-end layers

    calibration, x_test, y_test = convert.verification_data("spoken_digits")
    model = keras.saving.load_model(MODELS / "spoken_digits.keras")
    return model, calibration, x_test, y_test, model.predict(x_test, verbose=0)


def test_one_flip_away_from_keras_passes(spoken):
    """On 300 clips one flipped answer is 0.33 points: the gate of old refused exactly that."""
    _, _, x_test, y_test, keras_scores = spoken
    scores = convert.run_tflite(MODELS / "spoken_digits.int8.tflite", x_test)
    flip = int(np.flatnonzero(scores.argmax(1) == y_test)[0])
    scores[flip] = np.roll(scores[flip], 1)  # now wrong where Keras is right
    for variant in ("int8", "int8_io", "dynamic"):  # float ones also bound the probabilities
        v = convert.judge(variant, y_test, keras_scores, scores)
        assert v.worse >= 1 and v.accuracy < v.keras_accuracy
        assert v.passed, (variant, v.failures)


def test_quantized_front_end_is_refused(spoken, tmp_path):
    """The mistake the front end's denylist prevents: int8 log-mel features are destroyed."""
    model, calibration, x_test, y_test, keras_scores = spoken
    path = tmp_path / "spoken_digits.int8.tflite"
    path.write_bytes(convert.convert(model, "int8", calibration, keep_float=()))
    v = convert.judge("int8", y_test, keras_scores, convert.run_tflite(path, x_test))
    assert not v.passed
    assert any("McNemar" in f for f in v.failures), v.failures


def test_perturbed_weights_are_refused(mnist):
    """A model whose weights were damaged (noise of 30% of each kernel's spread) against
    the float model it should match: refused on the evidence, not on a single input."""
    import keras

    model = keras.saving.load_model(MODELS / "mnist.keras")
    _, (x_test, y_test) = mnist
    x = (x_test[:2000, ..., None] / 255.0).astype(np.float32)
    keras_scores = model.predict(x, verbose=0)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            w = layer.kernel.numpy()
            layer.kernel.assign(w + rng.normal(0, 0.3 * w.std(), w.shape).astype(w.dtype))
    v = convert.judge("dynamic", y_test[:2000], keras_scores, model.predict(x, verbose=0))
    assert v.worse > 3 * v.better
    assert not v.passed and any("McNemar" in f for f in v.failures), v.failures


# --------------------------------------------------------------------- the whole exporter


def quantization_hostile(src, dest):
    """The shipped MNIST model with one channel of its first activation made 1000x larger and
    the next convolution's weights for it 1000x smaller: the float model computes the same
    function, but int8's one scale per activation tensor now rounds every other channel to
    nothing. A real failure mode of int8 (outlier channels), not a stub."""
    import keras

    model = keras.saving.load_model(src)
    bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    gamma, beta = bn.gamma.numpy(), bn.beta.numpy()
    gamma[0] *= 1000
    beta[0] *= 1000
    bn.gamma.assign(gamma)
    bn.beta.assign(beta)
    kernel = convs[1].kernel.numpy()
    kernel[:, :, 0, :] /= 1000
    convs[1].kernel.assign(kernel)
    model.save(dest)


def export(*args):
    return subprocess.run([sys.executable, REPO / "export" / "tflite.py", *map(str, args)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)


@pytest.mark.slow
def test_a_refused_variant_leaves_the_old_set_whole_and_force_replaces_it(tmp_path):
    out = tmp_path / "models"
    out.mkdir()
    flags = ["--limit", "1000", "--variants", "float32", "int8"]
    shutil.copy(MODELS / "mnist.keras", tmp_path / "mnist.keras")
    good = export(tmp_path / "mnist.keras", "--out-dir", out, *flags)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Tensorflow" not in good.stderr and "I0000" not in good.stderr  # quiet by default
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"mnist.float32.tflite", "mnist.int8.tflite", "manifest.json"} <= set(old)
    assert all(manifest.status(out / f"mnist.{v}.tflite") == "ok" for v in ("float32", "int8"))

    hostile = tmp_path / "new" / "mnist.keras"
    hostile.parent.mkdir()
    quantization_hostile(MODELS / "mnist.keras", hostile)
    refused = export(hostile, "--out-dir", out, *flags)
    assert refused.returncode == 1
    assert "int8     " in refused.stdout and "REFUSED" in refused.stdout
    lines = [line for line in refused.stderr.splitlines() if line.startswith("error: int8")]
    assert len(lines) == 1 and "McNemar" in lines[0], refused.stderr
    assert "Traceback" not in refused.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # not one byte changed

    forced = export(hostile, "--out-dir", out, *flags, "--force")
    assert forced.returncode == 1
    entry = manifest.load(out)["mnist"]
    assert entry["source"]["sha256"] == manifest.sha256(hostile)  # the new training's set...
    assert entry["verification"]["forced"] and not entry["variants"]["int8"]["passed"]
    for variant in ("float32", "int8"):  # ...whole: every file is the one it lists
        assert manifest.status(out / f"mnist.{variant}.tflite") == "ok"
        assert (out / f"mnist.{variant}.tflite").read_bytes() != old[f"mnist.{variant}.tflite"]


def test_models_command_matches_the_shipped_files():
    from conftest import run_cli

    r = run_cli("models", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    shipped = sorted(p.name for p in MODELS.glob("*.tflite"))
    assert sorted(row["file"] for row in rows) == shipped
    entries = manifest.load(MODELS)
    for row in rows:
        assert row["status"] == "ok"
        listed = entries[row["model"]]["variants"][row["variant"]]
        assert listed["sha256"] == manifest.sha256(MODELS / row["file"])
        assert listed["passed"] and row["accuracy"] == listed["accuracy"]
        assert entries[row["model"]]["source"]["sha256"] == manifest.sha256(
            MODELS / f"{row['model']}.keras")  # every variant from the .keras that ships


def test_a_modified_model_file_is_reported_and_still_runs(tmp_path):
    from conftest import run_cli

    models = tmp_path / "models"
    shutil.copytree(MODELS, models, ignore=shutil.ignore_patterns("*.keras", "*.png"))
    target = models / "mnist.int8_io.tflite"
    target.write_bytes((models / "mnist.int8.tflite").read_bytes())  # a valid, other model
    env = {"TINYDIGITS_MODELS": str(models)}
    sample = REPO / "samples" / "images" / "2_offcentre_canvas.png"
    r = run_cli("classify", sample, env=env)
    assert r.returncode == 0 and r.stdout.split()[1] == "2", r.stdout + r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("tinydigits: warning")]
    assert len(warnings) == 1 and "mnist.int8_io.tflite" in warnings[0] and "sha256" in warnings[0]
    r = run_cli("models", env=env)
    assert r.returncode == 1
    rows = [line.split() for line in r.stdout.splitlines()[2:]]  # after the folder and header
    assert [row[:2] for row in rows if "modified" in row] == [["mnist", "int8_io"]]
    assert all("ok" in row for row in rows if row[:2] != ["mnist", "int8_io"])
