"""The digit-string model (Conv1D + CTC): strings of real FSDD test words, decoded through
the real LiteRT interpreter at each string's own length, and the device's NumPy decoder
against Keras's greedy CTC decoder on the model's real outputs."""

import shutil
import subprocess

import numpy as np
import pytest
from conftest import MODELS
from test_device_boundary import heavy_modules_after

from tinydigits import ctc, digit_strings
from tinydigits.audio import find_utterance

STRINGS = 60  # 6 of each length 1-10, from FSDD test recordings (never trained on)
MIN_EXACT_TFLITE = 0.95  # the recipe measures 300 such strings; see digit_strings.metrics.json


@pytest.fixture(scope="module")
def strings(fsdd):
    _, test = fsdd.official_split()
    return digit_strings.evaluation_strings(fsdd, test, n=STRINGS, seed=3)


@pytest.fixture(scope="module")
def model():
    import keras

    import tinydigits.blocks  # noqa: F401  registers the front end and the CTC loss

    return keras.saving.load_model(MODELS / "digit_strings.keras", safe_mode=True)


@pytest.fixture(scope="module")
def keras_logits(model, strings):
    audio, _ = strings
    return [model.predict(x[None], verbose=0)[0] for x in audio]


@pytest.fixture(scope="module")
def interpreter(model, tmp_path_factory):
    from ai_edge_litert.interpreter import Interpreter

    from tinydigits.convert import convert

    calibration = np.zeros((1, 16000), np.float32)  # unused by float32
    path = tmp_path_factory.mktemp("strings") / "digit_strings.float32.tflite"
    path.write_bytes(convert(model, "float32", calibration))
    return Interpreter(model_path=str(path), num_threads=1)


def run_tflite(interpreter, x):
    """Logits (frames, 11) for one string at its own length, via resize_tensor_input."""
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], [1, len(x)])
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x[None].astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])[0]


def test_strings_of_test_words_decode_exactly_through_the_tflite(interpreter, strings):
    audio, digits = strings
    decoded = [ctc.greedy_decode(run_tflite(interpreter, x)).digits for x in audio]
    scores = digit_strings.score(digits, decoded)
    assert scores["exact"] >= MIN_EXACT_TFLITE, list(zip(digits, decoded))
    assert scores["digit_error_rate"] <= 0.02


