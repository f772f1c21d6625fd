"""Training side: MNIST digits re-drawn as other sources make them, NumPy + Pillow.

`degrade` turns a 28x28 MNIST digit into a page such as a user might send: slanted or
elastically bent, a thicker marker or a thinner pen, tightly framed (the ink touches the
edge) or stretched to fill a square cell, a low-resolution scan (8-16 px) upscaled and
blurred, 1-bit, either polarity, noisy.
`prepared` then runs the device's own preparation (`images.page_to_ink`, `mnist_style`),
so the model trains on exactly what the Pi will feed it.
"""

import multiprocessing

import numpy as np
from PIL import Image, ImageFilter

from tinydigits.images import _max_filter, mnist_style, page_to_ink

WORK = 56  # px: strokes are thickened / thinned at 2x MNIST, where 1 px is half a stroke
SLANT = 0.35  # largest shear (x shift per unit of height): ~19 degrees of slant
ELASTIC = 2.5  # px at WORK: largest displacement of the smooth random warp
SCAN_SIDES = (8, 16)  # px: low-resolution scans (the digit's longer side), then upscaled
SHOW_SIDES = (32, 160)  # px: what a low-resolution scan is upscaled to
BLUR = (0.5, 2.0)  # Gaussian radius in px at the shown size
NOISE = 0.04  # largest sensor-noise sigma (grey levels / 255: ~10)
STRETCH = 0.15  # share stretched to fill a square cell, as some form readers store digits


def degrade(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (28, 28) MNIST digit, ink bright -> float32 page (H, W) in [0, 1], any polarity."""
    d = np.asarray(Image.fromarray(digit).resize((WORK, WORK), Image.Resampling.BICUBIC),
                   np.float32) / 255
    if rng.random() < 0.5:
        d = _slant(d, rng.uniform(-SLANT, SLANT))
    if rng.random() < 0.3:
        d = _elastic(d, rng)
    r = rng.random()
    if r < 0.25:  # a marker: 1-2 px wider at WORK on each side
        d = _max_filter(d, 3 if rng.random() < 0.6 else 5)
    elif r < 0.45 and (d > 0.5).sum() > 150:  # a finer pen, when the stroke survives it
        d = 1 - _max_filter(1 - d, 3)
    d = np.clip(d, 0, 1)
    if rng.random() < STRETCH:  # a form's cell: the digit's box stretched to fill a square
        rows, cols = np.flatnonzero((d > 0.3).any(1)), np.flatnonzero((d > 0.3).any(0))
        if len(rows) > 4 and len(cols) > 2:
            box = d[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            side = max(box.shape)
            cell = Image.fromarray(box.astype(np.float32), "F")
            d = np.asarray(cell.resize((side, side), Image.Resampling.BILINEAR))
    elif rng.random() < 0.5:  # tight framing: the ink's box, sometimes a pixel inside it
        rows, cols = np.flatnonzero((d > 0.3).any(1)), np.flatnonzero((d > 0.3).any(0))
        if len(rows) > 4 and len(cols) > 2:
            cut = int(rng.integers(0, 2))
            d = d[rows[0] + cut : rows[-1] + 1 - cut, cols[0] + cut : cols[-1] + 1 - cut]
    r = rng.random()
    if r < 0.35:  # a low-resolution scan, upscaled (nearest: blocky, bicubic: blurry)
        d = _rescale(d, rng.integers(*SCAN_SIDES, endpoint=True), Image.Resampling.BOX)
        if rng.random() < 0.5:
            d = (d > 0.5).astype(np.float32)  # 1-bit scan
        how = Image.Resampling.NEAREST if rng.random() < 0.4 else Image.Resampling.BICUBIC
        d = _rescale(d, rng.integers(*SHOW_SIDES), how)
    elif r < 0.5:
        d = (d > 0.5).astype(np.float32)  # 1-bit at full resolution
    if rng.random() < 0.25:
        img = Image.fromarray((np.clip(d, 0, 1) * 255).astype(np.uint8))  # blur needs 8-bit
        d = np.asarray(img.filter(ImageFilter.GaussianBlur(rng.uniform(*BLUR))), np.float32) / 255
    d = np.clip(d, 0, 1)
    paper, ink = rng.uniform(0.6, 1.0), rng.uniform(0.0, 0.35)
    if rng.random() < 0.5:  # light ink on dark paper
        paper, ink = 1 - paper, 1 - ink
    page = paper + (ink - paper) * d
    if rng.random() < 0.3:
        page = page + rng.normal(0, rng.uniform(0, NOISE), page.shape)
    return np.clip(page, 0, 1).astype(np.float32)


def prepared(page: np.ndarray):
    """The device's preparation of a page: float32 (28, 28), or None where it refuses."""
    ink = page_to_ink(page)
    if ink is None:
        return None
    try:
        return mnist_style(ink)
    except ValueError:
        return None


def _slant(d, shear):
    h, w = d.shape
    pad = int(abs(shear) * h / 2) + 1
    img = Image.fromarray(np.pad(d, ((0, 0), (pad, pad))), "F")
    # Output x = input x + shear * (y - h/2): the top leans right for positive shear.
    return np.asarray(img.transform(img.size, Image.Transform.AFFINE,
                                    (1, shear, -shear * h / 2, 0, 1, 0),
                                    Image.Resampling.BILINEAR))


def _elastic(d, rng):
    """A smooth random warp: 4x4 random displacements upsampled, bilinear resampling."""
    h, w = d.shape
    field = [np.asarray(Image.fromarray(rng.uniform(-ELASTIC, ELASTIC, (4, 4)).astype(np.float32),
                                        "F").resize((w, h), Image.Resampling.BICUBIC))
             for _ in range(2)]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    y, x = np.clip(yy + field[0], 0, h - 1), np.clip(xx + field[1], 0, w - 1)
    y0, x0 = np.minimum(y.astype(int), h - 2), np.minimum(x.astype(int), w - 2)
    fy, fx = y - y0, x - x0
    return ((1 - fy) * ((1 - fx) * d[y0, x0] + fx * d[y0, x0 + 1])
            + fy * ((1 - fx) * d[y0 + 1, x0] + fx * d[y0 + 1, x0 + 1]))


def _rescale(d, longer, how):
    h, w = d.shape
    s = longer / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(d.astype(np.float32), "F").resize(size, how))


