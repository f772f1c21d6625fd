"""How the shipped MNIST model fares on handwriting that does not look like MNIST's files.

    OPENBLAS_NUM_THREADS=1 python benchmarks/handwriting.py [--digits 1000] [--numbers 300]

Renders MNIST *test* digits the way users send them, writes each to a file and reads the
file exactly as `tinydigits classify` does (`images.prepare_number`, then the classifier).
Single digits: the old variants (MNIST's own margin: ink on paper, off-centre, 32-300 px,
RGB, RGBA, a shaded noisy JPEG photo) and sources without MNIST's margin (tight crops,
8 and 16 px scans upscaled, 12 and 8 px scans as scanned, 1-bit, a 16 px form cell the
digit is stretched to fill, thick marker, thin pen, a sheet on a dark table), every other
one in the other polarity. For each: accuracy, agreement with the answer on the original
digit, and the accuracy a plain resize to 28x28 would get. Numbers: 2-6 MNIST test digits
in a row, gaps from -10% (overlapping) to 40% of a digit's width, vertical jitter, either
polarity, 32-300 px high: digits right and numbers exactly right. Then more numbers: such
numbers underlined, on ruled or squared paper, in a box, in two groups with a hyphen or a
dot between them, or 12-16 px high, and low-resolution cells joined edge to edge (8 and 16
px scans, 16 px cells the digit is stretched to fill, grey and 1-bit), as forms and small
datasets store them. Last, the time to read a 6-digit number image on one thread.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tinydigits.cli import read_image
from tinydigits.datasets import load_mnist
from tinydigits.digit_strings import edit_distance  # the same digit scoring as the strings
from tinydigits.errors import InputError
from tinydigits.images import _max_filter
from tinydigits.runtime import Classifier, model_path

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--digits", type=int, default=1000, help="MNIST test digits per variant")
parser.add_argument("--numbers", type=int, default=300, help="composed numbers (2-6 digits)")
parser.add_argument("--model", default=str(model_path("image")),
                    help="the .tflite to measure (default: the shipped int8_io)")
args = parser.parse_args()

GAPS = (-0.10, 0.40)  # gap between neighbours, in units of a digit's width (20 px in MNIST)
JITTER = 0.15  # each digit moves up or down by up to 15% of the row's height
HEIGHTS = (32, 300)  # px: the number image's height


def paper(d):
    return 255 - d  # dark ink on white paper


def tight(d):
    """The digit cropped to its ink: the ink touches every edge."""
    rows, cols = np.flatnonzero((d > 0).any(1)), np.flatnonzero((d > 0).any(0))
    return d[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def resize(d, height, how=Image.BICUBIC):
    h, w = d.shape
    size = (max(1, round(w * height / h)), height)
    return np.asarray(Image.fromarray(d).resize(size, how))


def polarity(d, k):
    return paper(d) if k % 2 else d


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


def as_scanned(d, side, levels=256):
    """A low-resolution scan: the tight digit in side x side px, in `levels` grey levels."""
    t = tight(d)
    s = side / max(t.shape)
    size = (max(1, round(t.shape[1] * s)), max(1, round(t.shape[0] * s)))
    small = Image.fromarray(t).resize(size, Image.BOX)
    frame = Image.new("L", (side, side))
    frame.paste(small, ((side - small.width) // 2, (side - small.height) // 2))
    step = 255 / (levels - 1)
    return (np.round(np.asarray(frame) / step) * step).astype(np.uint8)


def stretched(d, side):
    """A form's cell: the tight digit stretched to fill side x side px."""
    return np.asarray(Image.fromarray(tight(d)).resize((side, side), Image.BOX))


def form_cell(d, side):
    """A form's cell, 1-bit."""
    return ((stretched(d, side) > 127) * 255).astype(np.uint8)


def scan(d, side, k, rng):
    """A low-resolution scan, upscaled to 32-300 px."""
    up = int(rng.integers(32, 301))
    how = Image.NEAREST if k % 4 < 2 else Image.BICUBIC  # blocky or blurry
    return polarity(np.asarray(Image.fromarray(as_scanned(d, side)).resize((up, up), how)), k)


