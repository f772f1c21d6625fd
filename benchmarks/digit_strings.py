"""Print the digit-string model's results: FSDD test strings, lone digits, espeak-ng strings.

    OPENBLAS_NUM_THREADS=1 python benchmarks/digit_strings.py          # ~5 min on 2 cores
    python benchmarks/digit_strings.py --variants float32               # Keras and float32 only
    python benchmarks/digit_strings.py --voices en-us-nyc en-gb+f4      # other voices: for choices
    python benchmarks/digit_strings.py --speaker nicolas \
        --model runs/loso-nicolas/digit_strings.keras \
        --isolated runs/loso-nicolas/spoken_digits.keras \
        --judge runs/loso-nicolas/spoken_digits.int8.tflite  # a leave-one-speaker-out fold

Converts tinydigits/models/digit_strings.keras to float32 and int8 `.tflite` (into a
temporary directory: the exporter writes the shipped files) and runs every input at its own
length through the LiteRT interpreter (`resize_tensor_input`, one thread), decoded by the
device's `tinydigits.ctc.greedy_decode`. Measures:

- FSDD test strings (official split, 300 strings of 1-10 test words, clean and re-recorded):
  exact-string accuracy and digit error rate (edit distance / reference digits).
  With `--speaker`, strings of that speaker's 500 recordings instead, for models trained
  without them (`--split loso --keep-models` in both recipes, then `export/tflite.py`):
  what the device makes of a real voice it never heard.
- Lone digits: the 300 FSDD test recordings (or the speaker's 500) as strings of length 1,
  in quiet and with noise (white/pink/brown at 10 dB SNR), against the isolated model
  (spoken_digits.keras).
- espeak-ng one-breath strings (6 voices x 3 rates x 6 strings of 3-8 digits, resampled to
  8 kHz): digits right (1 - digit error rate) and exact strings, by voice. Never trained on.
- Words left out, by digit, for every set of strings: the errors no second opinion mends.
- The device's answer ("device" column, with int8): the isolated-word model (`--judge`) for
  under two digits heard, else each digit judged again by it on its stretch (`ctc.rescore`).
- Size, and compute per second of audio (10 s inputs, median of 20 runs).
Prints Markdown tables.
"""

import tinydigits.quiet  # noqa: F401  (first: loads TensorFlow without its start-up log lines)

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from tinydigits import augment, ctc, digit_strings
from tinydigits.audio import prepare_clip, read_wav, resample
from tinydigits.cli import MIN_STRING_DIGITS
from tinydigits.convert import convert, float_layers
from tinydigits.datasets import load_fsdd
from tinydigits.errors import InputError
from tinydigits.listen import isolated_judge
from tinydigits.runtime import NOT_A_DIGIT, Classifier, model_path

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = ["en-us", "en-us+f3", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029"]
RATES = [130, 160, 190]  # words per minute: espeak-ng's default is 175
PER_VOICE_RATE = 6  # strings of 3-8 digits each
NOISE_SNR_DB = 10.0  # lone digits in noise

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--model", type=Path, default=Path("tinydigits/models/digit_strings.keras"),
                    help="the Keras string model")
parser.add_argument("--isolated", type=Path, default=Path("tinydigits/models/spoken_digits.keras"),
                    help="the isolated-digit model to compare lone digits with")
parser.add_argument("--judge", type=Path, default=model_path("audio"),
                    help="the isolated-digit .tflite the device column answers with "
                         "(default: the shipped int8)")
parser.add_argument("--speaker",
                    help="strings of this FSDD speaker's recordings, not the official test split "
                         "(for models trained without them)")
parser.add_argument("--variants", nargs="+", default=["float32", "int8"],
                    help=".tflite variants to convert and run (float32, int8, ...)")
parser.add_argument("--voices", nargs="+", default=VOICES,
                    help="espeak-ng voices (make choices on others than the defaults)")
parser.add_argument("--rates", nargs="+", type=int, default=RATES,
                    help="espeak-ng rates, words per minute")
