"""tinydigits.images on real MNIST digits written as the files users send, and on bad files.

A digit that went through a file (any polarity, size, position, colour model, alpha, JPEG)
must come back as `mnist_style` of the original digit; every bad file must be refused with
an `InputError` naming the file and the reason.
"""

import io
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tinydigits.datasets import load_mnist
from tinydigits.errors import InputError
from tinydigits.images import _components, _max_filter, load_image, mnist_style, preprocess_image

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "images"
N_DIGITS = 200  # spread over the whole test set: every class, many writers


@pytest.fixture(scope="module")
def digits():
    (_, _), (x_test, _) = load_mnist()
    return x_test[np.linspace(0, len(x_test) - 1, N_DIGITS).astype(int)]


@pytest.fixture(scope="module")
def references(digits):
    return [mnist_style(d / 255) for d in digits]


def similarity(out, ref):
    """(correlation, mean abs difference) at the best of the 3x3 one-pixel shifts.

    MNIST rounds the centre of mass to a whole pixel (its offsets are uniform within
    +-0.5 px), so a resampled copy whose centre moves by 0.1 px may land one pixel over:
    a shift of one pixel is forgiven, nothing else.
    """
    moved = np.stack([np.roll(out, (dy, dx), axis=(0, 1)).ravel()
                      for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    corr = np.corrcoef(moved, ref.ravel())[-1, :-1]
    best = corr.argmax()
    return corr[best], float(np.abs(moved[best] - ref.ravel()).mean())


# ----------------------------------------------------------------------- variants


def up(digit, size):
    """The 28x28 digit resampled to size x size (a higher-resolution drawing of it)."""
    return np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC))


def dark_on_light(ink):
    return Image.fromarray(255 - ink)


def offcentre(digit, i):
    canvas = np.zeros((100, 100), np.uint8)
    top, left = 3 + 7 * i % 66, 66 - 5 * i % 64  # all over the canvas, never touching it
    canvas[top : top + 28, left : left + 28] = digit
    return Image.fromarray(canvas)


def rgb(digit):
    t = up(digit, 64)[..., None] / 255
    paper, ink = np.array([250, 240, 200]), np.array([20, 40, 140])  # blue pen, cream paper
    return Image.fromarray((paper * (1 - t) + ink * t).round().astype(np.uint8))


def rgba(digit, stroke):
    pixels = np.zeros((64, 64, 4), np.uint8)
    pixels[..., :3], pixels[..., 3] = stroke, up(digit, 64)
    return Image.fromarray(pixels, "RGBA")


def photo(digit, i):
    """300 px phone photo: light falling off, sensor noise, dust specks away from the digit."""
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:1:300j, 0:1:300j]
    light = 1 - 0.3 * (0.6 * xx + 0.4 * yy) - 0.15 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    ink = np.pad(up(digit, 240) / 255, 30)
    gray = (0.9 * (1 - ink) + 0.15 * ink) * light + rng.normal(0, 0.02, ink.shape)
    for r, c in ((5, 8), (280, 20), (150, 288)):  # three 2x2 specks in the margin
        gray[r : r + 2, c : c + 2] = 0.2
    return Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8))


def gray16(digit):
    return Image.fromarray((255 - up(digit, 64)).astype(np.uint16) * 257)


def exif_rotated(digit):
    """Stored sideways with EXIF orientation 6 ("rotate 90 degrees clockwise to view")."""
    img = dark_on_light(up(digit, 64)).rotate(90)  # counter-clockwise
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(buf, format="JPEG", quality=95, exif=exif)
    return Image.open(buf)


