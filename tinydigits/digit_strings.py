"""Digit strings made of FSDD words: the training and evaluation data of the CTC model.

Training side (NumPy + soxr). A string is 1-10 words of one speaker (sometimes several),
each trimmed to its speech by the device's own detector (`audio.find_utterance`) and varied
on its own (speed, level), joined by gaps from a slight overlap (-30 ms, crossfaded) to
600 ms, sometimes with a non-digit sound in a gap (`augment.not_a_digit`), then the whole
string re-recorded (room, microphone, noise, level) and its level set by the device's
`audio.normalise_level`, as a caller on the Pi would before running the model.

    strings = StringBuilder(fsdd, train_indices, seed=1)
    audio, digits = strings.build(rng, count=4)     # float32 (samples,), "4186"

Training uses FSDD's training recordings (5-49); `evaluation_strings` builds strings from
its test recordings (0-4) with a fixed seed, so every run scores the same strings.
The string recipe adds strings said in one breath by flite's voices (`flite_strings`); the
benchmarks' synthetic voices never enter training.
"""

import numpy as np
import soxr

from tinydigits import augment
from tinydigits.audio import find_utterance, normalise_level

RATE = 8000
MAX_DIGITS = 10  # PINs, phone numbers, codes
MAX_SECONDS = 10.0  # the longest string; evaluation pads every string to this: 80,000 samples
WORD_SPEED = (0.88, 1.12)  # each word at its own tempo and pitch
WORD_GAIN_DB = (-6.0, 6.0)  # each word at its own level: people trail off, stress a digit
TRIM_SECONDS = (0.0, 0.04)  # shave up to 40 of find_utterance's 50 ms pad: fluent joins
FLUENT_PROBABILITY = 0.5  # share of gaps drawn from FLUENT_GAP: said in one breath
FLUENT_GAP = (-0.03, 0.1)  # s; negative: the words overlap, crossfaded
PAUSED_GAP = (0.1, 0.6)  # s; a pause between groups ("four one eight ... six")
EDGE_SECONDS = (0.05, 0.5)  # background before the first word and after the last
NOISE_IN_GAP_PROBABILITY = 0.1  # per gap (and edge): a breath, a click, a knock, a scrap
NOISE_LEVEL_DB = (-30.0, 0.0)  # the non-digit sound's peak against the words' peak
MIXED_SPEAKERS_PROBABILITY = 0.2  # training only: words of several voices in one string
LEVEL_JITTER_DB = (-12.0, 3.0)  # training only: after the level is set, so that a level set
# roughly (a stream's running estimate, a clipped span) still reads the same
CLEAN_PROBABILITY = 0.2  # training only: left un-re-recorded, FSDD itself still counts
EVALUATION_STRINGS = 300  # strings of FSDD test words, 30 of each length 1-10
CALIBRATION_STRINGS = 200  # int8 activation ranges, from training words


def trim(x) -> np.ndarray:
    """The speech of one recording (find_utterance's span, with its 50 ms pads)."""
    span = find_utterance(x)
    return np.asarray(x if span is None else x[span[0]:span[1]], np.float32)


def _fade(n):
    return (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n + 2)[1:-1])).astype(np.float32)


def join(pieces, gaps) -> np.ndarray:
    """Pieces laid end to end with `gaps` (samples; negative overlaps, crossfaded)."""
    pieces = [np.array(p, np.float32) for p in pieces]
    for i, g in enumerate(gaps):
        if g < 0:  # fade the tail out and the next head in over the overlap
            k = min(-g, len(pieces[i]), len(pieces[i + 1]))
            pieces[i][len(pieces[i]) - k:] *= _fade(k)[::-1]
            pieces[i + 1][:k] *= _fade(k)
    starts = np.cumsum([0] + [len(p) + g for p, g in zip(pieces[:-1], gaps)])
    out = np.zeros(int(max(s + len(p) for s, p in zip(starts, pieces))), np.float32)
    for s, p in zip(starts, pieces):
        out[s:s + len(p)] += p
    return out


