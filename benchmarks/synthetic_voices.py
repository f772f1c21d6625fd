"""Spoken digits from voices that are not in FSDD: espeak-ng's synthetic speakers.

    apt install espeak-ng
    OPENBLAS_NUM_THREADS=1 python benchmarks/synthetic_voices.py

A robot is not a person, but it is a voice, accent, pitch and rate the model never heard,
recorded at 22.05 kHz: a check of the whole device path (resampling, detection, level,
model) on speech from outside the dataset. Prints accuracy per voice and overall.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tinydigits.audio import prepare_wav
from tinydigits.errors import InputError
from tinydigits.runtime import Classifier, model_path

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us+f2", "en-us+f4",
          "en-gb+m3", "en-gb+f3", "en-us+m7"]
SETTINGS = [(140, 40), (175, 50), (210, 70)]  # (words per minute, pitch 0-99)

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--model", default=str(model_path("audio")),
                    help="the .tflite to measure (default: the shipped int8)")
args = parser.parse_args()
if not shutil.which("espeak-ng"):
    sys.exit("benchmarks/synthetic_voices.py: needs espeak-ng (apt install espeak-ng)")

classifier = Classifier(args.model)
print(f"{args.model}: {len(VOICES)} voices x {len(SETTINGS)} rate/pitch x 10 digits\n")
print("| voice | accuracy | called none |")
print("|---|---|---|")
total = []
with tempfile.TemporaryDirectory() as tmp:
    for voice in VOICES:
        right, none = [], 0
        for speed, pitch in SETTINGS:
            for digit, word in enumerate(WORDS):
                wav = Path(tmp) / f"{digit}.wav"
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch),
                                "-w", str(wav), word], check=True, capture_output=True)
                try:
                    label, _ = classifier.predict(prepare_wav(wav))
                except InputError:
                    label = "none"
                right.append(label == str(digit))
                none += label == "none"
        total += right
        print(f"| {voice} | {np.mean(right):.0%} | {none} |", flush=True)
print(f"\noverall: {np.mean(total):.1%} of {len(total)} synthetic utterances")
