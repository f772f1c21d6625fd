"""Digit strings by ear: a fully convolutional network (a Conv2D stem, Conv1D blocks), CTC.

PINs and phone numbers said in one breath or with pauses: the model hears raw 8 kHz audio
of any length (the time axis is `None`, so its `.tflite` takes any length through
`resize_tensor_input`) and scores every 40 ms frame over the CTC blank and the 10 digits.
Training strings are made every epoch from FSDD's training words (tinydigits/digit_strings.py:
1-10 words, each at its own speed and level, overlapping to 600 ms apart, non-digit sounds
in some gaps, the whole string re-recorded), and a quarter of them are strings said in one
breath by a synthesiser: flite's four English voices (tinydigits/flite_strings.py) or
festival's ten, most with an accent (tinydigits/festival_strings.py), each rendered once
into the dataset cache (`apt install flite festival` and festival's voices: README); test
strings from FSDD's test words.

    python recipes/digit_strings.py              # 19-32 min of training on 2 cores
    python recipes/digit_strings.py --epochs 1   # a smoke run
    python recipes/digit_strings.py --split loso # leave-one-speaker-out: 6 trainings
    python recipes/digit_strings.py --split loso --speakers george nicolas  # some of them
    python recipes/digit_strings.py --split loso --speakers nicolas --keep-models  # to benchmark

The shipped model (97.3% exact test strings) trained in 18.6 min alone on the 2-core VM of
2026-12-07; the recipe before festival's voices (the same network and steps) took 21.1 min
there the same day, 31.8 min a fold on 2026-12-06's and 67.4 min on a slower VM.

Writes tinydigits/models/digit_strings.keras, its metrics JSON and PNG plots (training
curves; test strings' spectrograms with the frame-wise scores and the decoded string).
Results: the metrics JSON and the README.
"""

import tinydigits.quiet  # noqa: F401  (first: loads TensorFlow without its start-up log lines)

import argparse
import sys
import time
from pathlib import Path

import keras
import numpy as np
from keras import layers

from tinydigits import ctc, digit_strings, reports
from tinydigits.blocks import (
    LogMelFrames,
    conv_bn_relu,
    ctc_logits,
    ctc_loss,
    max_pool,
    residual_block,
)
from tinydigits.datasets import load_fsdd
from tinydigits.errors import DatasetError
from tinydigits.features import AUDIO
from tinydigits.festival_strings import FestivalStrings
from tinydigits.files import save_keras
from tinydigits.flite_strings import FliteStrings
from tinydigits.malloc import keep_freed_memory

# ----------------------------------------------------------------------------- Setup
keep_freed_memory()  # glibc keeps what each step frees: fewer page faults, same weights
EPOCHS = 80  # every epoch hears freshly made strings
CURRICULUM = 2  # longest string in epoch e (from 0): 2 + e digits, up to 10; short strings
# get CTC past its all-blank plateau sooner
STRINGS_PER_EPOCH = 1500
BATCH_SIZE = 32
LEARNING_RATE = 2e-3  # peak; cosine decay to 0
SYNTHETIC_PROBABILITY = 0.25  # strings said in one breath by a synthesiser: flite or festival
BUCKET_SECONDS = 2.0  # a batch is padded to a multiple of this: 5 shapes, 5 traces
CLASSES = 11  # CTC blank (0) and digits 0-9 (1-10)
FRAME_STEP = 4  # two poolings by 2: one output frame per 4 log-mel frames (40 ms)

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--split", choices=["official", "loso"], default="official",
                    help="official: recordings 0-4 are test; loso: leave each speaker out once")
parser.add_argument("--speakers", nargs="+",
                    help="with --split loso: leave out only these speakers (default: each)")
parser.add_argument("--keep-models", action="store_true",
                    help="with --split loso: save each fold's model as OUT_DIR/loso-SPEAKER/"
                         "NAME.keras (to export and benchmark it)")
parser.add_argument("--epochs", type=int, default=EPOCHS, help="training epochs")
parser.add_argument("--strings", type=int, default=STRINGS_PER_EPOCH,
                    help="training strings made per epoch")
parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="strings per step")
parser.add_argument("--lr", type=float, default=LEARNING_RATE, help="peak learning rate")
parser.add_argument("--data-dir", help="dataset cache (default: $TINYDIGITS_DATA or data/)")
parser.add_argument("--out-dir", default="tinydigits/models",
                    help="where the model, metrics and plots go")
parser.add_argument("--seed", type=int, default=1, help="random seed")
args = parser.parse_args()
name = "digit_strings"
out = Path(args.out_dir)
frame_seconds = FRAME_STEP * AUDIO.frame_step / AUDIO.sample_rate  # 0.04 s
assert frame_seconds == ctc.FRAME_SECONDS