# name: (make(digit, i) -> PIL image, format, every n-th digit, most median mean-abs-diff,
# correlation that 98% of digits must reach). The brief's variants use all 200 digits, the
# extra formats every second one (test time). Measured (median diff / 2nd-percentile corr /
# worst corr): inverted and off-centre .0036/.996/.991; upscaled 32 .033/.892/.869,
# 64 .028/.898/.856, 100 .026/.906/.886, 300 .025/.921/.898; rgb, rgba black and white
# strokes, gray16 .028/.898/.856; jpeg .026/.904/.862; photo .025/.918/.885; palette gif
# .027/.898/.859; exif .029/.898/.863; webp .029/.897/.856. Without the one-pixel allowance
# the 2nd percentile is .72-.78 for the resampled variants (whole-pixel centring).
VARIANTS = {
    "inverted_png": (lambda d, i: dark_on_light(d), "PNG", 1, 0.01, 0.98),
    "offcentre_100px": (offcentre, "PNG", 1, 0.01, 0.98),
    "upscaled_32px": (lambda d, i: dark_on_light(up(d, 32)), "PNG", 1, 0.045, 0.85),
    "upscaled_64px": (lambda d, i: dark_on_light(up(d, 64)), "PNG", 1, 0.04, 0.85),
    "upscaled_100px": (lambda d, i: dark_on_light(up(d, 100)), "PNG", 1, 0.04, 0.85),
    "upscaled_300px": (lambda d, i: dark_on_light(up(d, 300)), "PNG", 1, 0.04, 0.85),
    "rgb": (lambda d, i: rgb(d), "PNG", 1, 0.04, 0.85),
    "rgba_black_strokes": (lambda d, i: rgba(d, 0), "PNG", 1, 0.04, 0.85),
    "rgba_white_strokes": (lambda d, i: rgba(d, 255), "PNG", 1, 0.04, 0.85),
    "jpeg_100px": (lambda d, i: dark_on_light(up(d, 100)), "JPEG", 1, 0.04, 0.85),
    "photo_300px": (photo, "JPEG", 2, 0.04, 0.85),
    "gray16": (lambda d, i: gray16(d), "PNG", 2, 0.04, 0.85),
    "palette_gif": (lambda d, i: dark_on_light(up(d, 64)).quantize(16), "GIF", 2, 0.04, 0.85),
    "exif_rotated": (lambda d, i: exif_rotated(d), "JPEG", 2, 0.04, 0.85),
    "webp": (lambda d, i: dark_on_light(up(d, 64)), "WEBP", 2, 0.04, 0.85),
}
WORST_CORR = 0.75  # no single digit below this (measured worst: 0.856): a polarity or crop bug


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_digit_through_a_file_comes_back_as_mnist(variant, digits, references, tmp_path):
    make, fmt, every, max_diff, min_corr = VARIANTS[variant]
    path = tmp_path / f"digit.{fmt.lower()}"
    corrs, diffs = [], []
    for i in range(0, len(digits), every):
        digit = digits[i]
        img = make(digit, i)
        img.save(path, format=fmt, exif=img.getexif())  # keeps exif_rotated's orientation
        x = preprocess_image(path)
        assert x.shape == (28, 28, 1) and x.dtype == np.float32
        assert 0 <= x.min() and x.max() <= 1
        corr, diff = similarity(x[..., 0], references[i])
        corrs.append(corr)
        diffs.append(diff)
    assert np.median(diffs) < max_diff, f"median mean-abs-diff {np.median(diffs):.4f}"
    assert np.mean(np.array(corrs) >= min_corr) >= 0.98, (
        f"2nd percentile correlation {np.percentile(corrs, 2):.3f}"
    )
    assert min(corrs) >= WORST_CORR, f"digit {int(np.argmin(corrs)) * every}: {min(corrs):.3f}"