def rerecord(x, rng) -> np.ndarray:
    """The whole string in a room, through a microphone, with background noise."""
    if rng.random() < augment.REVERB_PROBABILITY:
        x = augment.reverb(x, rng)
    if rng.random() < augment.TILT_PROBABILITY:
        x = augment.tilt(x, rng)
    if rng.random() < augment.NOISE_PROBABILITY:
        speech_rms = np.sqrt(np.mean(x**2)) + 1e-9
        noise = augment.coloured_noise(len(x), rng, rng.choice(augment.NOISE_COLOURS))
        x = x + noise * speech_rms / 10 ** (rng.uniform(*augment.SNR_DB) / 20)
    return x.astype(np.float32)


def set_level(x) -> np.ndarray:
    """The device's level setting: the span of all speech to AUDIO.target_rms."""
    return normalise_level(x, find_utterance(x))


class StringBuilder:
    """Random digit strings from a set of FSDD recordings (`indices` into `fsdd`)."""

    def __init__(self, fsdd, indices, rerecorded=True, mixed_speakers=0.0, noise_in_gaps=True):
        self.fsdd = fsdd
        self.rerecorded, self.mixed_speakers = rerecorded, mixed_speakers
        self.noise_in_gaps = noise_in_gaps
        self.words = {i: trim(fsdd.audio[i]) for i in indices}
        self.by_speaker_digit = {}
        for i in indices:
            self.by_speaker_digit.setdefault((fsdd.speaker[i], fsdd.digit[i]), []).append(i)
        self.speakers = sorted({s for s, _ in self.by_speaker_digit})
        self.fragments = list(self.words.values())  # for the "scrap of a word" non-digit

    def word(self, rng, speaker, digit) -> np.ndarray:
        choices = self.by_speaker_digit[(speaker, digit)]
        x = self.words[choices[rng.integers(len(choices))]]
        head, tail = (int(rng.uniform(*TRIM_SECONDS) * RATE) for _ in range(2))
        x = x[head:len(x) - tail]
        x = soxr.resample(x, RATE * rng.uniform(*WORD_SPEED), RATE).astype(np.float32)
        x = x / (np.sqrt(np.mean(x**2)) + 1e-9) * 0.1  # the words' own levels differ a lot
        return x * np.float32(10 ** (rng.uniform(*WORD_GAIN_DB) / 20))

    def gap(self, rng) -> int:
        low_high = FLUENT_GAP if rng.random() < FLUENT_PROBABILITY else PAUSED_GAP
        return int(rng.uniform(*low_high) * RATE)

    def build(self, rng, count=None, digits=None, max_seconds=MAX_SECONDS):
        """(audio float32 (samples,), digit string) of `count` random digits (or `digits`),
        at most `max_seconds` long: gaps shrink, then digits go, to fit."""
        if digits is None:
            digits = rng.integers(0, 10, count if count else rng.integers(1, MAX_DIGITS + 1))
        digits = [int(d) for d in digits]
        mixed = rng.random() < self.mixed_speakers
        speaker = self.speakers[rng.integers(len(self.speakers))]
        words = [self.word(rng, self.speakers[rng.integers(len(self.speakers))] if mixed
                           else speaker, d) for d in digits]
        peak = max(np.abs(w).max() for w in words)
        pieces, gaps, edges = [np.zeros(int(rng.uniform(*EDGE_SECONDS) * RATE), np.float32)], [], []
        for k, w in enumerate(words):
            pieces.append(w)
            gaps.append(0 if k == 0 else self.gap(rng))
        pieces.append(np.zeros(int(rng.uniform(*EDGE_SECONDS) * RATE), np.float32))
        gaps.append(0)
        # Non-digit sounds: in a pause (which opens to hold it) or before/after the string.
        for k in range(len(gaps)):
            if self.noise_in_gaps and rng.random() < NOISE_IN_GAP_PROBABILITY:
                sound = augment.not_a_digit(rng, self.fragments)
                level = peak * 10 ** (rng.uniform(*NOISE_LEVEL_DB) / 20)
                sound *= level / (np.abs(sound).max() + 1e-9)
                edges.append((k, sound))
        for k, sound in reversed(edges):  # insert after piece k, with short gaps around it
            pieces.insert(k + 1, sound.astype(np.float32))
            gaps[k] = max(gaps[k], 0)
            gaps.insert(k + 1, int(rng.uniform(*PAUSED_GAP) * RATE) // 2)
        x = self._fit(pieces, gaps, max_seconds)
        if x is None:  # too long even without pauses and sounds: one digit fewer
            return self.build(rng, digits=digits[:-1], max_seconds=max_seconds)
        if not self.rerecorded:
            return set_level(x), "".join(map(str, digits))
        x = set_level(rerecord(x, rng)) * np.float32(10 ** (rng.uniform(*LEVEL_JITTER_DB) / 20))
        return np.clip(x, -1, 1), "".join(map(str, digits))

    @staticmethod
    def _fit(pieces, gaps, max_seconds):
        limit = int(max_seconds * RATE)
        x = join(pieces, gaps)
        if len(x) <= limit:
            return x
        words_only = [p for p in pieces if np.any(p)]  # drop edges; keep words and sounds
        x = join(words_only, [0] * (len(words_only) - 1))
        return x if len(x) <= limit else None


def pad(strings, samples) -> np.ndarray:
    """Strings (1-D arrays) as one float32 (N, samples) batch, zero-padded at the end."""
    out = np.zeros((len(strings), samples), np.float32)
    for i, s in enumerate(strings):
        out[i, :min(len(s), samples)] = s[:samples]
    return out


def labels_of(strings, width=MAX_DIGITS) -> np.ndarray:
    """Digit strings as CTC targets: (N, width) int32, digit d -> d + 1, padded with 0."""
    out = np.zeros((len(strings), width), np.int32)
    for i, s in enumerate(strings):
        out[i, :len(s)] = [int(c) + 1 for c in s]
    return out


def evaluation_strings(fsdd, indices, n=EVALUATION_STRINGS, seed=0, rerecorded=False,
                       lengths=None):
    """(audio list, digit strings): `n` strings of the recordings `indices` (FSDD's test
    split), the same every call for the same seed; lengths cycle through 1-10 digits.
    Clean by default: each word varied and joined as in training, no room or noise."""
    rng = np.random.default_rng(seed)
    builder = StringBuilder(fsdd, indices, rerecorded=rerecorded, noise_in_gaps=rerecorded)
    lengths = lengths or list(range(1, MAX_DIGITS + 1))
    audio, digits = [], []
    for k in range(n):
        x, d = builder.build(rng, count=lengths[k % len(lengths)])
        audio.append(x)
        digits.append(d)
    return audio, digits


def verification_strings(data_dir=None, seed=0):
    """(calibration float32 (N, samples), test float32 (M, samples), test digit strings):
    what the exporter verifies the string model on. Test: EVALUATION_STRINGS clean strings
    of FSDD test recordings; calibration: re-recorded strings of training recordings.
    Every string is padded with silence to MAX_SECONDS (80,000 samples)."""
    from tinydigits.datasets import load_fsdd

    fsdd = load_fsdd(data_dir)
    train, test = fsdd.official_split()
    samples = int(MAX_SECONDS * RATE)
    audio, digits = evaluation_strings(fsdd, test, seed=seed)
    rng = np.random.default_rng(seed + 1)
    builder = StringBuilder(fsdd, train)
    calibration = [builder.build(rng)[0] for _ in range(CALIBRATION_STRINGS)]
    return pad(calibration, samples), pad(audio, samples), digits


def alignment(reference, hypothesis) -> list:
    """A minimum-edit alignment of two sequences, as (edit, reference item, hypothesis item)
    from first to last; edit is "correct", "substitution", "deletion" (the hypothesis left
    the reference item out) or "insertion". Where edits tie: substitutions first, then
    deletions."""
    n, m = len(reference), len(hypothesis)
    cost = np.zeros((n + 1, m + 1), int)
    cost[:, 0], cost[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j] + 1, cost[i, j - 1] + 1,
                             cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1]))
    edits, i, j = [], n, m
    while i or j:
        if i and j and cost[i, j] == cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            same = reference[i - 1] == hypothesis[j - 1]
            edits.append(("correct" if same else "substitution", reference[i - 1],
                          hypothesis[j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i, j] == cost[i - 1, j] + 1:
            edits.append(("deletion", reference[i - 1], None))
            i -= 1
        else:
            edits.append(("insertion", None, hypothesis[j - 1]))
            j -= 1
    return edits[::-1]


def edit_distance(a, b) -> int:
    """Levenshtein distance between two strings (substitutions, insertions, deletions)."""
    return sum(edit != "correct" for edit, _, _ in alignment(a, b))


def missed(reference, hypothesis) -> str:
    """The digits of `reference` that `hypothesis` left out (the deletions of `alignment`):
    missed("4186", "486") is "1"."""
    return "".join(r for edit, r, _ in alignment(reference, hypothesis) if edit == "deletion")


def score(references, hypotheses) -> dict:
    """Exact-string accuracy and digit error rate (edit distance / reference digits)."""
    errors = sum(edit_distance(r, h) for r, h in zip(references, hypotheses))
    return {"strings": len(references),
            "exact": float(np.mean([r == h for r, h in zip(references, hypotheses)])),
            "digit_error_rate": errors / max(1, sum(len(r) for r in references))}


def plot_strings(logmels, probs, references, hypotheses, seconds, path):
    """Per string: its log-mel spectrogram over the frame-wise digit probabilities, titled
    with the true and the decoded string (red when they differ)."""
    from tinydigits import reports
    from tinydigits.ctc import greedy_decode

    plt = reports.pyplot()
    fig, axes = plt.subplots(2 * len(logmels), 1, figsize=(10, 2.6 * len(logmels)),
                             gridspec_kw={"height_ratios": [3, 2] * len(logmels)})
    for k, (m, p, ref, hyp, s) in enumerate(zip(logmels, probs, references, hypotheses, seconds)):
        top, bottom = axes[2 * k], axes[2 * k + 1]
        frames = int(round(s * 100)) + 1  # the string's own length, not its padding
        top.imshow(m[:frames].T, origin="lower", aspect="auto", cmap="magma",
                   extent=(0, frames / 100, 0, m.shape[1]))
        top.set_ylabel("mel bin")
        top.set_title(f"{ref} -> {hyp}", fontsize=9, color="black" if ref == hyp else "red")
        top.set_xticks([])
        steps = min(len(p), int(np.ceil(frames / 4)))
        t = (np.arange(steps) + 0.5) * 0.04
        for d in range(10):
            bottom.plot(t, p[:steps, d + 1], lw=1, label=str(d))
        decoded = greedy_decode(np.log(p[:steps] + 1e-12))
        for digit, (a, b) in zip(decoded.digits, decoded.times):
            bottom.text((a + b) / 2, 1.02, digit, fontsize=8, ha="center")
        bottom.plot(t, p[:steps, 0], color="0.7", lw=0.8, ls="--", label="blank")
        bottom.set_xlim(0, frames / 100)
        bottom.set_ylim(0, 1.15)
        bottom.set_ylabel("p")
    axes[-1].set_xlabel("s")
    axes[1].legend(ncol=11, fontsize=6, loc="upper right", bbox_to_anchor=(1, -0.15))
    fig.suptitle("test strings: log-mel spectrogram, per-frame digit scores (40 ms), "
                 "true -> decoded")
    reports.save_figure(fig, path)