# ------------------------------------------------------------------------------ Data
try:
    fsdd = load_fsdd(args.data_dir)
    unknown = set(args.speakers or []) - set(fsdd.speaker)
    if unknown:  # before the synthetic strings are rendered
        sys.exit(f"error: no FSDD speaker named {', '.join(sorted(unknown))}")
    synthetic = [FliteStrings.load(args.data_dir),  # rendered on the first run (~9 min)
                 FestivalStrings.load(args.data_dir)]  # likewise (4 min)
except DatasetError as e:  # a corrupt cache, no network, no synthesiser: what to fix
    sys.exit(f"error: {e}")


def test_strings(test_idx):
    """FSDD test words as 30 strings of each length 1-10, the same every run, padded."""
    audio, digits = digit_strings.evaluation_strings(fsdd, test_idx)
    samples = int(digit_strings.MAX_SECONDS * AUDIO.sample_rate)
    return audio, digit_strings.pad(audio, samples), digits


class Strings(keras.utils.PyDataset):
    """Batches of fresh training strings of the words `train_idx`, padded with silence to a
    multiple of 2 s."""

    def __init__(self, train_idx):
        super().__init__(workers=2)  # threads: soxr and the FFTs release the GIL
        self.epoch = 0
        self.builder = digit_strings.StringBuilder(
            fsdd, train_idx, mixed_speakers=digit_strings.MIXED_SPEAKERS_PROBABILITY)
        self.clean_builder = digit_strings.StringBuilder(fsdd, train_idx, rerecorded=False)

    def __len__(self):
        return args.strings // args.batch_size

    def __getitem__(self, i):
        rng = np.random.default_rng([args.seed, self.epoch, i])  # thread-safe, reproducible
        most = min(digit_strings.MAX_DIGITS, CURRICULUM + self.epoch)
        longest = int(rng.integers(1, most + 1))  # strings of similar lengths in a batch
        audio, digits = [], []
        for _ in range(args.batch_size):
            count = int(rng.integers(max(1, longest - 2), longest + 1))
            clean = rng.random() < digit_strings.CLEAN_PROBABILITY
            if rng.random() < SYNTHETIC_PROBABILITY:  # flite or festival, half each
                x, d = synthetic[rng.integers(len(synthetic))].build(rng, count)
            else:
                x, d = (self.clean_builder if clean else self.builder).build(rng, count=count)
            audio.append(x)
            digits.append(d)
        bucket = int(BUCKET_SECONDS * AUDIO.sample_rate)
        samples = bucket * int(np.ceil(max(map(len, audio)) / bucket))
        if i == 0:  # Keras reads the input spec off the first batches: let it see two lengths
            samples = int(digit_strings.MAX_SECONDS * AUDIO.sample_rate)
        return digit_strings.pad(audio, samples), digit_strings.labels_of(digits)

    def on_epoch_end(self):
        self.epoch += 1


# ----------------------------------------------------------------------------- Model
def conv_ctc():
    audio = keras.Input((None,), name="audio")  # raw 8 kHz audio, any length
    x = LogMelFrames(name="frontend")(audio)  # (frames = 1 + samples / 80, 40 mel bins)
    # A Conv2D stem over (time, mel) embeds each frame: a new voice's formants a few bins
    # higher are the same pattern moved, not other channels (leave-one-speaker-out: README).
    x = layers.Reshape((-1, AUDIO.mel_bins, 1), name="mel_image")(x)
    x = conv_bn_relu(x, 16, 3, name="stem1")
    x = max_pool(x, (1, 2))  # the mel axis only: time keeps its 10 ms frames
    x = conv_bn_relu(x, 16, 3, name="stem2")
    x = max_pool(x, (1, 2))  # (frames, 10 mel bands, 16)
    x = layers.Reshape((-1, AUDIO.mel_bins // 4 * 16), name="mel_bands")(x)
    x = conv_bn_relu(x, 64, 1, name="embed")  # each frame's 10 bands x 16 -> 64
    x = max_pool(x)  # 50 frames/s
    x = residual_block(x, 64, 5, name="block1")
    x = max_pool(x)  # 25 frames/s: 40 ms per output frame
    x = residual_block(x, 96, 5, name="block2")  # receptive field ~0.5 s: a whole word
    logits = ctc_logits(x, CLASSES, dropout=0.2)  # (frames / 4, 11)
    return keras.Model(audio, logits, name=name)


def decode(model, x):
    logits = model.predict(x, batch_size=16, verbose=0)
    return [ctc.greedy_decode(z).digits for z in logits], logits


class StringAccuracy(keras.callbacks.Callback):
    """Exact-string accuracy on every third test string after every fourth epoch and the last
    (NaN between: a look decodes 100 strings of 10 s; the curve is for looking at, not for
    choices)."""

    EVERY = 4

    def __init__(self, x, digits):
        super().__init__()
        self.x, self.digits = x[::3], digits[::3]

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.EVERY and epoch + 1 < self.params["epochs"]:
            logs["val_accuracy"] = float("nan")
            return
        predicted = decode(self.model, self.x)[0]
        logs["val_accuracy"] = digit_strings.score(self.digits, predicted)["exact"]


# ----------------------------------------------------------------------------- Train
def train(train_idx, test_x, test_digits, verbose=2):
    keras.backend.clear_session()  # each leave-one-speaker-out fold starts afresh
    keras.utils.set_random_seed(args.seed)
    model = conv_ctc()
    batches = Strings(train_idx)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
        args.lr, args.epochs * len(batches))), loss=ctc_loss)
    history = model.fit(batches, epochs=args.epochs, verbose=verbose,
                        callbacks=[StringAccuracy(test_x, test_digits)])
    return model, history.history