def one_bit(d, k):
    """A 1-bit scan at 16 px, upscaled to 64 px: an old fax or a low-resolution form scanner."""
    bits = scan(d, 16, 0, np.random.default_rng(0)) > 127
    return Image.fromarray(polarity(bits.astype(np.uint8) * 255, k)).convert("1")


def marker(d, k):
    """100 px, strokes about twice MNIST's width."""
    ink = resize(d, 100).astype(np.float32) / 255
    return polarity((_max_filter(ink, 7) * 255).astype(np.uint8), k)


def thin_pen(d, k):
    """300 px, strokes about a third of MNIST's width, tightly framed."""
    ink = resize(tight(d), 300).astype(np.float32) / 255
    thin = 1 - _max_filter(1 - (ink > 0.5).astype(np.float32), 15)
    return polarity((thin * 255).astype(np.uint8), k)


def on_table(d, rng):
    """A white sheet (60% of the photo, all in view) on a dark table, shaded, JPEG."""
    photo_ = np.full((300, 300), 60.0) + rng.normal(0, 8, (300, 300))
    sheet = 235 - 0.8 * resized(paper(d), 180).astype(float)
    y, x = rng.integers(8, 60, 2)
    photo_[y:y + 232, x:x + 232] = 235
    photo_[y + 26:y + 206, x + 26:x + 206] = sheet
    shade = np.linspace(0.8, 1.0, 300)[None, :]
    return np.clip(photo_ * shade, 0, 255).astype(np.uint8)


VARIANTS = {
    "original (MNIST file)": lambda d, k, rng: (d, "png"),
    "inverted (ink on paper)": lambda d, k, rng: (paper(d), "png"),
    "off-centre on 100 px sheet": lambda d, k, rng: (canvas(d, 100, rng), "png"),
    "32 px": lambda d, k, rng: (resized(d, 32), "png"),
    "64 px": lambda d, k, rng: (resized(d, 64), "png"),
    "100 px": lambda d, k, rng: (resized(d, 100), "png"),
    "300 px": lambda d, k, rng: (resized(d, 300), "png"),
    "RGB 100 px": lambda d, k, rng: (np.repeat(resized(d, 100)[..., None], 3, -1), "png"),
    "RGBA, ink on transparent": lambda d, k, rng: (
        np.dstack([np.zeros((28, 28, 3), np.uint8), d]), "png"),
    "photo: 300 px shaded noisy JPEG": lambda d, k, rng: (photo(d, rng), "jpg"),
    "tight crop, 64 px high": lambda d, k, rng: (polarity(resize(tight(d), 64), k), "png"),
    "16 px scan, upscaled 32-300 px": lambda d, k, rng: (scan(d, 16, k, rng), "png"),
    "8 px scan, upscaled 32-300 px": lambda d, k, rng: (scan(d, 8, k, rng), "png"),
    "12 px scan, as scanned": lambda d, k, rng: (polarity(as_scanned(d, 12), k), "png"),
    "8 px scan, as scanned, 17 grey levels": lambda d, k, rng: (
        polarity(as_scanned(d, 8, levels=17), k), "png"),
    "1-bit 16 px scan, 64 px": lambda d, k, rng: (one_bit(d, k).resize((64, 64)), "png"),
    "1-bit 16 px form cell, stretched to fill it": lambda d, k, rng: (
        polarity(form_cell(d, 16), k), "png"),
    "thick marker, 100 px": lambda d, k, rng: (marker(d, k), "png"),
    "thin pen, tight, 300 px": lambda d, k, rng: (thin_pen(d, k), "png"),
    "sheet on a dark table, JPEG": lambda d, k, rng: (on_table(d, rng), "jpg"),
}


def number_image(digits, k, rng):
    """MNIST digits (uint8 28x28, ink bright) side by side as one image of a number."""
    parts = [tight(d) for d in digits]
    gaps = rng.uniform(*GAPS, len(parts) - 1) * 20
    jitter = rng.uniform(-JITTER, JITTER, len(parts)) * 20
    xs = np.concatenate([[0], np.cumsum([p.shape[1] for p in parts[:-1]] + gaps)])
    ys = 14 - np.array([p.shape[0] for p in parts]) / 2 + jitter
    margin = 6
    xs, ys = np.round(xs + margin).astype(int), np.round(ys - ys.min() + margin).astype(int)
    height = int(max(y + p.shape[0] for y, p in zip(ys, parts)) + margin)
    width = int(max(x + p.shape[1] for x, p in zip(xs, parts)) + margin)
    row = np.zeros((height, width), np.uint8)
    for x, y, p in zip(xs, ys, parts):
        spot = row[y:y + p.shape[0], x:x + p.shape[1]]
        spot[...] = np.maximum(spot, p)  # overlapping neighbours: the ink of both
    return polarity(resize(row, int(rng.integers(HEIGHTS[0], HEIGHTS[1] + 1))), k)


