"""Digit strings said by festival's voices, most of them with an accent: voices FSDD lacks.

Training side. FSDD has six speakers and flite four synthetic ones, all but one of them
men, none with an accent other than a native English one; a word of a voice the string
model never heard can come out as silence. Debian packages festival voices of ten more
people: an American man, and Italian, Czech, Finnish and Catalan voices (four women, five
men, one a boy). Those that are not English read the English digit words spelt as a
speaker of their language would say them ("fajv" for five in Czech), which gives English
digits with their accent. Rendered once into the dataset cache (`festival-strings-v1.npz`,
int16 at 8 kHz, written atomically, read without pickle), then varied and re-recorded each
epoch like flite's (`FliteStrings.build`).

    bank = FestivalStrings.load()              # renders on first use: 4 min on 2 cores
    audio, digits = bank.build(rng, count=4)   # float32 (samples,), "4186"

Needs `apt install festival` and the voice packages in `PACKAGES`.
"""

import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from tinydigits import digit_strings, flite_strings
from tinydigits.audio import resample
from tinydigits.errors import DatasetError
from tinydigits.flite_strings import RATE, STRETCH, FliteStrings

# The digit words zero-nine spelt for each language's letter-to-sound rules.
SPELLINGS = {
    "en": "zero one two three four five six seven eight nine",
    "it": "ziro uan tuu tri for faiv sics seven eit nain",
    "cs": "zirou van tuu tri for fajv siks sevn ejt najn",
    "fi": "siirou vuan tuu trii foor faiv siks seven eit nain",
    "ca": "ziro uan tuu tri for faiv sics seven eit nain",
}
VOICES = {  # festival's voice: (the language its words are spelt in, its Debian package)
    "ked_diphone": ("en", "festvox-kdlpc16k"),  # American man
    "pc_diphone": ("it", "festvox-itapc16k"),  # Italian man
    "lp_diphone": ("it", "festvox-italp16k"),  # Italian woman
    "czech_dita": ("cs", "festvox-czech-dita"),  # Czech woman
    "czech_krb": ("cs", "festvox-czech-krb"),  # Czech boy
    "czech_machac": ("cs", "festvox-czech-machac"),  # Czech man
    "czech_ph": ("cs", "festvox-czech-ph"),  # Czech man
    "hy_fi_mv_diphone": ("fi", "festvox-suopuhe-mv"),  # Finnish man
    "suo_fi_lj_diphone": ("fi", "festvox-suopuhe-lj"),  # Finnish woman
    "upc_ca_ona_hts": ("ca", "festvox-ca-ona-hts"),  # Catalan woman (HTS: not stretched)
}
PACKAGES = ["festival"] + [package for _, package in VOICES.values()]
PER_VOICE = 200  # strings per voice: 20 of each length 1-10
FILE = "festival-strings-v1.npz"


def text2wave():
    path = shutil.which("text2wave")
    if path is None:
        raise DatasetError("festival is not installed (Debian: apt install "
                           f"{' '.join(PACKAGES)}); the string recipe renders strings with it once")
    return path


def text_of(digits, voice, rng) -> str:
    """flite_strings.text_of with `voice`'s spellings."""
    return flite_strings.text_of(digits, rng, SPELLINGS[VOICES[voice][0]].split())


def render(text, voice, stretch, exe=None) -> np.ndarray:
    """`text` said by festival's `voice`, float32 at 8 kHz."""
    with tempfile.TemporaryDirectory() as tmp:
        src, wav = Path(tmp) / "s.txt", Path(tmp) / "s.wav"
        src.write_text(text + "\n")
        done = subprocess.run([exe or text2wave(), "-eval", f"(voice_{voice})",
                               "-eval", f"(Parameter.set 'Duration_Stretch {stretch})",
                               "-o", str(wav), str(src)], capture_output=True)
        if done.returncode != 0 or not wav.exists():
            raise DatasetError(f"festival cannot say with voice {voice} (Debian: apt install "
                               f"{VOICES[voice][1]})")
        x, rate = sf.read(str(wav), dtype="float32")
    return resample(x, rate, RATE)


class FestivalStrings(FliteStrings):
    FILE = FILE

    @staticmethod
    def _render_all(dest):
        exe, rng = text2wave(), np.random.default_rng(0)
        jobs = []  # (text, voice, stretch, digits), drawn first: the same bank on any machine
        for voice in VOICES:
            for k in range(PER_VOICE):
                d = "".join(map(str, rng.integers(0, 10, k % digit_strings.MAX_DIGITS + 1)))
                jobs.append((text_of(d, voice, rng), voice, rng.uniform(*STRETCH), d))
        print(f"festival: rendering {len(jobs)} strings with {len(VOICES)} voices", flush=True)

        audio = []
        with ThreadPoolExecutor(2) as pool:  # festival is a process each: two cores
            for x in pool.map(lambda job: render(*job[:3], exe), jobs):
                audio.append(x)
                if len(audio) % PER_VOICE == 0:
                    print(f"festival: {len(audio)}/{len(jobs)} strings", flush=True)
        FliteStrings.save(dest, audio, [j[3] for j in jobs])