start = time.time()
if args.split == "loso":
    # ------------------------------------------------ Evaluate: one new voice at a time
    per_speaker = {}
    for speaker, train_idx, test_idx in fsdd.loso_folds():
        if args.speakers and speaker not in args.speakers:
            continue
        _, test_x, test_digits = test_strings(test_idx)  # 300 strings of their 500 words
        model, _ = train(train_idx, test_x, test_digits, verbose=0)
        if args.keep_models:
            save_keras(model, out / f"loso-{speaker}" / f"{name}.keras")
        scores = per_speaker[speaker] = digit_strings.score(test_digits, decode(model, test_x)[0])
        print(f"{speaker:>10}: exact {scores['exact']:.2%}, digit error rate "
              f"{scores['digit_error_rate']:.2%} ({(time.time() - start) / 60:.1f} min)")
    right = np.array([max(0.0, 1 - s["digit_error_rate"]) for s in per_speaker.values()])
    reports.save_metrics({
        "model": name, "dataset": "fsdd strings", "split": "leave-one-speaker-out",
        "epochs": args.epochs, "strings_per_epoch": args.strings, "per_speaker": per_speaker,
        "mean_digits_right": float(right.mean()), "worst_digits_right": float(right.min()),
        "train_seconds": round(time.time() - start, 1),
    }, out / f"{name}.loso.json")
    print(f"leave-one-speaker-out digits right: mean {right.mean():.4f}, worst {right.min():.4f}")
    raise SystemExit(0)

train_idx, test_idx = fsdd.official_split()
test_audio, test_x, test_digits = test_strings(test_idx)
model, history = train(train_idx, test_x, test_digits)
train_seconds = time.time() - start
model.summary()

# -------------------------------------------------------------------------- Evaluate
predicted, logits = decode(model, test_x)
clean_scores = digit_strings.score(test_digits, predicted)
# The same kind of strings re-recorded (room, microphone, noise, non-digit sounds in gaps).
noisy_audio, noisy_digits = digit_strings.evaluation_strings(fsdd, test_idx, seed=1,
                                                             rerecorded=True)
noisy_x = digit_strings.pad(noisy_audio, test_x.shape[1])
noisy_scores = digit_strings.score(noisy_digits, decode(model, noisy_x)[0])
errors = [(t, p) for t, p in zip(test_digits, predicted) if t != p]

# ------------------------------------------------------------------------------ Save
save_keras(model, out / f"{name}.keras")
reports.plot_history(history, out / f"{name}.history.png",
                     title=f"{name}: CTC loss, exact strings (100 test strings, not for choices)")
frontend = keras.Model(model.input, model.get_layer("frontend").output)
shown = [3, 6, 9, 17, 28, 39]  # strings of 4, 7, 10, 8, 9, 10 digits
digit_strings.plot_strings(
    frontend.predict(test_x[shown], verbose=0), ctc.softmax(logits[shown]),
    [test_digits[i] for i in shown], [predicted[i] for i in shown],
    [len(test_audio[i]) / AUDIO.sample_rate for i in shown], out / f"{name}.strings.png")
reports.save_metrics({
    "model": name, "dataset": "fsdd strings", "split": "official (recordings 0-4 test)",
    "parameters": model.count_params(), "epochs": args.epochs, "batch_size": args.batch_size,
    "strings_per_epoch": args.strings, "learning_rate": args.lr,
    "frame_seconds": frame_seconds, "train_seconds": round(train_seconds, 1),
    "test_strings": clean_scores, "test_strings_rerecorded": noisy_scores,
    "test_errors": errors[:30],
}, out / f"{name}.metrics.json")
print(f"wrote {out / name}.keras; trained in {train_seconds / 60:.1f} min")
print(f"test strings re-recorded: exact {noisy_scores['exact']:.4f}, "
      f"digit error rate {noisy_scores['digit_error_rate']:.4f}")
print(f"test strings: exact {clean_scores['exact']:.4f}, "
      f"digit error rate {clean_scores['digit_error_rate']:.4f}")
