"""How the shipped MNIST model fares on digits that do not look like MNIST's files.

    OPENBLAS_NUM_THREADS=1 python benchmarks/handwriting.py [--digits 1000]

Renders MNIST test digits the way users send them (dark ink on light paper, padded and
off-centre, resized to 32-300 px, RGB, RGBA, a noisy shaded JPEG "photo"), writes each to a
file, and classifies the files exactly as `tinydigits classify` does. For each variant it
prints accuracy, agreement with the answer on the original digit, and the accuracy a plain
resize to 28x28 would get (no polarity, crop or centring): why the preprocessing exists.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from tinydigits.datasets import load_mnist
from tinydigits.images import preprocess_image
from tinydigits.runtime import Classifier, model_path

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--digits", type=int, default=1000, help="MNIST test digits to render")
parser.add_argument("--model", default=str(model_path("image")),
                    help="the .tflite to measure (default: the shipped int8_io)")
args = parser.parse_args()


def paper(d):
    return 255 - d  # dark ink on white paper


def canvas(d, size, rng):
    """The digit at a random place on a larger sheet."""
    sheet = np.full((size, size), 255, np.uint8)
    y, x = rng.integers(0, size - 28, 2)
    sheet[y:y + 28, x:x + 28] = paper(d)
    return sheet


def resized(d, size):
    return np.asarray(Image.fromarray(paper(d)).resize((size, size), Image.BICUBIC))


def photo(d, rng):
    """300 px, shaded paper, sensor noise, JPEG: a phone photo of a note."""
    big = resized(d, 220).astype(float)
    sheet = np.full((300, 300), 255.0)
    y, x = rng.integers(10, 70, 2)
    sheet[y:y + 220, x:x + 220] = big
    shade = np.linspace(0.75, 1.0, 300)[None, :] * np.linspace(0.9, 1.0, 300)[:, None]
    noisy = sheet * shade * 0.9 + rng.normal(0, 6, sheet.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


VARIANTS = {
    "original (MNIST file)": lambda d, rng: (d, "png"),
    "inverted (ink on paper)": lambda d, rng: (paper(d), "png"),
    "off-centre on 100 px sheet": lambda d, rng: (canvas(d, 100, rng), "png"),
    "32 px": lambda d, rng: (resized(d, 32), "png"),
    "64 px": lambda d, rng: (resized(d, 64), "png"),
    "100 px": lambda d, rng: (resized(d, 100), "png"),
    "300 px": lambda d, rng: (resized(d, 300), "png"),
    "RGB 100 px": lambda d, rng: (np.repeat(resized(d, 100)[..., None], 3, -1), "png"),
    "RGBA, ink on transparent": lambda d, rng: (np.dstack([np.zeros((28, 28, 3), np.uint8), d]),
                                                "png"),
    "photo: 300 px shaded noisy JPEG": lambda d, rng: (photo(d, rng), "jpg"),
}

classifier = Classifier(args.model)
(_, _), (x_test, y_test) = load_mnist()
pick = np.linspace(0, len(x_test) - 1, args.digits).astype(int)
rng = np.random.default_rng(0)
reference = None
print(f"{args.model}, {args.digits} MNIST test digits per variant\n")
print("| variant | accuracy | same answer as original | plain resize accuracy |")
print("|---|---|---|---|")
with tempfile.TemporaryDirectory() as tmp:
    for title, render in VARIANTS.items():
        answers, plain = [], []
        for k, i in enumerate(pick):
            pixels, ext = render(x_test[i], rng)
            path = Path(tmp) / f"{k}.{ext}"
            Image.fromarray(pixels).save(path, quality=85)
            answers.append(int(classifier.predict(preprocess_image(path))[0]))
            gray = Image.open(path).convert("L").resize((28, 28), Image.BILINEAR)
            plain.append(int(classifier.predict(np.asarray(gray, np.float32)[..., None] / 255)[0]))
        answers, plain = np.array(answers), np.array(plain)
        reference = answers if reference is None else reference
        print(f"| {title} | {(answers == y_test[pick]).mean():.1%} | "
              f"{(answers == reference).mean():.1%} | {(plain == y_test[pick]).mean():.1%} |",
              flush=True)
