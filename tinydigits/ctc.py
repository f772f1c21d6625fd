"""Greedy CTC decoding of a digit-string model's per-frame scores.

Device side: NumPy + LiteRT only (this module imports NumPy alone).

The string model (recipes/digit_strings.py) outputs logits of shape (frames, 11) per
input: class 0 is the CTC blank and class d + 1 is digit d, one frame per FRAME_SECONDS
of audio. Greedy decoding takes the best class of every frame, merges repeats and drops
blanks (as keras-io's OCR and ASR examples decode): "4 4 _ 1 _ _ 8 8 6" -> "4186".
"""

from dataclasses import dataclass

import numpy as np

BLANK = 0  # CTC blank; class d + 1 is digit d
FRAME_SECONDS = 0.04  # 10 ms hop x 4 (two poolings by 2): 25 frames per second


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


def greedy_decode(logits, frame_seconds=FRAME_SECONDS, offset_seconds=0.0) -> Decoded:
    """Greedy decode of one input's per-frame logits (frames, 11) into a `Decoded`.

    A digit's run is its consecutive frames with the same best class; its time is that
    run's span (CTC peaks are narrow, so the span marks where the model heard the word,
    not its exact edges); `offset_seconds` shifts times, for windows of a longer stream.
    """
    probs = softmax(logits)
    if probs.ndim != 2:
        raise ValueError(f"expected (frames, classes) scores, got shape {probs.shape}")
    best = probs.argmax(axis=-1)
    starts = np.flatnonzero(np.r_[True, best[1:] != best[:-1]])
    ends = np.r_[starts[1:], len(best)]
    digits, confidences, times = [], [], []
    for a, b in zip(starts, ends):
        label = int(best[a])
        if label == BLANK:
            continue
        digits.append(str(label - 1))
        confidences.append(float(probs[a:b, label].max()))
        times.append((offset_seconds + a * frame_seconds, offset_seconds + b * frame_seconds))
    return Decoded("".join(digits), tuple(confidences), tuple(times))
