"""Write samples/audio/: FSDD test recordings as other recorders would store them.

    python scripts/make_sample_audio.py

Each file name starts with the digit spoken. The clips come from FSDD's official test
split (recordings 0-4), so no shipped model was trained on them. `stream_16k.wav` holds
several digits with pauses and room noise, for `tinydigits listen --input`; the digits
are listed in `stream_16k.txt`. Deterministic: the same files every run.
"""

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tinydigits.datasets import load_fsdd
from tinydigits.files import atomic_path

OUT = Path(__file__).resolve().parent.parent / "samples" / "audio"
CLIPS = [  # (digit, speaker, recording, how it is stored)
    (0, "nicolas", 1, "u8"),
    (2, "lucas", 2, "quiet"),
    (3, "theo", 0, "16k"),
    (5, "george", 3, "24bit"),
    (7, "jackson", 4, "44k_stereo"),
    (9, "yweweler", 0, "float"),
]
STREAM = [4, 1, 8, 6, 0, 2, 9, 5]


def write(name, audio, rate, subtype):
    with atomic_path(OUT / name, suffix=".wav") as tmp:
        sf.write(tmp, audio, rate, subtype=subtype, format="WAV")


def main():
    fsdd = load_fsdd()
    lookup = {(int(d), s, int(i)): a for d, s, i, a in
              zip(fsdd.digit, fsdd.speaker, fsdd.index, fsdd.audio)}
    OUT.mkdir(parents=True, exist_ok=True)
    for digit, speaker, index, form in CLIPS:
        x = lookup[(digit, speaker, index)]
        name = f"{digit}_{speaker}_{form}.wav"
        if form == "u8":
            write(name, 0.9 * x / np.abs(x).max(), 8000, "PCM_U8")
        elif form == "quiet":
            write(name, x * 10 ** (-30 / 20), 8000, "PCM_16")  # -30 dB
        elif form == "16k":
            write(name, soxr.resample(x, 8000, 16000), 16000, "PCM_16")
        elif form == "24bit":
            write(name, x, 8000, "PCM_24")
        elif form == "44k_stereo":
            up = soxr.resample(x, 8000, 44100)
            write(name, np.stack([up, 0.7 * up], 1), 44100, "PCM_16")
        elif form == "float":
            write(name, x, 8000, "FLOAT")
    rng = np.random.default_rng(7)
    speakers = sorted(set(fsdd.speaker))
    parts = [np.zeros(int(0.8 * 8000), np.float32)]
    for k, digit in enumerate(STREAM):
        x = lookup[(digit, speakers[k % len(speakers)], int(rng.integers(0, 5)))]
        parts += [0.3 * x / np.abs(x).max(), np.zeros(int(rng.uniform(0.5, 1.2) * 8000))]
    stream = np.concatenate(parts)
    stream = stream + 0.003 * rng.standard_normal(len(stream))  # room tone, ~30 dB SNR
    write("stream_16k.wav", soxr.resample(stream, 8000, 16000), 16000, "PCM_16")
    (OUT / "stream_16k.txt").write_text(" ".join(map(str, STREAM)) + "\n")


if __name__ == "__main__":
    main()