def test_load_image_puts_paper_at_zero_and_ink_at_one(digits, tmp_path):
    """Under light falling off by 30% and sensor noise, the paper comes out 0 and the ink 1."""
    photo(digits[3], 3).save(tmp_path / "photo.jpg", quality=90)
    gray = load_image(tmp_path / "photo.jpg")
    assert gray.shape == (300, 300) and gray.dtype == np.float32
    ink = np.pad(up(digits[3], 240), 30)  # where the digit was drawn
    # Measured on three digits: paper median 0, mean 1e-4; ink 0.97; correlation 0.99.
    assert np.median(gray[ink == 0]) == 0 and gray[ink == 0].mean() < 0.01
    assert gray[ink > 200].mean() > 0.9
    assert np.corrcoef(gray.ravel(), ink.ravel())[0, 1] > 0.95


def test_mnist_digits_are_already_mnist_style(digits):
    # Measured: 200/200 identical to 1e-4 (mean abs diff 0.0000, worst 0.0001).
    diffs = [np.abs(mnist_style(d / 255) - d / 255).mean() for d in digits]
    assert np.max(diffs) < 0.002


def test_mnist_style_output_is_what_mnist_looks_like(digits):
    x = np.stack([mnist_style(up(d, 100) / 255) for d in digits[:50]])
    assert x.shape == (50, 28, 28) and x.dtype == np.float32
    ys, xs = np.mgrid[:28, :28]
    mass = x.sum(axis=(1, 2))
    assert np.all(np.abs((x * ys).sum(axis=(1, 2)) / mass - 14) <= 0.5)  # centre of mass
    assert np.all(np.abs((x * xs).sum(axis=(1, 2)) / mass - 14) <= 0.5)
    assert all(19 <= longer_side(digit) <= 21 for digit in x)


def longer_side(x, level=0.05):
    rows, cols = np.flatnonzero((x > level).any(1)), np.flatnonzero((x > level).any(0))
    return max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1


def test_mnist_style_without_ink_raises_value_error():
    with pytest.raises(ValueError, match="no digit found"):
        mnist_style(np.zeros((28, 28), np.float32))


def stroke_width(mask):
    """2 * area / perimeter: the mean width of long strokes (as images.py measures it)."""
    edges = sum(np.count_nonzero(np.diff(np.pad(mask, 1).astype(np.int8), axis=a)) for a in (0, 1))
    return 2 * mask.sum() / edges


@pytest.mark.parametrize("size", [200, 600, 2500])
def test_thin_pen_strokes_are_thickened_to_mnist_width(size, digits, tmp_path):
    mnist_widths = [stroke_width(d > 127) for d in digits]
    low, high = np.percentile(mnist_widths, [5, 95])  # ~1.2 and ~2.9 px
    img = Image.new("L", (size, size), 235)
    corners = [(0.3, 0.2), (0.7, 0.2), (0.45, 0.85)]  # a 7 drawn with a 1 px pen
    ImageDraw.Draw(img).line([(x * size, y * size) for x, y in corners], fill=30, width=1)
    img.save(tmp_path / "seven.png")
    x = preprocess_image(tmp_path / "seven.png")[..., 0]
    # Measured: 1.6-1.8 px at every size (MNIST's median is 1.84); without thickening the
    # line fades to a 0.1-0.3 px smear.
    assert low <= stroke_width(x > 0.5) <= high


# ------------------------------------------- sources without MNIST's margin (issue 12)


def tight(digit):
    """The digit cropped to its ink: the ink touches every edge."""
    rows, cols = np.flatnonzero((digit > 0).any(1)), np.flatnonzero((digit > 0).any(0))
    return digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def fit(ink, height, how=Image.Resampling.BICUBIC):
    h, w = ink.shape
    return np.asarray(Image.fromarray(ink).resize((max(1, round(w * height / h)), height), how))


