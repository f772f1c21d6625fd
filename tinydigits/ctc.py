"""Greedy CTC decoding of a digit-string model's per-frame scores.

Device side: NumPy + LiteRT only (this module imports NumPy alone).

The string model (recipes/digit_strings.py) outputs logits of shape (frames, 11) per
input: class 0 is the CTC blank and class d + 1 is digit d, one frame per FRAME_SECONDS
of audio. Greedy decoding takes the best class of every frame, merges repeats and drops
blanks (as keras-io's OCR and ASR examples decode): "4 4 _ 1 _ _ 8 8 6" -> "4186".
`rescore` lets a second model (the isolated-word one) judge each decoded digit again;
it and `words` (the count that picks which model answers) take two runs that are one
word, split by a voice unlike FSDD's, as one digit.
"""

from dataclasses import dataclass

import numpy as np

BLANK = 0  # CTC blank; class d + 1 is digit d
FRAME_SECONDS = 0.04  # 10 ms hop x 4 (two poolings by 2): 25 frames per second
# One word heard as two digits: voices unlike FSDD's split "seven" into 7 + 1 and "zero"
# into 8 + 0. Two peaks this close, one of them unsure, are one word. Chosen on lone words
# and 2-digit strings of the benchmarks' synthetic voices (evaluation only, never trained on)
# and FSDD's test words (docs/digit_strings.md): it undoes 16 of 34 such splits and merges
# 3 of 491 real pairs (1 read right before).
MERGE_FRAMES = 4  # 0.16 s between the peaks: faster than two words are said
MERGE_BELOW = 0.9  # the less sure of the two peaks' probabilities


@dataclass(frozen=True)
class Decoded:
    """A decoded digit string, with each digit's confidence and (start, end) seconds."""

    digits: str
    confidences: tuple  # per digit: its highest probability over the frames of its run
    times: tuple  # per digit: (start, end) s of its run of frames in the input

    @property
    def confidence(self) -> float:
        """The lowest digit confidence: a string is as sure as its least sure digit."""
        return min(self.confidences) if self.confidences else 0.0

    def as_dict(self) -> dict:
        return {"digits": self.digits, "confidence": round(self.confidence, 4),
                "confidences": [round(c, 4) for c in self.confidences],
                "times": [[round(a, 3), round(b, 3)] for a, b in self.times]}


def softmax(logits, axis=-1) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def greedy_path(scores) -> list:
    """Class labels after merging repeats and dropping blanks, e.g. [5, 2, 9, 7] for "4186".

    `scores` (frames, classes): logits or probabilities (argmax is the same)."""
    best = np.asarray(scores).argmax(axis=-1)
    keep = np.r_[True, best[1:] != best[:-1]] & (best != BLANK)
    return best[keep].tolist()


def _runs(probs):
    """[(first frame, end frame, class)] of the best class's runs, blanks left out."""
    best = probs.argmax(axis=-1)
    starts = np.flatnonzero(np.r_[True, best[1:] != best[:-1]])
    ends = np.r_[starts[1:], len(best)]
    return [(int(a), int(b), int(best[a])) for a, b in zip(starts, ends) if best[a] != BLANK]


def _merge_close(runs, probs):
    """`_runs` with each two neighbours whose peaks are MERGE_FRAMES or less apart, one of
    them under MERGE_BELOW, made one run of the surer one's class."""
    merged = []
    for a, b, label in runs:
        peak = a + int(np.argmax(probs[a:b, label]))
        if merged:
            a0, _, label0, peak0 = merged[-1]
            sure = (probs[peak0, label0], probs[peak, label])
            if peak - peak0 <= MERGE_FRAMES and min(sure) < MERGE_BELOW:
                best = (label0, peak0) if sure[0] >= sure[1] else (label, peak)
                merged[-1] = (a0, b, *best)
                continue
        merged.append((a, b, label, peak))
    return merged


def words(logits) -> int:
    """How many digits the device hears in one input's logits: the greedy runs, with two
    runs that are one word merged (`MERGE_FRAMES`). Under two: a lone word or none."""
    probs = _probabilities(logits)
    return len(_merge_close(_runs(probs), probs))


def _probabilities(logits):
    probs = softmax(logits)
    if probs.ndim != 2:
        raise ValueError(f"expected (frames, classes) scores, got shape {probs.shape}")
    return probs


def greedy_decode(logits, frame_seconds=FRAME_SECONDS, offset_seconds=0.0) -> Decoded:
    """Greedy decode of one input's per-frame logits (frames, 11) into a `Decoded`.

    A digit's run is its consecutive frames with the same best class; its time is that
    run's span (CTC peaks are narrow, so the span marks where the model heard the word,
    not its exact edges); `offset_seconds` shifts times, for windows of a longer stream.
    """
    probs = _probabilities(logits)
    runs = _runs(probs)
    return Decoded("".join(str(label - 1) for _, _, label in runs),
                   tuple(float(probs[a:b, label].max()) for a, b, label in runs),
                   _times(runs, frame_seconds, offset_seconds))


def _times(runs, frame_seconds, offset_seconds):
    return tuple((offset_seconds + a * frame_seconds, offset_seconds + b * frame_seconds)
                 for a, b, _ in runs)


def rescore(logits, x, judge, rate=8000, offset_seconds=0.0) -> Decoded:
    """Greedy decoding, each digit judged again by a second model on its own stretch of `x`.

    The string model finds how many digits there are and where (each run's peak frame;
    two runs of one word merged, as `words` counts them).
    `judge(stretch)` gives 11 probabilities, digits 0-9 and then "no digit", for the audio
    between the midpoints to the neighbouring peaks (`x` is the audio `logits` were
    computed from, at `rate`), or None for no opinion. Which digit: the product of the two
    models' digit probabilities, normalised (independent opinions; the judge's "no digit"
    share spread evenly, as no opinion on which). The digit is the likeliest, and its
    confidence is that probability times the belief that a digit is there at all, the
    larger of the string model's (1 - blank at the peak) and the judge's (1 - "no digit").
    A judge of no opinion leaves the string model's digits and confidences as they were.
    Times are the string model's.
    """
    probs = _probabilities(logits)
    merged = _merge_close(_runs(probs), probs)
    runs = [(a, b, label) for a, b, label, _ in merged]
    peaks = [peak for *_, peak in merged]
    step = FRAME_SECONDS * rate  # samples per output frame
    cuts = [0, *(int((p + q) / 2 * step) for p, q in zip(peaks, peaks[1:])), len(x)]
    digits, confidences = [], []
    for i, peak in enumerate(peaks):
        heard = probs[peak, 1:]  # sums to 1 - blank
        judged = judge(x[cuts[i]:cuts[i + 1]])
        judged = np.r_[np.zeros(10), 1.0] if judged is None else np.asarray(judged, np.float64)
        which = heard * (judged[:10] + judged[10] / 10)
        which /= max(which.sum(), 1e-300)  # int8 scores can be exactly 0
        d = int(np.argmax(which))
        digits.append(str(d))
        confidences.append(float(which[d] * max(heard.sum(), 1.0 - judged[10])))
    return Decoded("".join(digits), tuple(confidences),
                   _times(runs, FRAME_SECONDS, offset_seconds))
