"""How far each FSDD speaker's long-term spectrum is from the others', and what a fold model
gains once a left-out speaker is equalised to them: how much of leave-one-speaker-out is
the microphone and room, not the voice.

    OPENBLAS_NUM_THREADS=1 python benchmarks/speaker_spectra.py      # the table and a plot
    python benchmarks/speaker_spectra.py --speaker george \
        --model runs/loso-george/digit_strings.keras   # a fold of `--split loso --keep-models`

A speaker's long-term spectrum is the mean log-mel of the loud frames (within 13 dB of the
word's loudest) of all his words, each trimmed and levelled as training does.
With `--model`, the speaker's 300 strings (`digit_strings.evaluation_strings`, as the
recipe's leave-one-speaker-out) are decoded as recorded, then with every word filtered by
the zero-phase response that moves his long-term spectrum onto the other five's mean. That
equaliser knows the speaker's spectrum in advance: it is a bound on what channel
normalisation could give, not a method.
"""

import tinydigits.quiet  # noqa: F401  (first: loads TensorFlow without its start-up log lines)

import argparse
import sys
from pathlib import Path

import keras
import numpy as np

from tinydigits import ctc, digit_strings, reports
from tinydigits.blocks import LogMelFrames, mel_filterbank
from tinydigits.datasets import load_fsdd
from tinydigits.errors import DatasetError
from tinydigits.features import AUDIO

DB = 10 / np.log(10)  # natural-log power to dB
FRONTEND = LogMelFrames()
FILTERS = mel_filterbank(AUDIO.sample_rate, AUDIO.fft_length, AUDIO.mel_bins, AUDIO.fmin,
                         AUDIO.fmax)
CENTRES_HZ = (FILTERS * np.fft.rfftfreq(AUDIO.fft_length, 1 / AUDIO.sample_rate)[:, None]
              ).sum(0) / FILTERS.sum(0)


def long_term_spectrum(words) -> np.ndarray:
    """Mean log-mel (mel_bins,) of the loud frames of `words` (raw FSDD recordings)."""
    frames = []
    for x in words:
        x = digit_strings.trim(x)
        x = x / (np.sqrt(np.mean(x**2)) + 1e-9) * AUDIO.target_rms
        logmel = np.asarray(FRONTEND.log_mel(x[None]))[0]
        energy = logmel.mean(1)
        frames.append(logmel[energy > energy.max() - 3])
    return np.concatenate(frames).mean(0)


def equalise(x, log_gain) -> np.ndarray:
    """`x` through the zero-phase response `log_gain` (natural-log power, per mel bin)."""
    n = 1 << int(len(x) + AUDIO.fft_length).bit_length()
    f = np.fft.rfftfreq(n, 1 / AUDIO.sample_rate)
    amplitude = np.exp(np.interp(f, CENTRES_HZ, log_gain) / 2)
    return np.fft.irfft(np.fft.rfft(x, n) * amplitude, n)[: len(x)].astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speaker", help="with --model: the speaker its fold left out")
    parser.add_argument("--model", help="a string model trained without --speaker (.keras)")
    parser.add_argument("--plot", default="speaker_spectra.png", help="where the plot goes")
    parser.add_argument("--data-dir", help="dataset cache (default: $TINYDIGITS_DATA or data/)")
    args = parser.parse_args()
    if bool(args.speaker) != bool(args.model):
        parser.error("--speaker and --model go together")
    try:
        fsdd = load_fsdd(args.data_dir)
    except DatasetError as e:
        sys.exit(f"error: {e}")
    speakers = sorted(set(fsdd.speaker))
    if args.speaker and args.speaker not in speakers:
        sys.exit(f"error: no FSDD speaker named {args.speaker}")
    if args.model and not Path(args.model).is_file():
        sys.exit(f"error: no model file {args.model}")

    spectra = {s: long_term_spectrum([fsdd.audio[i] for i in np.flatnonzero(fsdd.speaker == s)])
               for s in speakers}
    others = {s: np.mean([spectra[t] for t in speakers if t != s], 0) for s in speakers}
    shown = range(0, AUDIO.mel_bins, 4)
    print("Long-term spectrum, speaker minus the mean of the other five (dB; level removed)\n")
    print("| speaker | " + " | ".join(f"{CENTRES_HZ[b]:.0f} Hz" for b in shown) + " | rms |")
    print("|---" * (len(shown) + 2) + "|")
    fig, ax = reports.pyplot().subplots(figsize=(8, 4.5))
    for s in speakers:
        diff = DB * (spectra[s] - others[s])
        diff -= diff.mean()
        print(f"| {s} | " + " | ".join(f"{diff[b]:+.1f}" for b in shown)
              + f" | {np.sqrt(np.mean(diff**2)):.1f} |")
        ax.plot(CENTRES_HZ, diff, label=s)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(xscale="log", xlabel="Hz", ylabel="dB against the other five",
           title="FSDD speakers' long-term spectra (loud frames, level removed)")
    ax.legend(ncol=3, loc="lower center")
    reports.save_figure(fig, args.plot)
    print(f"\nwrote {args.plot}")
    if not args.model:
        return

    model = keras.models.load_model(args.model)  # safe_mode on
    test_idx = next(test for s, _, test in fsdd.loso_folds() if s == args.speaker)
    rows = [("as recorded", None), ("equalised to the other five", others[args.speaker]
                                    - spectra[args.speaker])]
    print(f"\n{args.speaker}'s 300 strings, {args.model}\n")
    print("| words | exact strings | digits right |\n|---|---|---|")
    for label, log_gain in rows:
        if log_gain is not None:
            for i in test_idx:
                fsdd.audio[i] = equalise(fsdd.audio[i], log_gain)
        audio, digits = digit_strings.evaluation_strings(fsdd, test_idx)
        x = digit_strings.pad(audio, int(digit_strings.MAX_SECONDS * AUDIO.sample_rate))
        logits = model.predict(x, batch_size=16, verbose=0)
        scores = digit_strings.score(digits, [ctc.greedy_decode(z).digits for z in logits])
        print(f"| {label} | {scores['exact']:.2%} | {1 - scores['digit_error_rate']:.2%} |")


if __name__ == "__main__":
    main()
