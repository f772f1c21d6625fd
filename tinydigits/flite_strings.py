"""Digit strings said in one breath by flite's voices: the fluent speech FSDD lacks.

Training side. FSDD's words were each said alone; a PIN said in one breath runs its words
together, and joining FSDD words cannot make that. flite (CMU's small synthesiser,
Debian's `flite`) says whole strings: four voices (kal16, awb, rms, slt: US and Scottish,
three men and a woman) at several speeds, sometimes with a comma's pause. They are
rendered once into the dataset cache (`flite-strings-v1.npz`, int16 at 8 kHz, written
atomically, read without pickle), then varied and re-recorded every epoch like FSDD's.

    bank = FliteStrings.load()                  # renders on first use: ~9 min
    audio, digits = bank.build(rng, count=4)    # float32 (samples,), "4186"

The benchmarks' synthetic voices are another synthesiser's and never enter training.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tinydigits import digit_strings
from tinydigits.audio import resample
from tinydigits.datasets import data_dir
from tinydigits.errors import DatasetError
from tinydigits.files import atomic_path

RATE = digit_strings.RATE
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = ("kal16", "awb", "rms", "slt")
PER_VOICE = 400  # strings per voice: 40 of each length 1-10
STRETCH = (0.75, 1.3)  # flite's duration_stretch: fast to slow talkers
PAUSE_PROBABILITY = 0.3  # a string grouped by commas ("four one eight, six")
SPEED = (0.9, 1.12)  # each epoch: tempo and pitch together, as FSDD words vary
FILE = "flite-strings-v1.npz"


def flite():
    path = shutil.which("flite")
    if path is None:
        raise DatasetError("flite is not installed (Debian: apt install flite); the string "
                           "recipe renders its training strings with it once")
    return path


def text_of(digits, rng, words=WORDS) -> str:
    """The words of `digits`, sometimes grouped by commas: "four one eight, six"."""
    said = [words[int(d)] for d in digits]
    if len(said) > 2 and rng.random() < PAUSE_PROBABILITY:
        for k in sorted(rng.choice(np.arange(1, len(said)), rng.integers(1, 3),
                                   replace=False), reverse=True):
            said[k - 1] += ","
    return " ".join(said)


def render(text, voice, stretch, exe=None) -> np.ndarray:
    """`text` said by flite's `voice`, float32 at 8 kHz."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run([exe or flite(), "-voice", voice, "--setf", f"duration_stretch={stretch}",
                        "-t", text, "-o", str(wav)], check=True, capture_output=True)
        x, rate = sf.read(str(wav), dtype="float32")
    return resample(x, rate, RATE)


class FliteStrings:
    FILE = FILE

    def __init__(self, audio, digits):
        self.audio, self.digits = audio, digits
        self.by_length = {}
        for i, d in enumerate(digits):
            self.by_length.setdefault(len(d), []).append(i)

    @classmethod
    def load(cls, path=None):
        """The rendered strings from the cache, rendering them first if absent."""
        dest = data_dir(path) / cls.FILE
        if not dest.exists():
            cls._render_all(dest)
        try:
            with np.load(dest, allow_pickle=False) as f:
                samples, ends, digits = f["samples"], f["ends"], f["digits"]
        except (OSError, ValueError, KeyError) as e:
            raise DatasetError(f"{dest}: unreadable ({e}); delete it and run again") from None
        if (samples.dtype != np.int16 or len(ends) != len(digits) or len(ends) == 0
                or ends[-1] != len(samples) or np.any(np.diff(ends) <= 0)):
            raise DatasetError(f"{dest}: inconsistent; delete it and run again")
        starts = np.concatenate([[0], ends[:-1]])
        audio = [samples[a:b].astype(np.float32) / 32768 for a, b in zip(starts, ends)]
        return cls(audio, [str(d) for d in digits])

    @staticmethod
    def _render_all(dest):
        exe, rng = flite(), np.random.default_rng(0)
        audio, digits = [], []
        for v, voice in enumerate(VOICES):
            print(f"flite: rendering {PER_VOICE} strings with voice {voice} "
                  f"({v + 1}/{len(VOICES)})", flush=True)
            for k in range(PER_VOICE):
                d = "".join(map(str, rng.integers(0, 10, k % digit_strings.MAX_DIGITS + 1)))
                x = render(text_of(d, rng), voice, rng.uniform(*STRETCH), exe)
                audio.append(x)
                digits.append(d)
        FliteStrings.save(dest, audio, digits)

    @staticmethod
    def save(dest, audio, digits):
        """Rendered strings (float audio, digit strings) as the cache `load` reads, whole
        or not at all: int16 samples end to end, each string's end, its digits."""
        audio = [np.round(np.clip(x, -1, 1) * 32767).astype(np.int16) for x in audio]
        with atomic_path(dest, suffix=".npz") as tmp:
            np.savez(tmp, samples=np.concatenate(audio), digits=np.array(digits),
                     ends=np.cumsum([len(a) for a in audio]))

    def lone_words(self):
        """The rendered strings of one digit (40 per voice): a list of float32 audio, and
        their digits as ints."""
        index = self.by_length.get(1, [])
        return [self.audio[i] for i in index], np.array([int(self.digits[i]) for i in index])

    def build(self, rng, count):
        """(audio, digits): a random rendered string of `count` digits (fewer if none),
        at its own speed, with background edges, re-recorded and levelled as in training."""
        lengths = [n for n in self.by_length if n <= count] or [min(self.by_length)]
        n = max(lengths)
        i = self.by_length[n][rng.integers(len(self.by_length[n]))]
        x = soxr.resample(self.audio[i], RATE * rng.uniform(*SPEED), RATE).astype(np.float32)
        edges = [np.zeros(int(rng.uniform(*digit_strings.EDGE_SECONDS) * RATE), np.float32)
                 for _ in range(2)]
        x = np.concatenate([edges[0], x, edges[1]])
        if rng.random() >= digit_strings.CLEAN_PROBABILITY:
            x = digit_strings.rerecord(x, rng)
        x = digit_strings.set_level(x) * np.float32(
            10 ** (rng.uniform(*digit_strings.LEVEL_JITTER_DB) / 20))
        return np.clip(x, -1, 1), self.digits[i]