parser.add_argument("--data-dir", help="dataset cache (default: $TINYDIGITS_DATA or data/)")
args = parser.parse_args()
start = time.time()
model = keras.saving.load_model(args.model, safe_mode=True)
fsdd = load_fsdd(args.data_dir)
test_idx = fsdd.official_split()[1]
fsdd_set = "FSDD test"
if args.speaker:
    if args.speaker not in set(fsdd.speaker):
        raise SystemExit(f"error: no FSDD speaker named {args.speaker}")
    test_idx = np.flatnonzero(fsdd.speaker == args.speaker)
    fsdd_set = f"FSDD {args.speaker} (left out)"


class TFLite:
    """One .tflite variant run at each input's own length."""

    def __init__(self, content):
        from ai_edge_litert.interpreter import Interpreter

        self.size = len(content)
        self.interpreter = Interpreter(model_content=content, num_threads=1)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.length = None

    def __call__(self, x):
        if len(x) != self.length:
            self.interpreter.resize_tensor_input(self.input, [1, len(x)])
            self.interpreter.allocate_tensors()
            self.length = len(x)
        self.interpreter.set_tensor(self.input, x[None].astype(np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output)[0]


def keras_runner(x):
    bucket = 16000  # 2 s: few shapes, few traces; trailing silence decodes to blanks
    padded = np.zeros(bucket * int(np.ceil(len(x) / bucket)), np.float32)
    padded[:len(x)] = x
    return model.predict(padded[None], verbose=0)[0][:(1 + len(x) // 80) // 4]


calibration = digit_strings.verification_strings(args.data_dir)[0]
runners = {"keras": keras_runner}
for variant in args.variants:
    runners[variant] = TFLite(convert(model, variant, calibration, keep_float=float_layers(model)))
readers = {r: (lambda x, run=run: ctc.greedy_decode(run(x)).digits) for r, run in runners.items()}
judge_model = Classifier(args.judge)  # the device's isolated-word model (int8)
judge = isolated_judge(judge_model)


def device(x, run):
    """What `classify` answers with this string model beside the shipped isolated one: the
    isolated model for under two digits, else each digit judged again (ctc.rescore)."""
    logits = run(x)
    if ctc.words(logits) < MIN_STRING_DIGITS:
        try:
            label = judge_model.predict(prepare_clip(x, 8000))[0]
        except InputError:
            return ""
        return "" if label == NOT_A_DIGIT else label
    return ctc.rescore(logits, x, judge).digits


if "int8" in runners:
    readers["device"] = lambda x: device(x, runners["int8"])

# ------------------------------------------------------------------------ inputs
sets = {}
sets[f"{fsdd_set} strings, clean"] = digit_strings.evaluation_strings(fsdd, test_idx)
sets[f"{fsdd_set} strings, re-recorded"] = digit_strings.evaluation_strings(
    fsdd, test_idx, seed=1, rerecorded=True)
rng = np.random.default_rng(0)
lone = [digit_strings.set_level(np.r_[np.zeros(2000), fsdd.audio[i], np.zeros(2000)]
                                .astype(np.float32)) for i in test_idx]
noisy = []
for i in test_idx:
    x = fsdd.audio[i]
    noise = augment.coloured_noise(len(x) + 4000, rng, rng.choice(augment.NOISE_COLOURS))
    speech_rms = np.sqrt(np.mean(x**2))
    y = np.r_[np.zeros(2000), x, np.zeros(2000)] + noise * speech_rms / 10 ** (NOISE_SNR_DB / 20)
    noisy.append(y.astype(np.float32))
lone_digits = [str(d) for d in fsdd.digit[test_idx]]
sets[f"{fsdd_set} lone digits, quiet"] = (lone, lone_digits)
sets[f"{fsdd_set} lone digits, 10 dB SNR"] = ([digit_strings.set_level(x) for x in noisy],
                                            lone_digits)

espeak, espeak_digits, espeak_voice = [], [], []
if shutil.which("espeak-ng"):
    with tempfile.TemporaryDirectory() as tmp:
        for voice in args.voices:
            for rate in args.rates:
                for _ in range(PER_VOICE_RATE):
                    digits = "".join(str(d) for d in rng.integers(0, 10, rng.integers(3, 9)))
                    wav = Path(tmp) / "s.wav"
                    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(wav),
                                    " ".join(WORDS[int(d)] for d in digits)], check=True)
                    x, sr = read_wav(wav)
                    espeak.append(digit_strings.set_level(resample(x, sr)))
                    espeak_digits.append(digits)
                    espeak_voice.append(voice)
    sets["espeak-ng one-breath strings"] = (espeak, espeak_digits)
else:
    print("espeak-ng not found: skipping the synthetic voices (apt install espeak-ng)")

# ----------------------------------------------------------------------- measure
print(f"\n{args.model} ({model.count_params():,} parameters)\n")
print("| set | inputs | " + " | ".join(f"{r} exact | {r} digits right" for r in readers) + " |")
print("|---|---|" + "---|---|" * len(readers))
results, decoded = {}, {}
for name, (audio, digits) in sets.items():
    row = []
    for r, read in readers.items():
        decoded[(name, r)] = [read(x) for x in audio]
        s = digit_strings.score(digits, decoded[(name, r)])
        results[(name, r)] = s
        row.append(f"{s['exact']:.2%} | {1 - s['digit_error_rate']:.2%}")
    print(f"| {name} | {len(audio)} | " + " | ".join(row) + " |")

if espeak:
    print(f"\nespeak-ng one-breath strings, digits right by voice ({len(args.rates)} rates x "
          f"{PER_VOICE_RATE} strings each):\n")
    print("| runner | " + " | ".join(args.voices) + " |")
    print("|---|" + "---|" * len(args.voices))
    for r in readers:
        got = decoded[("espeak-ng one-breath strings", r)]
        row = []
        for voice in args.voices:
            mine = [i for i, v in enumerate(espeak_voice) if v == voice]
            s = digit_strings.score([espeak_digits[i] for i in mine], [got[i] for i in mine])
            row.append(f"{1 - s['digit_error_rate']:.1%}")
        print(f"| {r} | " + " | ".join(row) + " |")

print("\nwords left out, by digit (missed / said): a word the string model hears as blank no "
      "second opinion can restore\n")
print("| set | runner | " + " | ".join(WORDS) + " |")
print("|---|---|" + "---|" * len(WORDS))
for name in (f"{fsdd_set} strings, clean", f"{fsdd_set} strings, re-recorded",
             "espeak-ng one-breath strings"):
    if name not in sets:
        continue
    said = "".join(sets[name][1])
    for r in readers:
        left_out = "".join(digit_strings.missed(d, g)
                           for d, g in zip(sets[name][1], decoded[(name, r)]))
        print(f"| {name} | {r} | " + " | ".join(
            f"{left_out.count(str(d))}/{said.count(str(d))}" for d in range(10)) + " |")

isolated = keras.saving.load_model(args.isolated, safe_mode=True)
print(f"\nlone digits against the isolated model ({args.isolated.name}, device preparation):\n")
print("| set | isolated model | string model (keras) |")
print("|---|---|---|")
for name, audio in (("quiet", lone), ("10 dB SNR", noisy)):
    clips, found = [], []
    for x in audio:
        try:
            clips.append(prepare_clip(x, 8000))
            found.append(True)
        except InputError:  # "no speech found": the isolated model never hears it, a miss
            clips.append(np.zeros(8000, np.float32))
            found.append(False)
    predicted = isolated.predict(np.stack(clips), verbose=0).argmax(1)
    accuracy = float(((predicted == fsdd.digit[test_idx]) & found).mean())
    strings = results[(f"{fsdd_set} lone digits, {name}", "keras")]
    print(f"| {fsdd_set} lone digits, {name} | {accuracy:.2%} | {strings['exact']:.2%} |")

print("\n| variant | size KB | ms per second of audio (10 s input, median) |")
print("|---|---|---|")
x = digit_strings.verification_strings(args.data_dir)[1][-1]  # 10 s, a 10-digit string
for r, run in runners.items():
    if r == "keras":
        continue
    run(x)
    times = []
    for _ in range(20):
        t = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t)
    print(f"| {r} | {run.size / 1024:.1f} | {np.median(times) * 1000 / 10:.3f} |")
print(f"\n(benchmark ran in {(time.time() - start) / 60:.1f} min)")