def scan(digit, side, i, upscale=True):
    """A side x side px scan of the tight digit, upscaled to 40-280 px, blocky or blurry
    (or as scanned, `upscale=False`)."""
    t = tight(digit)
    small = Image.fromarray(fit(t, side, Image.Resampling.BOX)) if t.shape[0] >= t.shape[1] \
        else Image.fromarray(fit(t.T, side, Image.Resampling.BOX).T)
    frame = Image.new("L", (side, side))
    frame.paste(small, ((side - small.width) // 2, (side - small.height) // 2))
    if not upscale:
        return np.asarray(frame)
    how = Image.Resampling.NEAREST if i % 4 < 2 else Image.Resampling.BICUBIC
    return np.asarray(frame.resize((40 + 60 * (i % 5),) * 2, how))


def grey_levels(pixels, levels):
    """Pixels rounded to `levels` grey levels (a form reader's 8x8 grid counts 0-16)."""
    return (np.round(pixels / 255 * (levels - 1)) * 255 / (levels - 1)).astype(np.uint8)


def stroke(digit, size, change):
    """size px, strokes widened (change > 0, a marker) or narrowed (a fine pen) by change px."""
    ink = fit(digit, size).astype(np.float32) / 255
    if change > 0:
        return (_max_filter(ink, 2 * change + 1) * 255).astype(np.uint8)
    return ((1 - _max_filter(1 - (ink > 0.5), 2 * -change + 1)) * 255).astype(np.uint8)


def on_table(digit, i):
    """A white sheet, all in view, on a dark table, in light falling off to one side."""
    rng = np.random.default_rng(i)
    gray = np.full((300, 300), 60.0) + rng.normal(0, 8, (300, 300))
    y, x = 8 + 7 * i % 50, 55 - 5 * i % 50
    gray[y : y + 232, x : x + 232] = 235
    gray[y + 26 : y + 206, x + 26 : x + 206] = 235 - 0.8 * up(digit, 180)
    return np.clip(gray * np.linspace(0.8, 1.0, 300)[None, :], 0, 255).astype(np.uint8)


def form_cell(digit, side=16):
    """A form reader's cell: the digit's box stretched to fill side x side px, 1-bit."""
    cell = Image.fromarray(tight(digit)).resize((side, side), Image.Resampling.BOX)
    return ((np.asarray(cell) > 127) * 255).astype(np.uint8)


def both(make):
    """Every other digit with the polarity the other way round."""
    return lambda d, i: Image.fromarray(make(d, i) if i % 2 else 255 - make(d, i))


# name: (make(digit, i) -> PIL image, format, share of 100 digits that must get the answer
# the shipped model gives the MNIST digit itself). Measured with the shipped model (trained
# with augment_images, stretched cells and touching pairs): tight 100, 16 px 99, 8 px 99,
# 12 px as scanned 100, 8 px as scanned 100, 1-bit 97, form cell 95, marker 99, fine pen 97,
# table 100 of 100 (before issue 12's preparation and training, tight crops: ~63%; before
# the noise was measured within a class, 12 px as scanned 90 and 8 px 37: refused as blank;
# the model before stretched cells in training, form cell 92: a stretched 1 read as an 8).
FORMS = {
    "tight_crop_64px": (both(lambda d, i: fit(tight(d), 64)), "PNG", 0.96),
    "scan_16px_upscaled": (both(lambda d, i: scan(d, 16, i)), "PNG", 0.96),
    "scan_8px_upscaled": (both(lambda d, i: scan(d, 8, i)), "PNG", 0.93),
    "scan_12px_as_scanned": (both(lambda d, i: scan(d, 12, i, upscale=False)), "PNG", 0.95),
    "scan_8px_as_scanned_17_levels": (
        both(lambda d, i: grey_levels(scan(d, 8, i, upscale=False), 17)), "PNG", 0.93),
    "one_bit_16px": (lambda d, i: Image.fromarray(scan(d, 16, 0) > 127).convert("1")
                     if i % 2 else Image.fromarray(scan(d, 16, 0) <= 127).convert("1"),
                     "PNG", 0.93),
    "form_cell_16px_stretched": (both(lambda d, i: form_cell(d)), "PNG", 0.93),
    "marker_100px": (both(lambda d, i: stroke(d, 100, 3)), "PNG", 0.94),
    "fine_pen_tight_300px": (both(lambda d, i: stroke(tight(d), 300, -7)), "PNG", 0.94),
    "sheet_on_a_dark_table": (lambda d, i: Image.fromarray(on_table(d, i)), "JPEG", 0.96),
}


@pytest.fixture(scope="module")
def classifier():
    from tinydigits.runtime import Classifier, model_path

    return Classifier(model_path("image"))


@pytest.mark.parametrize("form", list(FORMS))
def test_a_digit_from_another_source_keeps_its_answer(form, digits, classifier, tmp_path):
    """The real interpreter's answer on the file is its answer on the MNIST digit itself."""
    make, fmt, share = FORMS[form]
    path = tmp_path / f"digit.{fmt.lower()}"
    same, misses = 0, []
    for i in range(0, len(digits), 2):  # 100 digits
        make(digits[i], i).save(path, format=fmt, quality=90)
        want = classifier.predict(mnist_style(digits[i] / 255)[..., None])[0]
        got = classifier.predict(preprocess_image(path))[0]
        same += got == want
        misses += [] if got == want else [f"{i}: {want}->{got}"]
    assert same >= share * 100, misses


# ------------------------------------------------------------------------- bad inputs


def png_bytes(width, height):
    """A PNG header declaring width x height grey pixels (IHDR only, then one empty IDAT)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def half_a_png(path, digit):
    buf = io.BytesIO()
    dark_on_light(up(digit, 300)).save(buf, format="PNG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


BAD_INPUTS = {
    "empty file": lambda p, d: p.write_bytes(b""),
    "not an image (": lambda p, d: p.write_text("7\n"),
    "truncated or corrupt image": half_a_png,
    "image is 1x1 px; need at least 8x8": lambda p, d: Image.new("L", (1, 1)).save(p, "PNG"),
    "is a directory": lambda p, d: p.mkdir(),
    "no such file": lambda p, d: None,
    "no digit found (blank image)": lambda p, d: Image.new("RGB", (64, 64), "white").save(p, "PNG"),
    "image is too large": lambda p, d: p.write_bytes(png_bytes(100_000, 100_000)),
    "image is 9000x5000 px = 45 megapixels, too large": (
        lambda p, d: p.write_bytes(png_bytes(9000, 5000))),
}


@pytest.mark.parametrize("reason", list(BAD_INPUTS))
def test_bad_input_is_refused_with_file_and_reason(reason, digits, tmp_path):
    path = tmp_path / "input.png"
    BAD_INPUTS[reason](path, digits[0])
    start = time.perf_counter()
    with pytest.raises(InputError) as caught:
        preprocess_image(path)
    assert time.perf_counter() - start < 1  # refused from the header, nothing allocated
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


def test_blank_paper_photo_is_refused(tmp_path):
    """Uneven light and sensor noise are not a digit."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:1:300j, 0:1:300j]
    gray = 0.9 - 0.3 * xx * yy + rng.normal(0, 0.02, xx.shape)
    Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8)).save(tmp_path / "p.jpg")
    with pytest.raises(InputError, match="no digit found"):
        load_image(tmp_path / "p.jpg")


