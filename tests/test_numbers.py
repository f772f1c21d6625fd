"""Whole numbers: MNIST test digits composed into a row, written to a file, read back by
`prepare_number` and the shipped model through the real LiteRT interpreter.

A number must come back digit for digit, in order, with boxes in the file's own pixels; a
lone digit must come back as one box; a file with no number must be refused in one line.
"""

import numpy as np
import pytest
from PIL import Image, ImageDraw
from test_images import stroke

from tinydigits.augment_images import touching_pairs
from tinydigits.errors import InputError
from tinydigits.images import SURE, find_digits, load_image, prepare_number
from tinydigits.runtime import Classifier, model_path

WIDTH = 20  # px: a digit's width for the gaps, in MNIST's own pixels (its 20 px box)


@pytest.fixture(scope="module")
def classifier():
    return Classifier(model_path("image"))


@pytest.fixture(scope="module")
def test_digits(mnist):
    (_, _), (x_test, y_test) = mnist
    return x_test, y_test


def tight(d):
    rows, cols = np.flatnonzero((d > 0).any(1)), np.flatnonzero((d > 0).any(0))
    return d[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def compose(digits, rng, gaps=(-0.1, 0.4), jitter=0.15, height=None, dark_on_light=True):
    """uint8 image of the digits side by side, and each digit's ink box (x0, y0, x1, y1)."""
    parts = [tight(d) for d in digits]
    gap = rng.uniform(*gaps, len(parts) - 1) * WIDTH
    xs = np.concatenate([[0], np.cumsum([p.shape[1] for p in parts[:-1]] + gap)]) + 6
    ys = 14 - np.array([p.shape[0] for p in parts]) / 2 + rng.uniform(-jitter, jitter,
                                                                      len(parts)) * WIDTH
    xs, ys = np.round(xs).astype(int), np.round(ys - ys.min() + 6).astype(int)
    row = np.zeros((max(y + p.shape[0] for y, p in zip(ys, parts)) + 6,
                    max(x + p.shape[1] for x, p in zip(xs, parts)) + 6), np.uint8)
    boxes = []
    for x, y, p in zip(xs, ys, parts):
        spot = row[y:y + p.shape[0], x:x + p.shape[1]]
        spot[...] = np.maximum(spot, p)
        boxes.append((x, y, x + p.shape[1], y + p.shape[0]))
    scale = 1.0
    if height:
        scale = height / row.shape[0]
        size = (round(row.shape[1] * scale), height)
        row = np.asarray(Image.fromarray(row).resize(size, Image.Resampling.BICUBIC))
    return (255 - row if dark_on_light else row), np.array(boxes) * scale


def read(path, classifier):
    x, boxes = prepare_number(path, classifier.probabilities)
    return "".join(classifier.predict(d)[0] for d in x), boxes


def exact_share(test_digits, classifier, tmp_path, n, gaps, seed):
    x_test, y_test = test_digits
    rng = np.random.default_rng(seed)
    right, misses = 0, []
    for k in range(n):
        idx = rng.integers(0, len(x_test), 2 + k % 5)
        image, _ = compose(x_test[idx], rng, gaps=gaps, height=int(rng.integers(32, 301)),
                           dark_on_light=k % 2 == 0)
        Image.fromarray(image).save(tmp_path / "number.png")
        truth = "".join(map(str, y_test[idx]))
        got, _ = read(tmp_path / "number.png", classifier)
        right += got == truth
        misses += [] if got == truth else [f"{truth}->{got}"]
    return right / n, misses


def test_numbers_with_gaps_read_back_exactly(test_digits, classifier, tmp_path):
    # 2-6 digits, gaps 5-40% of a digit's width, +-15% vertical jitter, 32-300 px high,
    # both polarities. Measured with the shipped model: 95 of 100 (4 digits misread, a 5's
    # bar read as a 2); the model trained without touching pairs: 100 of 100, and 97.3%
    # against its 97.7% on 300 more (seed 13).
    share, misses = exact_share(test_digits, classifier, tmp_path, 100, (0.05, 0.4), seed=3)
    assert share >= 0.92, misses


def test_numbers_with_touching_digits_mostly_read_back(test_digits, classifier, tmp_path):
    # Gaps from -10% (overlapping, often touching) to 40%, as the benchmark: measured 97 of
    # 100 here, 95.5% of 200 there (the model trained without touching pairs: 93.0%).
    share, misses = exact_share(test_digits, classifier, tmp_path, 100, (-0.1, 0.4), seed=4)
    assert share >= 0.85, misses


@pytest.mark.parametrize("one_bit", [False, True], ids=["grey", "1-bit"])
def test_digits_in_cells_joined_edge_to_edge_are_read(one_bit, test_digits, classifier,
                                                      tmp_path):
    """Forms and small datasets keep each digit stretched to fill a 16 px cell; joined into a
    number, every digit touches its neighbours and the whole number is one piece of ink,
    16 px high. Two rules read these: a lone piece over twice as wide as it is tall is
    always cut (before, a "788" came back as one digit), and ink under 28 px tall is
    enlarged before it is cut. Measured on these 300 numbers of 3-6 digits, exact, grey /
    1-bit: 260 / 240, none as one digit; without the enlarging, 251 / 232."""
    x_test, y_test = test_digits
    rng = np.random.default_rng(7)
    one_box, exact = [], 0
    for k in range(300):
        idx = rng.integers(0, len(x_test), 3 + k % 4)
        cells = [np.asarray(Image.fromarray(tight(d)).resize((16, 16), Image.Resampling.BOX))
                 for d in x_test[idx]]
        row = np.hstack([(c > 127) * np.uint8(255) if one_bit else c for c in cells])
        Image.fromarray(255 - row if k % 2 else row).save(tmp_path / "cells.png")
        got, boxes = read(tmp_path / "cells.png", classifier)
        truth = "".join(map(str, y_test[idx]))
        one_box += [f"{truth}->{got}"] if len(boxes) == 1 else []
        exact += got == truth
    assert not one_box, one_box
    assert exact >= (236 if one_bit else 255), exact


def lined(image, kind, rng):
    """`image` (dark ink on light paper) underlined, on ruled or squared paper, or in a box:
    lines as dark as 35-100% of the ink, 1-3% of the image's height thick."""
    pad = image.shape[0] // 4
    page = Image.fromarray(np.pad(image, pad, constant_values=255))
    draw, (w, h) = ImageDraw.Draw(page), page.size
    width, shade = max(1, round(h * rng.uniform(0.01, 0.03))), int(rng.uniform(0, 165))
    if kind == "underlined":
        draw.line([(pad // 2, h - pad - 1), (w - 1 - pad // 2, h - pad - 1)], fill=shade,
                  width=width)
    elif kind == "boxed":
        draw.rectangle([pad // 3, pad // 3, w - 1 - pad // 3, h - 1 - pad // 3], outline=shade,
                       width=width)
    else:  # ruled: lines a quarter of the image apart; squared: columns too
        for y in range(int(rng.integers(2, pad)), h, pad):
            draw.line([(0, y), (w - 1, y)], fill=shade, width=width)
        for x in range(int(rng.integers(2, pad)), w, pad) if kind == "squared" else []:
            draw.line([(x, 0), (x, h - 1)], fill=shade, width=width)
    return page


@pytest.mark.parametrize("kind", ["underlined", "ruled", "squared", "boxed"])
def test_a_number_on_lines_is_read_without_them(kind, test_digits, classifier, tmp_path):
    """Lines are taken out before the number is cut (`images._without_lines`). Measured on
    these 60 numbers, exactly right: underlined 58, on ruled paper 57, on squared paper 54,
    in a box 58; before lines were taken out, 6, 0, 0 and 0 (the lines joined every digit
    into one piece), and before vertical lines were, 58, 57, 0 and 0."""
    x_test, y_test = test_digits
    rng = np.random.default_rng(11)
    right, misses = 0, []
    for k in range(60):
        idx = rng.integers(0, len(x_test), 2 + k % 5)
        image, _ = compose(x_test[idx], rng, gaps=(0.05, 0.4), height=int(rng.integers(40, 201)))
        lined(image, kind, rng).save(tmp_path / "lined.png")
        truth = "".join(map(str, y_test[idx]))
        got, _ = read(tmp_path / "lined.png", classifier)
        right += got == truth
        misses += [] if got == truth else [f"{truth}->{got}"]
    assert right >= {"squared": 50}.get(kind, 54), misses


@pytest.mark.parametrize("mark", ["hyphen", "dot"])
def test_a_hyphen_or_a_dot_between_digits_is_no_digit(mark, test_digits, classifier, tmp_path):
    """555-1234, 12.50: a piece far shorter than the row's digits is left out. Measured on
    these 60 numbers, exactly right: 55 with a hyphen, 55 with a dot (18 px across, a digit
    is 120 px high); before, 3 and 1. A slash is not handled: to the reader it is a 1."""
    x_test, y_test = test_digits
    rng = np.random.default_rng(12)
    right, misses = 0, []
    for k in range(60):
        idx = rng.integers(0, len(x_test), 4 + k % 3)
        cut = 2 + k % 2
        halves = [compose(x_test[part], rng, gaps=(0.1, 0.3), height=120)[0]
                  for part in (idx[:cut], idx[cut:])]
        gap = Image.new("L", (60, 120), 255)
        if mark == "hyphen":
            ImageDraw.Draw(gap).line([(15, 60), (45, 60)], fill=0, width=8)
        else:
            ImageDraw.Draw(gap).ellipse([21, 83, 39, 101], fill=0)
        Image.fromarray(np.hstack([halves[0], np.asarray(gap), halves[1]])).save(
            tmp_path / "marked.png")
        truth = "".join(map(str, y_test[idx]))
        got, _ = read(tmp_path / "marked.png", classifier)
        right += got == truth
        misses += [] if got == truth else [f"{truth}->{got}"]
    assert right >= 50, misses


def test_the_classifier_gives_two_touching_digits_no_class(test_digits, classifier):
    """A box of two touching digits is cut only where the classifier gives it less than SURE
    (`images._split`); the model learnt that from pairs of training digits (recipes/mnist.py).
    Here, pairs of MNIST *test* digits. Measured with the shipped int8_io model: 199 of 200
    below SURE, median top probability 0.10 (the model trained without pairs: 14 of 200,
    median 0.89)."""
    pairs = touching_pairs(test_digits[0], 200, seed=5)
    top = np.array([classifier.probabilities(p[..., None]).max() for p in pairs])
    assert np.mean(top < SURE) >= 0.9 and np.median(top) < 0.3, np.round(top, 2)


def test_a_lone_digit_is_one_box(test_digits, classifier, tmp_path):
    """Tight crops, the hardest case: nothing but the ink's own width says it is one digit."""
    x_test, y_test = test_digits
    ones, right = 0, 0
    picks = np.linspace(0, len(x_test) - 1, 200).astype(int)
    for k, i in enumerate(picks):
        image = tight(x_test[i])
        image = 255 - image if k % 2 else image
        Image.fromarray(image).resize((image.shape[1] * 3, image.shape[0] * 3)).save(
            tmp_path / "digit.png")
        got, boxes = read(tmp_path / "digit.png", classifier)
        ones += len(boxes) == 1
        right += got == str(y_test[i])
    # Measured: 199 of 200 one box (a wide 0 whose pieces do not overlap), 199 right.
    assert ones >= 0.98 * len(picks)
    assert right >= 0.97 * len(picks)


def test_boxes_are_in_the_files_own_pixels(test_digits, classifier, tmp_path):
    """A 2400 px wide photo is read at 1000 px; its boxes still come back in its pixels."""
    x_test, y_test = test_digits
    rng = np.random.default_rng(5)
    idx = [3, 2, 1, 18]  # 0 1 2 3
    image, truth_boxes = compose(x_test[idx], rng, gaps=(0.3, 0.4), height=600)
    assert image.shape[1] > 1000
    Image.fromarray(image).save(tmp_path / "big.png")
    got, boxes = read(tmp_path / "big.png", classifier)
    assert got == "".join(map(str, y_test[idx]))
    # Measured: every edge within 4 px (the ink's faint edge is cut at 25% of full ink).
    assert np.abs(np.array(boxes) - truth_boxes).max() <= 0.02 * image.shape[0]


def test_a_digit_in_pieces_is_one_box(test_digits, classifier, tmp_path):
    """A 5's bar lifted off, a 4 in two strokes: a gap cut across the digit."""
    x_test, y_test = test_digits
    one, seen = 0, 0
    for label in (4, 5, 7):
        for i in np.flatnonzero(y_test == label)[:20]:
            d = tight(x_test[i]).copy()
            cut = d.shape[0] // 3
            d[cut:cut + 2] = 0  # two blank rows across the upper third
            Image.fromarray(255 - np.pad(d, 4)).resize(((d.shape[1] + 8) * 4,
                                                        (d.shape[0] + 8) * 4)).save(
                tmp_path / "pieces.png")
            _, boxes = read(tmp_path / "pieces.png", classifier)
            one += len(boxes) == 1
            seen += 1
    assert one >= 0.95 * seen  # Measured: 60 of 60


def broken(d, k):
    """A thin pen that skips: test_images' fine pen (300 px high, strokes eroded by 7 px a
    side), which breaks the thin parts of each stroke off, as a 1-bit scan of faint ink does;
    every other one dark on light."""
    thin = stroke(tight(d), 300, -7)
    return 255 - thin if k % 2 else thin


def test_a_digit_with_broken_strokes_is_read_as_one(test_digits, classifier, tmp_path):
    """Pieces side by side that the classifier reads better as one digit are one digit."""
    x_test, y_test = test_digits
    right, pieces, misses = 0, 0, []
    for k, i in enumerate(range(0, 2000, 10)):  # 200 digits
        Image.fromarray(broken(x_test[i], k)).save(tmp_path / "broken.png")
        ink = load_image(tmp_path / "broken.png")
        pieces += len(find_digits(ink)) > 1  # apart, without a classifier to judge
        got, _ = read(tmp_path / "broken.png", classifier)
        right += got == str(y_test[i])
        misses += [] if got == str(y_test[i]) else [f"{i}: {y_test[i]}->{got}"]
    # Measured with the shipped model: 196 of 200 right (the one before it: 197); read as
    # the pieces fall (no rejoining), the model before that: 188. 9 fall apart even when judged by
    # shape alone (no classifier).
    assert pieces >= 5
    assert right >= 0.965 * 200, misses


def test_find_digits_gives_boxes_left_to_right(test_digits):
    x_test, _ = test_digits
    image, truth_boxes = compose(x_test[[10, 20, 30, 40, 50]], np.random.default_rng(6),
                                 gaps=(0.2, 0.4), dark_on_light=False)
    boxes = find_digits(image / 255)
    assert len(boxes) == 5
    assert [b[0] for b in boxes] == sorted(b[0] for b in boxes)
    assert all(x0 < x1 and y0 < y1 for x0, y0, x1, y1 in boxes)
    assert np.abs(np.array(boxes) - truth_boxes).max() <= 2


def test_find_digits_without_ink_raises_value_error():
    with pytest.raises(ValueError, match="no digit found"):
        find_digits(np.zeros((40, 100), np.float32))


def specks(path):
    """A sheet with 30 dust specks of 2x2 px, nothing else."""
    rng = np.random.default_rng(0)
    page = np.full((300, 300), 225, np.uint8) + rng.integers(0, 8, (300, 300)).astype(np.uint8)
    for r, c in rng.integers(0, 298, (30, 2)):
        page[r:r + 2, c:c + 2] = 40
    Image.fromarray(page).save(path)


def ruled_page(path):
    """A page of ruled paper with nothing written on it."""
    page = Image.new("L", (400, 300), 235)
    for y in range(30, 300, 60):
        ImageDraw.Draw(page).line([(0, y), (399, y)], fill=120, width=2)
    page.save(path)


REFUSED = {
    "no digit found (blank image)": lambda p: Image.new("L", (300, 200), 240).save(p),
    "no digit found (only specks)": specks,
    "no digit found (only lines)": ruled_page,
    "image is 1x1 px; need at least 8x8": lambda p: Image.new("L", (1, 1)).save(p),
}


@pytest.mark.parametrize("reason", list(REFUSED))
def test_a_file_without_a_number_is_refused_in_one_line(reason, tmp_path):
    path = tmp_path / "page.png"
    REFUSED[reason](path)
    with pytest.raises(InputError) as caught:
        prepare_number(path)
    assert str(caught.value) == f"{path}: {reason}"


def test_a_jpeg_named_png_is_read_by_its_content(test_digits, classifier, tmp_path):
    x_test, y_test = test_digits
    idx = [0, 1, 2]
    image, _ = compose(x_test[idx], np.random.default_rng(7), gaps=(0.2, 0.3), height=120)
    Image.fromarray(image).save(tmp_path / "number.png", format="JPEG", quality=80)
    assert (tmp_path / "number.png").read_bytes()[:3] == b"\xff\xd8\xff"  # really a JPEG
    assert load_image(tmp_path / "number.png").shape[0] == 120
    got, _ = read(tmp_path / "number.png", classifier)
    assert got == "".join(map(str, y_test[idx]))