def _degraded_chunk(args):
    digits, seed = args
    rng = np.random.default_rng(seed)
    out = np.empty((len(digits), 28, 28), np.float32)
    for i, digit in enumerate(digits):
        x = prepared(degrade(digit, rng))
        out[i] = x if x is not None else digit / 255  # refused (rare): keep the original
    return out


def degraded_copies(digits: np.ndarray, seed: int, processes: int = 2) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28): one degraded, device-prepared copy of each."""
    chunks = np.array_split(digits, max(1, len(digits) // 2000))
    jobs = [(c, seed * 100_003 + i) for i, c in enumerate(chunks)]
    if processes > 1:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            return np.concatenate(pool.map(_degraded_chunk, jobs))
    return np.concatenate([_degraded_chunk(j) for j in jobs])


PAIR_GAP = (-0.2, 0.05)  # of the left digit's width: overlapping to just touching
PAIR_JITTER = 0.15  # of the row's height: one digit sits a little higher than the other


def touching_pair(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two uint8 (28, 28) MNIST digits side by side, touching or overlapping, as
    `images.find_digits` sees them before it cuts them apart: one box of ink, prepared
    (`mnist_style`) as if it were one digit. float32 (28, 28)."""
    a, b = (_tight(d.astype(np.float32) / 255) for d in (a, b))
    dx = int(round(a.shape[1] * (1 + rng.uniform(*PAIR_GAP))))
    dy = int(round(rng.uniform(-PAIR_JITTER, PAIR_JITTER) * max(a.shape[0], b.shape[0])))
    top_a, top_b = max(0, -dy), max(0, dy)
    row = np.zeros((max(top_a + a.shape[0], top_b + b.shape[0]),
                    max(a.shape[1], dx + b.shape[1])), np.float32)
    row[top_a:top_a + a.shape[0], :a.shape[1]] = a
    spot = row[top_b:top_b + b.shape[0], dx:dx + b.shape[1]]
    spot[...] = np.maximum(spot, b)  # where they overlap: the ink of both
    return mnist_style(row)


def touching_pairs(digits: np.ndarray, n: int, seed: int) -> np.ndarray:
    """float32 (n, 28, 28): `touching_pair`s of random digits of `digits` (uint8 N, 28, 28)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(digits), (n, 2))
    return np.stack([touching_pair(digits[i], digits[j], rng) for i, j in picks])


def _tight(d):
    rows, cols = np.flatnonzero((d > 0).any(1)), np.flatnonzero((d > 0).any(0))
    return d[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