@pytest.mark.parametrize("side", [8, 12, 16, 32, 64])
def test_a_small_blank_noisy_page_is_refused(side, tmp_path):
    """Tiny scans are read (the noise is measured within each class, not across strokes'
    edges), and a tiny blank page in noise still is not a digit."""
    rng = np.random.default_rng(side)
    for trial in range(12):
        yy, xx = np.mgrid[0:1:side * 1j, 0:1:side * 1j]
        noise = rng.normal(0, (0.01, 0.02, 0.04)[trial % 3], xx.shape)
        gray = 0.9 - 0.3 * xx * yy * (trial % 2) + noise
        path = tmp_path / f"blank.{'jpg' if trial % 4 < 2 else 'png'}"
        Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8)).save(path, quality=75)
        with pytest.raises(InputError, match="no digit found"):
            load_image(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_corrupted_files_give_an_array_or_input_error(fmt, digits, tmp_path):
    """Flipped bytes and cut-offs anywhere: never a traceback of another type."""
    buf = io.BytesIO()
    dark_on_light(up(digits[1], 64)).save(buf, format=fmt)
    data = buf.getvalue()
    rng = np.random.default_rng(0)
    path = tmp_path / f"bad.{fmt.lower()}"
    for trial in range(40):
        bad = bytearray(data[: rng.integers(1, len(data))] if trial % 2 else data)
        for pos in rng.integers(0, len(bad), 3):
            bad[pos] = rng.integers(0, 256)
        path.write_bytes(bytes(bad))
        try:
            x = preprocess_image(path)
        except InputError as e:
            assert str(e).startswith(f"{path}: ")
        else:
            assert x.shape == (28, 28, 1) and np.isfinite(x).all()


# ------------------------------------------------------------------- sample images


def test_sample_images_preprocess_to_centred_digits():
    files = sorted(SAMPLES.iterdir())
    assert len(files) >= 12
    assert sum(f.stat().st_size for f in files) < 200_000
    ys, xs = np.mgrid[:28, :28]
    for f in files:
        assert f.name[0].isdigit() and f.name[1] == "_", f.name  # the label, then "_"
        assert f.stat().st_size < 30_000, f.name
        x = preprocess_image(f)
        assert x.shape == (28, 28, 1) and x.dtype == np.float32, f.name
        x = x[..., 0]
        centre = ((x * ys).sum() / x.sum(), (x * xs).sum() / x.sum())
        assert np.allclose(centre, 14, atol=0.6), (f.name, centre)
        assert 18 <= longer_side(x) <= 21, f.name


# ------------------------------------------------------------------- device boundary


def test_import_does_not_pull_in_tensorflow_or_keras():
    code = ("import sys, tinydigits.images; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _flood_fill_labels(mask):
    """8-connected labels by breadth-first flood fill, numbered in row-major order of each
    piece's first pixel: the plain method `_components` must agree with."""
    labels, n = np.zeros(mask.shape, int), 0
    for y, x in zip(*np.nonzero(mask)):
        if labels[y, x]:
            continue
        n += 1
        labels[y, x], todo = n, [(y, x)]
        while todo:
            cy, cx = todo.pop()
            for ny in range(max(0, cy - 1), min(mask.shape[0], cy + 2)):
                for nx in range(max(0, cx - 1), min(mask.shape[1], cx + 2)):
                    if mask[ny, nx] and not labels[ny, nx]:
                        labels[ny, nx] = n
                        todo.append((ny, nx))
    return labels, n


def test_components_agree_with_a_flood_fill():
    """Random masks from sparse specks to nearly full, thin diagonals (pieces that touch only
    at corners), a spiral (one long piece) and MNIST digits' ink."""
    rng = np.random.default_rng(0)
    masks = [rng.random(rng.integers(1, 30, 2)) < rng.uniform(0.05, 0.8) for _ in range(300)]
    masks += [np.eye(12, dtype=bool) | np.eye(12, dtype=bool)[::-1], np.zeros((5, 7), bool)]
    spiral = np.zeros((21, 21), bool)
    for k in range(0, 10, 2):
        spiral[k, k:21 - k] = spiral[k:21 - k, 20 - k] = spiral[20 - k, k + 2:21 - k] = True
        spiral[k + 2:21 - k, k] = True
    (_, _), (x_test, _) = load_mnist()
    masks += [spiral] + [d > 100 for d in x_test[:50]]
    for mask in masks:
        labels, n = _components(mask)
        want, m = _flood_fill_labels(mask)
        assert n == m and np.array_equal(labels, want), mask.astype(int)