def test_tflite_matches_keras_at_every_length(interpreter, strings, keras_logits):
    audio, _ = strings
    for x, expected in zip(audio[:10], keras_logits):  # 0.5-8 s: every shape is new
        got = run_tflite(interpreter, x)
        assert got.shape == expected.shape == ((1 + len(x) // 80) // 4, 11)  # 25 per second
        np.testing.assert_allclose(got, expected, atol=2e-3)


def test_numpy_greedy_decoder_equals_keras(keras_logits):
    import keras

    for logits in keras_logits:
        labels, _ = keras.ops.ctc_decode(ctc.softmax(logits)[None].astype(np.float32),
                                         [len(logits)], strategy="greedy", mask_index=0)
        expected = [int(v) for v in np.asarray(labels)[0, 0] if v >= 0]
        assert ctc.greedy_path(logits) == expected
        assert ctc.greedy_decode(logits).digits == "".join(str(v - 1) for v in expected)


def test_digit_times_and_confidences_follow_the_words(keras_logits, strings):
    audio, digits = strings
    confidences = []
    for x, logits, truth in zip(audio, keras_logits, digits):
        d = ctc.greedy_decode(logits)
        if d.digits != truth:
            continue
        first, last = (t / 8000 for t in find_utterance(x))  # the span of all the words
        starts = [a for a, _ in d.times]
        assert starts == sorted(starts) and all(a < b for a, b in d.times)
        assert first - 0.1 <= starts[0] and d.times[-1][1] <= last + 0.1, (d.times, first, last)
        assert all(1 / 11 < c <= 1.0 for c in d.confidences)
        assert d.confidence == min(d.confidences)
        confidences += d.confidences
    assert len(confidences) > STRINGS * 4 and np.median(confidences) > 0.9


def test_decoder_merges_repeats_and_keeps_doubled_digits():
    # frames: 4 4 _ 4 1 1 _ _ 8 -> "4418" (a blank between two 4s keeps both)
    path = [5, 5, 0, 5, 2, 2, 0, 0, 9]
    logits = np.full((len(path), 11), -5.0)
    logits[np.arange(len(path)), path] = 5.0
    logits[4, 2] = 1.0  # a less sure frame inside the run of "1": the run's max counts
    d = ctc.greedy_decode(logits, offset_seconds=1.0)
    assert d.digits == "4418"
    assert np.allclose(d.times, [(1.0, 1.08), (1.12, 1.16), (1.16, 1.24), (1.32, 1.36)])
    assert d.confidences[2] == pytest.approx(ctc.softmax(logits[5])[2])
    assert ctc.greedy_decode(np.tile(np.eye(11)[0], (5, 1))).digits == ""


def test_rescoring_combines_both_models_on_each_digits_stretch():
    # Two digits, peaks at frames 2 and 8: the judge hears samples 0-1600 and 1600-end
    # (the midpoint, frame 5, is 5 x 320 samples at 8 kHz).
    logits = np.full((12, 11), -5.0)
    logits[:, 0] = 5.0  # blank
    logits[2, 0], logits[2, 1 + 4], logits[2, 1 + 9] = 0.0, 5.0, 4.5  # "4", nearly "9"
    logits[8, 0], logits[8, 1 + 1] = 0.0, 8.0  # "1", sure
    x = np.zeros(12 * 320, np.float32)
    greedy = ctc.greedy_decode(logits, offset_seconds=1.0)
    assert greedy.digits == "41"
    heard = []
    says_nine = np.r_[np.full(10, 0.01), 0.0]
    says_nine[9] = 0.91

    def judge(stretch):
        heard.append(len(stretch))
        return says_nine if len(heard) == 1 else None  # then no opinion

    d = ctc.rescore(logits, x, judge, offset_seconds=1.0)
    assert heard == [1600, 12 * 320 - 1600]
    assert d.digits == "91"  # the unsure digit goes the judge's way; the sure one stays
    assert d.times == greedy.times
    string = ctc.softmax(logits[2])[1:]
    which = string * says_nine[:10] / (string * says_nine[:10]).sum()
    assert d.confidences[0] == pytest.approx(which[9])  # the judge is sure a digit is there
    assert d.confidences[1] == pytest.approx(greedy.confidences[1])
    # A judge hearing no digit at all has no opinion: the string model's reading stands.
    unmoved = ctc.rescore(logits, x, lambda stretch: np.r_[np.zeros(10), 1.0])
    assert unmoved.digits == "41"
    np.testing.assert_allclose(unmoved.confidences, greedy.confidences)
    assert ctc.rescore(np.tile(np.eye(11)[0], (5, 1)), x, judge).digits == ""


def test_two_runs_close_together_one_unsure_are_one_word():
    def logits(peaks):  # [(frame, class, logit)] over blanks
        z = np.full((20, 11), -5.0)
        z[:, 0] = 5.0
        for frame, label, logit in peaks:
            z[frame, 0], z[frame, label] = 0.0, logit
        return z

    x = np.zeros(20 * 320, np.float32)
    seven_one = logits([(4, 1 + 7, 8.0), (4 + ctc.MERGE_FRAMES, 1 + 1, 0.5)])  # 1 at p ~ 0.6
    assert ctc.greedy_decode(seven_one).digits == "71"
    assert ctc.words(seven_one) == 1
    heard = []
    merged = ctc.rescore(seven_one, x, lambda stretch: heard.append(len(stretch)))
    assert merged.digits == "7" and heard == [len(x)]  # judged on the whole input
    sure = logits([(4, 1 + 7, 8.0), (4 + ctc.MERGE_FRAMES, 1 + 1, 8.0)])
    assert ctc.words(sure) == 2 and ctc.rescore(sure, x, lambda s: None).digits == "71"
    apart = logits([(4, 1 + 7, 8.0), (5 + ctc.MERGE_FRAMES, 1 + 1, 0.5)])
    assert ctc.words(apart) == 2 and ctc.rescore(apart, x, lambda s: None).digits == "71"
    three = logits([(2, 1 + 4, 8.0), (9, 1 + 7, 8.0), (11, 1 + 1, 0.5)])
    assert ctc.words(three) == 2 and ctc.rescore(three, x, lambda s: None).digits == "47"


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="needs espeak-ng (apt)")
def test_lone_words_of_new_voices_are_heard_as_one(tmp_path, fsdd):
    """espeak-ng's lone words (6 voices x 2 rates x 10; never trained on): voices unlike
    FSDD's split "seven" or "zero" into two digits less often once close runs merge, and no
    FSDD test word splits."""
    from tinydigits.audio import read_wav, resample
    from tinydigits.runtime import Classifier, models_dir

    words = "zero one two three four five six seven eight nine".split()
    string_model = Classifier(models_dir() / "digit_strings.int8.tflite")
    greedy = merged = 0
    for voice in ("en-us", "en-us+f3", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029"):
        for rate in (140, 180):
            for word in words:
                wav = tmp_path / "w.wav"
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(wav), word],
                               check=True)
                logits = string_model.scores(digit_strings.set_level(resample(*read_wav(wav))))
                greedy += len(ctc.greedy_decode(logits).digits) >= 2
                merged += ctc.words(logits) >= 2
    assert merged < greedy and merged <= 5, (greedy, merged)  # measured: 6 -> 4 of 120
    _, test = fsdd.official_split()
    counts = [ctc.words(string_model.scores(digit_strings.set_level(fsdd.audio[i])))
              for i in test[::3]]
    assert max(counts) == 1, counts  # none split in two
    # 100 of 100 heard as one word until 2026-12-07; the model trained with festival's
    # voices hears one of nicolas's "two"s as blank (the isolated model answers it)
    assert counts.count(1) >= 0.98 * len(counts), counts


