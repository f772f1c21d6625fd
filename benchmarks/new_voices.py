"""Voices the models never heard, end to end through the command line: espeak-ng's.

    apt install espeak-ng
    OPENBLAS_NUM_THREADS=1 python benchmarks/new_voices.py                 # ~30 s
    python benchmarks/new_voices.py --voices en-us-nyc en-gb+f4   # other voices: for choices

The three measures a user's number lives by, with espeak-ng's synthetic voices standing in
for people (never trained on: the string recipe's synthetic voices are flite's):

- paused streams in noise: per voice, 20 digits (each twice, shuffled), each said alone at
  its own rate and pitch, 0.4-2 s apart, in steady pink noise (20 and 10 dB below the
  words), one 16 kHz file: `tinydigits listen --input FILE --json`.
- fluent strings: per voice, 10 strings of 3-8 digits said in one breath, 1.5-2.5 s apart,
  pink noise 20 dB down: `listen --input`; and each string as its own file through
  `tinydigits classify`.
- single digits: each of the 10 words at 3 rates as its own file through `classify`.

Scores are digits right (1 - edit distance / digits said), with missed, wrong and inserted
digits, and whole strings exact. Each voice's words are set to one level with +-6 dB per
word, as people trail off. Prints Markdown tables.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from audio_fixtures import SPEECH_RMS, align, noise, to_file  # noqa: E402

from tinydigits.audio import find_utterance  # noqa: E402

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = ["en-us", "en-us+f3", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029"]
RATES = (130, 190)  # words per minute, drawn per word or string: espeak-ng's default is 175
PITCHES = (35, 65)  # espeak-ng's 0-99, drawn likewise
STREAM_RATE = 16000  # a common microphone rate; listen resamples to 8 kHz
PAUSED_DIGITS = 20
PAUSED_GAPS = (0.4, 2.0)  # s between words
STRINGS = 10
STRING_LENGTHS = (3, 8)
STRING_GAPS = (1.5, 2.5)  # s between strings
WORD_LEVEL_DB = 6.0
SINGLE_RATES = (140, 175, 210)

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--voices", nargs="+", default=VOICES, help="espeak-ng voices")
parser.add_argument("--snr", nargs="+", type=float, default=[20.0, 10.0],
                    help="paused streams: noise this many dB below the words")
parser.add_argument("--seed", type=int, default=0, help="digits, rates, gaps and noise")
parser.add_argument("--keep", type=Path, help="write the WAV files made here, to listen to")
parser.add_argument("--listen-args", nargs=argparse.REMAINDER, default=[],
                    help="passed on to `tinydigits listen` (last on the line), "
                         "e.g. --threshold 0.5")
args = parser.parse_args()
if not shutil.which("espeak-ng"):
    sys.exit("benchmarks/new_voices.py: needs espeak-ng (apt install espeak-ng)")
TINYDIGITS = [sys.executable, "-m", "tinydigits.cli"]


def say(text, voice, rate, pitch, tmp) -> np.ndarray:
    """espeak-ng's rendering of `text`, mono float32 at STREAM_RATE, trimmed to its speech
    with 50 ms margins."""
    wav = Path(tmp) / "say.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(wav),
                    text], check=True, capture_output=True)
    x, sr = sf.read(str(wav), dtype="float32")
    x = soxr.resample(x, sr, STREAM_RATE).astype(np.float32)
    span = find_utterance(soxr.resample(x, STREAM_RATE, 8000))
    if span is not None:
        x = x[span[0] * 2:span[1] * 2]
    return x


def levelled(x, rng):
    return x * SPEECH_RMS * 10 ** (rng.uniform(-1, 1) * WORD_LEVEL_DB / 20) / (
        np.sqrt(np.mean(x**2)) + 1e-9)


def stream(pieces, gaps, rng, snr_db, path):
    """`pieces` with `gaps` seconds before each and 1 s after the last, in pink noise."""
    out, spans, t = [], [], 0
    for x, gap in zip(pieces, gaps):
        out += [np.zeros(int(gap * STREAM_RATE), np.float32), x]
        t += int(gap * STREAM_RATE)
        spans.append((t / STREAM_RATE, (t + len(x)) / STREAM_RATE))
        t += len(x)
    out.append(np.zeros(STREAM_RATE, np.float32))
    x = np.concatenate(out)
    x = x + noise(len(x), rng, 1.0, SPEECH_RMS / 10 ** (snr_db / 20))
    to_file(path, x, STREAM_RATE, channels=1)
    return spans


def listen(path):
    """The lines `tinydigits listen --input path --json` prints, as dicts."""
    run = subprocess.run([*TINYDIGITS, "listen", "--input", str(path), "--json",
                          *args.listen_args], capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"listen failed on {path}: {run.stderr.strip()}")
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


def classify(paths):
    """{path: digits ("" when refused)} from one `tinydigits classify --json` run."""
    run = subprocess.run([*TINYDIGITS, "classify", "--json", *map(str, paths)],
                         capture_output=True, text=True)
    found = {}
    for line in run.stdout.splitlines():
        answer = json.loads(line)
        found[answer["file"]] = answer.get("digits", "")
    return [found.get(str(p), "") for p in paths]


def counts(truth, said):
    c = align(list(truth), list(said))
    return np.array([c["correct"], c["deletions"], c["substitutions"], c["insertions"],
                     len(truth)])


def row(name, c, exact=None):
    right = 1 - (c[1] + c[2] + c[3]) / c[4]
    cells = [name, f"{c[4]}", f"{right:.1%}", f"{c[1]}", f"{c[2]}", f"{c[3]}",
             "-" if exact is None else f"{exact[0]}/{exact[1]}"]
    return "| " + " | ".join(cells) + " |"


rng = np.random.default_rng(args.seed)
tables = {name: {} for name in ["paused", "listen strings", "classify strings", "single"]}
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        tmp = args.keep
    for v, voice in enumerate(args.voices):
        print(f"{voice} ({v + 1}/{len(args.voices)})", file=sys.stderr, flush=True)

        def draw():
            return int(rng.integers(*RATES)), int(rng.integers(*PITCHES))

        # Paused digits in noise.
        digits = rng.permutation(np.resize(np.arange(10), PAUSED_DIGITS))
        words = [levelled(say(WORDS[d], voice, *draw(), tmp), rng) for d in digits]
        gaps = [1.0] + list(rng.uniform(*PAUSED_GAPS, len(words) - 1))
        truth = "".join(map(str, digits))
        for snr in args.snr:
            path = tmp / f"paused_{v}_{snr:g}.wav"
            stream(words, gaps, rng, snr, path)
            said = "".join(line["digits"] for line in listen(path))
            tables["paused"].setdefault(f"{snr:g} dB", {})[voice] = (counts(truth, said), None)

        # Strings in one breath.
        strings = ["".join(map(str, rng.integers(0, 10, rng.integers(STRING_LENGTHS[0],
                                                                      STRING_LENGTHS[1] + 1))))
                   for _ in range(STRINGS)]
        said = [levelled(say(" ".join(WORDS[int(d)] for d in s), voice, *draw(), tmp), rng)
                for s in strings]
        path = tmp / f"strings_{v}.wav"
        spans = stream(said, [1.0] + list(rng.uniform(*STRING_GAPS, STRINGS - 1)), rng, 20.0,
                       path)
        heard = [""] * STRINGS
        for line in listen(path):  # each line to the string it overlaps
            middle = (line["start"] + line["end"]) / 2
            k = int(np.argmin([0 if a <= middle <= b else min(abs(middle - a), abs(middle - b))
                               for a, b in spans]))
            heard[k] += line["digits"]
        c = sum(counts(s, h) for s, h in zip(strings, heard))
        tables["listen strings"].setdefault("20 dB", {})[voice] = (
            c, (sum(s == h for s, h in zip(strings, heard)), STRINGS))
        files = []
        for k, x in enumerate(said):
            files.append(tmp / f"string_{v}_{k}.wav")
            to_file(files[-1], x + noise(len(x), rng, 1.0, SPEECH_RMS / 10), STREAM_RATE, 1)
        answers = classify(files)
        c = sum(counts(s, a) for s, a in zip(strings, answers))
        tables["classify strings"].setdefault("20 dB", {})[voice] = (
            c, (sum(s == a for s, a in zip(strings, answers)), STRINGS))

        # Single digits, each its own file.
        files, truth = [], []
        for rate in SINGLE_RATES:
            for d, word in enumerate(WORDS):
                files.append(tmp / f"single_{v}_{rate}_{d}.wav")
                to_file(files[-1], say(word, voice, rate, 50, tmp), STREAM_RATE, 1)
                truth.append(str(d))
        answers = classify(files)
        tables["single"].setdefault("quiet", {})[voice] = (
            sum(counts(t, a) for t, a in zip(truth, answers)),
            (sum(t == a for t, a in zip(truth, answers)), len(truth)))

titles = {
    "paused": f"Paused digits in pink noise, `listen --input` ({PAUSED_DIGITS} a voice)",
    "listen strings": f"Strings in one breath, `listen --input` ({STRINGS} a voice, 3-8 digits)",
    "classify strings": "The same strings, each a file, `classify`",
    "single": f"Single digits, each a file, `classify` ({len(SINGLE_RATES) * 10} a voice)",
}
print(f"voices: {' '.join(args.voices)}; listen {' '.join(args.listen_args) or '(defaults)'}\n")
for name, by_condition in tables.items():
    print(f"{titles[name]}\n")
    print("| voice | digits | right | missed | wrong | inserted | exact |")
    print("|---|---|---|---|---|---|---|")
    for condition, by_voice in by_condition.items():
        for voice, (c, exact) in by_voice.items():
            print(row(f"{voice}, {condition}", c, exact))
        total = sum(c for c, _ in by_voice.values())
        exacts = [e for _, e in by_voice.values() if e is not None]
        exact = (sum(e[0] for e in exacts), sum(e[1] for e in exacts)) if exacts else None
        print(row(f"**all, {condition}**", total, exact))
    print()