def on_lines(row, k, rng, kind):
    """A number (ink bright) underlined, on ruled paper sitting on a line (lines 1.0-1.3 of
    its height apart), on squared paper (squares a third to a half of its height), or in a
    box; lines 1-3% of its height thick and 35-100% as dark as the ink."""
    h, w = row.shape
    pad = h // 2
    page = np.pad(row, pad)
    thick = max(1, round(h * rng.uniform(0.01, 0.03)))
    shade = np.uint8(rng.uniform(0.35, 1.0) * 255)
    rows, columns = [], []
    if kind == "underlined":
        rows = [(pad + h - thick, slice(pad // 2, -(pad // 2)))]
    elif kind == "boxed":
        m = pad // 3
        rows = [(m, slice(m, -m)), (page.shape[0] - m - thick, slice(m, -m))]
        columns = [(m, slice(m, -m)), (page.shape[1] - m - thick, slice(m, -m))]
    else:  # ruled: the digits' bottom is about 85% down the number image (its margin)
        step = int(h * (rng.uniform(1.0, 1.3) if kind == "ruled" else rng.uniform(0.33, 0.5)))
        base = pad + int(0.85 * h) + int(rng.integers(-thick, thick + 1))
        rows = [(y, slice(None)) for y in range(base % step, page.shape[0] - thick, step)]
        if kind == "squared":
            columns = [(x, slice(None)) for x in range(int(rng.integers(0, step)),
                                                       page.shape[1] - thick, step)]
    for y, span in rows:
        page[y:y + thick, span] = np.maximum(page[y:y + thick, span], shade)
    for x, span in columns:
        page[span, x:x + thick] = np.maximum(page[span, x:x + thick], shade)
    return polarity(page, k)


def marked(ds, k, rng, mark):
    """The digits in two groups, 100 px high, a hyphen or a dot between them (555-1234)."""
    cut = max(1, len(ds) // 2)
    groups = [resize(number_image(part, 0, rng), 100) for part in (ds[:cut], ds[cut:])]
    gap = Image.new("L", (50, 100))
    if mark == "hyphen":
        ImageDraw.Draw(gap).line([(12, 50), (38, 50)], fill=255, width=7)
    else:
        ImageDraw.Draw(gap).ellipse([18, 72, 32, 86], fill=255)
    return polarity(np.hstack([groups[0], np.asarray(gap), groups[1]]), k)


# More numbers: underlined, on ruled or squared paper, in a box; one 12-16 px high image;
# and numbers as forms and low-resolution datasets store them, one cell per digit joined
# edge to edge (a stretched digit's ink touches its neighbour's).
MORE_NUMBERS = {
    "underlined": lambda ds, k, rng: on_lines(number_image(ds, 0, rng), k, rng, "underlined"),
    "on ruled paper, sitting on a line": lambda ds, k, rng: on_lines(
        number_image(ds, 0, rng), k, rng, "ruled"),
    "on squared paper": lambda ds, k, rng: on_lines(number_image(ds, 0, rng), k, rng, "squared"),
    "in a box": lambda ds, k, rng: on_lines(number_image(ds, 0, rng), k, rng, "boxed"),
    "a hyphen between two groups": lambda ds, k, rng: marked(ds, k, rng, "hyphen"),
    "a dot between two groups": lambda ds, k, rng: marked(ds, k, rng, "dot"),
    "one image 12-16 px high": lambda ds, k, rng: resize(
        number_image(ds, k, rng), int(rng.integers(12, 17))),
    "8 px scans, 17 grey levels": lambda ds, k, rng: polarity(
        np.hstack([as_scanned(d, 8, levels=17) for d in ds]), k),
    "16 px scans": lambda ds, k, rng: polarity(np.hstack([as_scanned(d, 16) for d in ds]), k),
    "16 px cells, stretched to fill them": lambda ds, k, rng: polarity(
        np.hstack([stretched(d, 16) for d in ds]), k),
    "1-bit 16 px cells, stretched to fill them": lambda ds, k, rng: polarity(
        np.hstack([form_cell(d, 16) for d in ds]), k),
}

classifier = Classifier(args.model)


def read(path):
    """The digits `tinydigits classify` reads in a file ('' if it refuses the file)."""
    try:
        return read_image(path, classifier)["digits"]
    except InputError:
        return ""


def numbers_read(render, seed, tmp):
    """[(digits right, digits, exactly right)] for `args.numbers` numbers of 2-6 MNIST test
    digits, each drawn by `render(digits, k, rng)`, written to a file and read back."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(args.numbers):
        n = 2 + k % 5
        idx = rng.integers(0, len(x_test), n)
        path = Path(tmp) / f"n{k}.png"
        Image.fromarray(render(x_test[idx], k, rng)).save(path)
        truth, got = "".join(map(str, y_test[idx])), read(path)
        rows.append((max(0, n - edit_distance(truth, got)), n, got == truth))
    return rows


(_, _), (x_test, y_test) = load_mnist()
pick = np.linspace(0, len(x_test) - 1, args.digits).astype(int)
rng = np.random.default_rng(0)
reference = None
start = time.time()
print(f"{args.model}, {args.digits} MNIST test digits per variant, {args.numbers} numbers\n")
print("| variant | accuracy | same answer as original | plain resize accuracy |")
print("|---|---|---|---|")
with tempfile.TemporaryDirectory() as tmp:
    for title, render in VARIANTS.items():
        answers, plain = [], []
        for k, i in enumerate(pick):
            pixels, ext = render(x_test[i], k, rng)
            path = Path(tmp) / f"{k}.{ext}"
            (pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)).save(
                path, quality=85)
            answers.append(read(path))
            gray = Image.open(path).convert("L").resize((28, 28), Image.BILINEAR)
            plain.append(classifier.predict(np.asarray(gray, np.float32)[..., None] / 255)[0])
        answers, plain = np.array(answers), np.array(plain)
        truth = y_test[pick].astype(str)
        reference = answers if reference is None else reference
        print(f"| {title} | {(answers == truth).mean():.1%} | "
              f"{(answers == reference).mean():.1%} | {(plain == truth).mean():.1%} |",
              flush=True)

    print("\n| numbers (2-6 digits) | digits right | exactly right | numbers |")
    print("|---|---|---|---|")
    by_length = {}
    for row in numbers_read(number_image, 1, tmp):
        by_length.setdefault(row[1], []).append(row)
    every = [r for rows in by_length.values() for r in rows]
    for n, rows in [*sorted(by_length.items()), ("all", every)]:
        right, total = sum(r[0] for r in rows), sum(r[1] for r in rows)
        exact = np.mean([r[2] for r in rows])
        print(f"| {n} digits | {right / total:.1%} | {exact:.1%} | {len(rows)} |")

    print("\n| more numbers (2-6 digits) | digits right | exactly right | numbers |")
    print("|---|---|---|---|")
    for title, render in MORE_NUMBERS.items():
        right, total, exact = np.sum(numbers_read(render, 3, tmp), axis=0)
        print(f"| {title} | {right / total:.1%} | {exact / args.numbers:.1%} | {args.numbers} |",
              flush=True)

    # A 6-digit number, 100 px high, read end to end (decode, segment, classify) on one thread.
    digits = x_test[[11, 22, 33, 44, 55, 66]]
    path = Path(tmp) / "six.png"
    six = resize(number_image(digits, 1, np.random.default_rng(2)), 100)
    Image.fromarray(six).save(path)
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        read(path)
        times.append(time.perf_counter() - t0)
    ms = np.median(times) * 1000, np.percentile(times, 95) * 1000
    print(f"\n6-digit number image ({six.shape[1]}x{six.shape[0]} px): {ms[0]:.1f} ms median, "
          f"{ms[1]:.1f} ms p95, one thread")
print(f"benchmark ran in {(time.time() - start) / 60:.1f} min")