def test_rescored_fsdd_strings_still_decode_exactly(fsdd):
    """The device's path on the 300 strings the exporter verifies with (and the same words
    re-recorded): the shipped int8 string model, close runs of one word merged, each digit
    judged again by the shipped isolated-word model (int8) on its stretch."""
    from tinydigits.listen import isolated_judge
    from tinydigits.runtime import Classifier, model_path, models_dir

    string_model = Classifier(models_dir() / "digit_strings.int8.tflite")
    judge = isolated_judge(Classifier(model_path("audio")))
    _, test = fsdd.official_split()
    totals = np.zeros(2, int)  # strings read exactly: greedy, rescored
    for seed, rerecorded in ((0, False), (1, True)):
        audio, digits = digit_strings.evaluation_strings(fsdd, test, seed=seed,
                                                         rerecorded=rerecorded)
        greedy, rescored = [], []
        for x in audio:
            logits = string_model.scores(x)
            greedy.append(ctc.greedy_decode(logits).digits)
            rescored.append(ctc.rescore(logits, x, judge).digits)
        right = [sum(map(str.__eq__, digits, got)) for got in (greedy, rescored)]
        totals += right
        if not rerecorded:
            assert right[1] / len(digits) >= MIN_EXACT_TFLITE, list(zip(digits, rescored))
    assert totals[1] >= totals[0], totals


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="needs espeak-ng (apt)")
def test_rescoring_hears_new_voices_better(tmp_path):
    """36 four-digit strings said in one breath by espeak-ng (6 voices x 2 rates; never
    trained on): the isolated-word model's second opinion on each digit is worth having."""
    from tinydigits.audio import read_wav, resample
    from tinydigits.listen import isolated_judge
    from tinydigits.runtime import Classifier, model_path, models_dir

    words = "zero one two three four five six seven eight nine".split()
    string_model = Classifier(models_dir() / "digit_strings.int8.tflite")
    judge = isolated_judge(Classifier(model_path("audio")))
    rng = np.random.default_rng(5)
    digits, greedy, rescored = [], [], []
    for voice in ("en-us", "en-us+f3", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029"):
        for rate in (140, 180):
            for _ in range(3):
                said = "".join(str(v) for v in rng.integers(0, 10, 4))
                wav = tmp_path / "s.wav"
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(wav),
                                " ".join(words[int(c)] for c in said)], check=True)
                x = digit_strings.set_level(resample(*read_wav(wav)))
                logits = string_model.scores(x)
                digits.append(said)
                greedy.append(ctc.greedy_decode(logits).digits)
                rescored.append(ctc.rescore(logits, x, judge).digits)
    right = [1 - digit_strings.score(digits, got)["digit_error_rate"] for got in (greedy, rescored)]
    # Measured: 84.0% -> 86.8% (2026-12-06; with the isolated model trained on FSDD alone,
    # 88.2% here, but 2 points lower on the benchmark's 108 strings of these voices).
    assert right[1] >= 0.85 and right[1] >= right[0] + 0.02, right


def test_training_strings_use_only_their_own_recordings(fsdd):
    train, test = fsdd.official_split()
    builder = digit_strings.StringBuilder(fsdd, train)
    assert set(builder.words) == set(train.tolist())
    assert not set(fsdd.index[list(builder.words)]) & {0, 1, 2, 3, 4}
    rng = np.random.default_rng(0)
    for count in (1, 5, 10):
        x, digits = builder.build(rng, count=count)
        assert len(digits) == count and x.dtype == np.float32
        assert len(x) <= digit_strings.MAX_SECONDS * 8000 and np.abs(x).max() <= 1.0


def test_evaluation_strings_are_the_same_every_call(fsdd):
    _, test = fsdd.official_split()
    a, da = digit_strings.evaluation_strings(fsdd, test, n=5, seed=7)
    b, db = digit_strings.evaluation_strings(fsdd, test, n=5, seed=7)
    assert da == db and [len(s) for s in da] == [1, 2, 3, 4, 5]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_scores_count_edit_distance_per_reference_digit():
    assert digit_strings.edit_distance("4186", "4186") == 0
    assert digit_strings.edit_distance("4186", "486") == 1
    assert digit_strings.edit_distance("4186", "41866") == 1
    assert digit_strings.edit_distance("4186", "1486") == 2
    s = digit_strings.score(["4186", "12"], ["4186", "13"])
    assert s == {"strings": 2, "exact": 0.5, "digit_error_rate": 1 / 6}


def test_missed_digits_are_the_deletions_of_an_alignment():
    assert digit_strings.missed("4186", "4186") == ""
    assert digit_strings.missed("4186", "486") == "1"
    assert digit_strings.missed("4186", "") == "4186"
    assert digit_strings.missed("5595", "555") == "9"  # not a 5: the 9 has nothing to match
    assert digit_strings.missed("4186", "4786") == ""  # a substitution, not a miss
    assert digit_strings.missed("4186", "41886") == ""  # an insertion
    assert digit_strings.missed("491", "41") == "9"
    assert digit_strings.alignment("4186", "4786") == [
        ("correct", "4", "4"), ("substitution", "1", "7"), ("correct", "8", "8"),
        ("correct", "6", "6")]
    assert [e for e, _, _ in digit_strings.alignment("12", "132")] == [
        "correct", "insertion", "correct"]


def test_the_decoder_is_device_side():
    assert heavy_modules_after("import tinydigits.ctc") == []
