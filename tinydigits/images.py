"""Device side: NumPy + Pillow only. Turns any image of a digit into what the model eats.

`load_image` decodes a file into a float32 grayscale array with the ink bright on black
(whatever the paper, lighting or transparency); `mnist_style` then prepares the digit the
way MNIST was made: crop to the ink, fit the longer side to 20 px, and place the centre of
mass at the centre of a 28x28 frame. A file that cannot be handled raises `InputError`.
"""

import contextlib
import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tinydigits.errors import InputError
from tinydigits.features import IMAGE

MIN_SIDE = 8  # px; below this there is no digit to see
MAX_MEGAPIXELS = 40  # a 40 MP RGBA decode is 160 MB: the most a small Pi should attempt
WORK_SIDE = 1000  # px; larger images are box-averaged down first (the digit ends up 20 px)
SMALL = 28  # px; ink less tall than this is enlarged before its digits are found (not MNIST)
LEVELS = 256  # histogram bins for Otsu's threshold
PURE = 0.95  # an edge this much one class all round is a table (or a margin), and if...
SHEET = 0.45  # ...the other class covers 45% of the image, that is a sheet of paper on it
FIT_POINTS = 2000  # paper pixels sampled to fit the paper's shading (6 unknowns)
SHADED = 0.5  # the shading is fitted where the paper is half the image at least
NOISE_K = 5.0  # ink must stand out by 5 sigma of the paper's noise, else it is noise
NOISE_QUARTILE = 0.4506  # |a - b| of two N(0, s) pixels: its lower quartile is 0.4506 s
NOISE_PAIRS = 20_000  # about this many neighbours each way measure the noise (rows skipped)
MIN_CONTRAST = 0.05  # ~13 grey levels: fainter than this is a blank page
MIN_FLOOR = 0.05  # always zero the lowest 5% of the ink range (JPEG ringing, texture)
INK = 0.25  # a pixel this bright belongs to a stroke when finding the digit
MIN_DIGIT = 0.04  # a digit spans 4% of the image's longer side at least; smaller are specks
GRID = 64  # cells across the longer side for the speck analysis (dilates gaps < 1 cell)
NEAR = 0.05  # ink within 5% of the digit's size (+1 cell) of it is part of the digit, as is
SPECK = 0.02  # a piece with 2% of its ink anywhere; smaller pieces farther away are specks
THIN = 0.8  # px at 20 px box; thinner strokes are thickened (MNIST's 1st percentile: 1.0)
STROKE = 1.8  # px at 20 px box: MNIST's median of 2*area/perimeter of pixels > 0.5 (1.84)
RESAMPLE = Image.Resampling.LANCZOS  # anti-aliased, keeps strokes crisp like MNIST's
STRIP_PIXELS = 2**20  # source pixels converted and box-averaged at a time (4 MB as RGBA)


def load_image(path) -> np.ndarray:
    """Decode an image file into float32 HxW in [0, 1]: ink bright on black, paper at 0.

    Any format Pillow reads, EXIF orientation applied; images over WORK_SIDE px are
    box-averaged down to it first, and ink under SMALL px tall is enlarged (so HxW is not
    always the file's size).
    """
    return _load(path)[0]


def _load(path):
    """`load_image`, and the file's (width, height) as viewed (after EXIF rotation)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a directory")
    if not path.is_file():
        raise InputError(path, "not a regular file")  # a FIFO or device would block or never end
    if path.stat().st_size == 0:
        raise InputError(path, "empty file")
    gray, size = _decode(path)
    ink = page_to_ink(gray)
    if ink is None:
        raise InputError(path, "no digit found (blank image)")
    return _upscaled(ink), size


def _upscaled(ink: np.ndarray) -> np.ndarray:
    """Ink less than SMALL px tall, enlarged (bicubic) by the least whole factor that makes
    it SMALL or taller, so that a number 12-16 px high is cut into digits on a finer grid
    (a 28 px MNIST file is read as it is). Chosen on MNIST validation digits (the recipe's
    last 5,000): numbers 12-16 px high 83.7% -> 85.2% exact (600) and 84.5% -> 87.1% (1,200
    more); numbers of 8 and 16 px cells side by side +0.3 to +2.3 points; lone 8 px scans
    and stretched 16 px cells +0.2 to +0.7 points."""
    factor = math.ceil(SMALL / ink.shape[0])
    if factor <= 1:
        return ink
    size = (ink.shape[1] * factor, ink.shape[0] * factor)
    big = Image.fromarray(ink, "F").resize(size, Image.Resampling.BICUBIC)
    return np.clip(np.asarray(big), 0, 1)


def _decode(path: Path):
    """Open, check the declared size before any pixel is decoded, then decode to gray.

    Returns the gray image (float32 HxW) and the file's (width, height) as viewed."""
    with warnings.catch_warnings(), contextlib.ExitStack() as files:
        warnings.simplefilter("ignore")  # Pillow's asides ("Corrupt EXIF data") are not for users
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(files.enter_context(_BoundedFile(path)))
        except UnidentifiedImageError:
            raise InputError(path, "not an image (unrecognised file format)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            reason = f"image is too large (over {MAX_MEGAPIXELS} megapixels)"
            raise InputError(path, reason) from None
        except OSError as e:  # permission denied, I/O error
            raise InputError(path, f"cannot read ({e.strerror or e})") from None
        except Exception as e:
            raise InputError(path, f"truncated or corrupt image ({e})") from None
        with img:
            w, h = img.size
            if min(w, h) < MIN_SIDE:
                reason = f"image is {w}x{h} px; need at least {MIN_SIDE}x{MIN_SIDE}"
                raise InputError(path, reason)
            if w * h > MAX_MEGAPIXELS * 1e6:
                reason = f"image is {w}x{h} px = {w * h / 1e6:.0f} megapixels, too large"
                raise InputError(path, f"{reason} (limit {MAX_MEGAPIXELS})")
            factor = math.ceil(max(w, h) / WORK_SIDE)
            try:
                if factor > 1:
                    img.draft(None, (w // factor, h // factor))  # JPEG: decode at 1/2, 1/4, 1/8
                img.load()
                ImageOps.exif_transpose(img, in_place=True)  # a copy would be another 160 MB
                gray = _to_gray(img)
                turned = (gray.shape[0] > gray.shape[1]) != (h > w)  # EXIF turned it 90 degrees
                return gray, ((h, w) if turned else (w, h))
            except Exception as e:  # OSError, SyntaxError, ValueError, struct.error, zlib...
                reason = str(e) or type(e).__name__  # a MemoryError has no message
                raise InputError(path, f"truncated or corrupt image ({reason})") from None


class _BoundedFile(io.BufferedReader):
    """A file whose read(n) never asks for more than is left in it.

    Pillow's PNG reader skips the rest of an IDAT chunk with fp.read(its declared length),
    and Python allocates that many bytes before reading: a corrupt length of 0x7ffffff0
    asked for 2 GB (found by tests/test_fuzz.py).
    """

    def __init__(self, path):
        super().__init__(io.FileIO(path, "rb"))
        self._size = os.fstat(self.fileno()).st_size

    def read(self, size=-1):
        if size is not None and size > 0:
            size = min(size, max(0, self._size - self.tell()))
        return super().read(size)


def _to_gray(img: Image.Image) -> np.ndarray:
    """Luminance in [0, 1], at most WORK_SIDE px; transparent areas become contrasting paper.

    Closes `img` once it has made its working copy (a smaller or converted one)."""
    wide = img.mode in ("I", "F") or img.mode.startswith("I;16")  # 16/32-bit, float
    # Palette, 1-bit, LA, CMYK...: read as RGBA, so that any transparency is kept.
    mode = img.mode if img.mode in ("F", "L", "RGB", "RGBA") else "F" if wide else "RGBA"
    factor = math.ceil(max(img.size) / WORK_SIDE)
    full = img
    if factor > 1:  # box-average in Pillow, before any float copy of 40 MP exists
        img = _shrink(img, (-(-img.width // factor), -(-img.height // factor)), mode)
    elif img.mode != mode:
        img = img.convert(mode)
    if img is not full:
        full.close()  # its pixels (160 MB at 40 MP RGBA) go before the float copies come
    pixels = np.asarray(img, dtype=np.float32)
    if wide:  # the bit depth is unknown (16-bit PNG, float TIFF): scale by the range in use
        pixels = np.nan_to_num(pixels)  # +-inf become +-3.4e38: the scaling below tames them
        top = np.abs(pixels).max()  # abs: a float image may be negative (ink below paper)
        return pixels / next(s for s in (1, 255, 65535, top) if top <= s)
    if img.mode == "L":
        return pixels / 255
    gray = pixels[..., :3] @ np.float32([0.299, 0.587, 0.114]) / 255  # ITU-R 601 luma
    alpha = pixels[..., 3] / 255 if img.mode == "RGBA" else np.ones_like(gray)
    if alpha.min() < 1 and alpha.sum() > 0:
        stroke = (gray * alpha).sum() / alpha.sum()
        paper = 1.0 if stroke < 0.5 else 0.0  # black strokes on white, white ones on black
        gray = alpha * gray + (1 - alpha) * paper
    return gray.astype(np.float32)


def _shrink(img: Image.Image, size, mode) -> Image.Image:
    """`img.convert(mode).resize(size, BOX)`, a strip of rows at a time.

    Converting (a palette to RGBA is 4x) and resizing (Pillow premultiplies alpha in a
    full-size copy) a 40 MP image at once took 3x the decoded image (480 MB for RGBA);
    strips keep it to the decoded image plus ~STRIP_PIXELS.
    """
    w, h = img.size
    rows_per = h / size[1]  # source rows per output row (BOX boxes may be fractional)
    step = max(1, int(STRIP_PIXELS / (w * rows_per)))  # output rows per strip
    out = Image.new(mode, size)
    for r0 in range(0, size[1], step):
        r1 = min(size[1], r0 + step)
        y0, y1 = r0 * rows_per, r1 * rows_per
        top, bottom = math.floor(y0), min(h, math.ceil(y1))
        strip = img.crop((0, top, w, bottom))
        strip = strip if strip.mode == mode else strip.convert(mode)  # no second copy
        box = (0, y0 - top, w, min(y1, h) - top)
        out.paste(strip.resize((size[0], r1 - r0), Image.Resampling.BOX, box=box), (0, r0))
    return out


def page_to_ink(gray: np.ndarray):
    """Ink bright on black in [0, 1] with the paper at 0, or None if there is no ink.

    No margin is assumed: the ink may touch every edge. Otsu's threshold splits the image
    into two classes; the one covering more of the image's edge is the paper (measured on
    MNIST test digits cropped to their ink: the larger area is the ink for 11% of them,
    the larger share of the edge for 2%, nearly all 1s filling their box), except for a
    sheet on a table: when the edge is all one class and the other covers SHEET of the
    image or more, that is the paper, and only what lies on it counts. (A sheet cut by the
    frame is not recognised: its table covers too little of the edge to tell it from a
    tight crop's paper.) The paper's shading is then
    fitted by a quadratic surface and subtracted.
    """
    threshold = _otsu(gray)
    if threshold is None:
        return None  # one flat colour
    bright = gray > threshold  # HxW
    edge = np.concatenate([bright[0], bright[-1], bright[:, 0], bright[:, -1]]).mean()
    # A tight crop's ink touches the edge, but covers less of it than the paper does.
    paper_is_bright = edge > 0.5 or (edge == 0.5 and bright.mean() >= 0.5)
    sheet = ~bright if paper_is_bright else bright  # the other class: ink, or a sheet?
    inside = None  # where the paper is: everywhere, unless it is a sheet on a table
    if max(edge, 1 - edge) >= PURE and sheet.mean() >= SHEET:
        paper_is_bright, inside = not paper_is_bright, _sheet(sheet)
    paper = bright == paper_is_bright
    if inside is not None:
        paper &= inside
    if not paper.any():
        return None  # a "sheet" with no paper on it (bands of three greys): nothing written
    surface = _fit_paper(gray, paper)
    sigma = _noise(gray, bright)
    ink = gray - surface if not paper_is_bright else surface - gray
    if inside is not None:
        ink[~inside] = 0
    strokes = ~paper if inside is None else ~paper & inside
    if not strokes.any():
        return None
    level = np.median(ink[strokes])  # the strokes' typical level becomes 1
    if level < max(MIN_CONTRAST, NOISE_K * sigma):
        return None
    floor = min(max(MIN_FLOOR, NOISE_K * sigma / level), 0.5)
    ink /= level
    return np.clip((ink - floor) / (1 - floor), 0, 1).astype(np.float32)


def _noise(gray: np.ndarray, bright: np.ndarray) -> float:
    """The pixel noise's sigma, from the differences of neighbours of one class.

    Flat paper and flat ink give the same answer (a class's own spread would count a tight
    crop's grey stroke edges as noise). In a small image most neighbours straddle a
    stroke's edge, and the median of all differences took that for noise: 65% of MNIST
    digits scanned at 8 px were refused as blank. So pairs across the threshold are left
    out, and sigma comes from the lower quartile of the rest (Gaussian noise: 0.4506 sigma),
    which the grey edges left among them sway less than the median."""
    step = max(1, math.isqrt(gray.size // NOISE_PAIRS))  # every step-th row (column) will do
    rows, cols = (gray[::step], bright[::step]), (gray[:, ::step].T, bright[:, ::step].T)
    diffs = np.concatenate([np.abs(np.diff(g))[np.diff(b) == 0] for g, b in (rows, cols)])
    return float(np.quantile(diffs, 0.25)) / NOISE_QUARTILE if diffs.size else 0.0


def _otsu(gray: np.ndarray):
    """The grey level that best splits the image into two classes (Otsu 1979), or None."""
    low, high = float(gray.min()), float(gray.max())
    if high - low < 1e-6:
        return None
    bins = ((gray - low) * ((LEVELS - 1) / (high - low))).astype(np.int32)  # 0..LEVELS-1
    p = np.bincount(bins.ravel(), minlength=LEVELS) / gray.size
    levels = np.arange(LEVELS)
    w0 = np.cumsum(p)  # share of pixels at or below each level
    m0 = np.cumsum(p * levels)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0[-1] * w0 - m0) ** 2 / (w0 * (1 - w0))  # between-class variance
    best = int(np.nanargmax(between[:-1]))  # pixels in bins 0..best are the dark class
    return low + (best + 1) * (high - low) / (LEVELS - 1)


def _sheet(sheet: np.ndarray) -> np.ndarray:
    """Where the sheet is: everything but the table (the other class, reached from the edge).

    Measured on a coarse grid (GRID cells across), one cell in from the table's edge.
    """
    h, w = sheet.shape
    k = math.ceil(max(h, w) / GRID)
    cells = _cells(~sheet, k).mean(axis=(1, 3)) > 0.5  # table cells
    labels, n = _components(cells)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    table = np.isin(labels, edge[edge > 0])
    table = _max_filter(table.astype(np.float32), 3) > 0
    return ~np.repeat(np.repeat(table, k, axis=0), k, axis=1)[:h, :w]


def _fit_paper(gray, paper):
    """The paper's shading: a quadratic surface, fitted robustly.

    Where the paper is less than SHADED of the image (a tight crop of a thick digit: the
    paper is slivers between strokes), a surface would bend into the ink: a flat level."""
    h, w = gray.shape
    terms = 6 if paper.mean() >= SHADED else 1
    y = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    step = max(1, math.isqrt(h * w // (4 * FIT_POINTS)))  # a grid first: no 1e6 indices
    rows, cols = (i * step for i in np.nonzero(paper[::step, ::step]))
    if not len(rows):  # the paper is thinner than the grid's step: all of it
        rows, cols = np.nonzero(paper)
    if len(rows) > FIT_POINTS:  # a random sample fits as well, and 10x faster on a photo
        pick = np.random.default_rng(0).choice(len(rows), FIT_POINTS, replace=False)
        rows, cols = rows[pick], cols[pick]
    a, b = np.stack(_quadratic(y[rows, 0], x[0, cols])[:terms], axis=1), gray[rows, cols]
    keep = np.ones(len(b), bool)
    for _ in range(2):  # refit without the outliers (ink the threshold took for paper)
        coef = np.linalg.lstsq(a[keep], b[keep], rcond=None)[0].astype(np.float32)
        resid = b - a @ coef
        off = np.abs(resid - np.median(resid))
        keep = off <= 3 * 1.4826 * np.median(off) + 1e-3  # (+1e-3: synthetic paper is flat)
    surface = sum(c * t for c, t in zip(coef, _quadratic(y, x)[:terms], strict=True))
    return np.broadcast_to(surface, gray.shape)


def _quadratic(y, x):  # the terms of a quadratic surface in x and y
    return [np.ones_like(x), x, y, x * x, y * y, x * y]


def _cells(a: np.ndarray, k: int) -> np.ndarray:
    """HxW -> (H/k, k, W/k, k) blocks, zero-padded: reduce over axes (1, 3)."""
    h, w = a.shape
    return np.pad(a, ((0, -h % k), (0, -w % k))).reshape(-(-h // k), k, -(-w // k), k)


def mnist_style(gray: np.ndarray) -> np.ndarray:
    """The digit in `gray` (ink bright) as MNIST made it: float32 (28, 28) in [0, 1]."""
    gray = np.clip(np.asarray(gray, dtype=np.float32), 0, 1)
    if gray.ndim != 2 or not (gray > INK).any():
        raise ValueError("no digit found")
    return _fit(_crop_to_digit(gray))


def _fit(crop: np.ndarray) -> np.ndarray:
    """A digit cropped to its ink (specks already gone) -> MNIST style (28, 28)."""
    h, w = crop.shape
    scale = IMAGE.box / max(h, w)
    f = max(1, max(h, w) // (4 * IMAGE.box))  # measure at 4x the final size: noise averages out
    width = _stroke_width(np.asarray(Image.fromarray(crop).reduce(f)) > 0.5) * f
    if width * scale < THIN:  # a fine pen: thicken so the strokes survive the downscale
        r = round((STROKE / scale - width) / 2)
        crop = _max_filter(np.pad(crop, r), 2 * r + 1)
        h, w = crop.shape
        scale = IMAGE.box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.clip(np.asarray(Image.fromarray(crop).resize(size, RESAMPLE)), 0, 1)
    # Centre of mass to index (14, 14), in whole pixels as MNIST did (its measured mean is
    # (14.0, 14.0) with offsets uniform in +-0.5 px); clamped so nothing is cut off.
    cy, cx = (np.indices(small.shape) * small).sum(axis=(1, 2)) / small.sum()
    h, w = small.shape
    top = int(np.clip(round(IMAGE.size / 2 - cy), 0, IMAGE.size - h))
    left = int(np.clip(round(IMAGE.size / 2 - cx), 0, IMAGE.size - w))
    out = np.zeros((IMAGE.size, IMAGE.size), np.float32)
    out[top : top + h, left : left + w] = small
    return out


def _crop_to_digit(gray: np.ndarray) -> np.ndarray:
    """The ink's bounding box, ignoring isolated specks far from the digit."""
    h, w = gray.shape
    k = math.ceil(max(h, w) / GRID)
    cells = _cells(gray, k)
    labels, n = _components((cells > INK).any(axis=(1, 3)))
    mass = np.bincount(labels.ravel(), weights=cells.sum(axis=(1, 3)).ravel(), minlength=n + 1)
    mass[0] = 0
    main = labels == mass.argmax()
    rows, cols = np.flatnonzero(main.any(1)), np.flatnonzero(main.any(0))
    if k * (max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1) < MIN_DIGIT * max(h, w):
        raise ValueError("no digit found (only specks)")
    margin = NEAR * max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    keep = np.zeros(n + 1, bool)
    for i in range(1, n + 1):
        r, c = np.nonzero(labels == i)
        near = (r.max() >= rows[0] - margin and r.min() <= rows[-1] + margin
                and c.max() >= cols[0] - margin and c.min() <= cols[-1] + margin)
        keep[i] = near or mass[i] >= SPECK * mass.max()
    kept = _max_filter(keep[labels].astype(np.float32), 3) > 0  # plus the strokes' faint edges
    kept = np.repeat(np.repeat(kept, k, axis=0), k, axis=1)[:h, :w]
    digit = np.where(kept, gray, 0)
    rows, cols = np.flatnonzero((digit > 0).any(1)), np.flatnonzero((digit > 0).any(0))
    return digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _components(mask: np.ndarray):
    """8-connected labels of a boolean image (0 = background), and how many there are.

    NumPy has no `label`: the mask's horizontal runs are found with NumPy, runs in
    neighbouring rows that touch (diagonally too) are paired by binary search, and every run
    takes the smallest run index of its piece by propagation along the pairs with pointer
    jumping (a few passes, all in NumPy). Pieces are numbered 1, 2, ... in the order their
    first run comes, row by row.
    """
    h, w = mask.shape
    edges = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)  # (h, w + 1)
    rows, starts = np.nonzero(edges == 1)  # row-major: the i-th start and end are one run
    ends = np.nonzero(edges == -1)[1]  # exclusive
    if not len(starts):
        return np.zeros((h, w), int), 0
    # Run a in the row above run b touches it if start_a <= end_b and start_b <= end_a (an
    # exclusive end equal to the other's start: diagonal neighbours). Within a row, runs
    # are sorted and disjoint, so those a are one range of run indices.
    stride = w + 2
    above = (rows - 1) * stride
    lo = np.searchsorted(rows * stride + ends, above + starts, side="left")
    hi = np.searchsorted(rows * stride + starts, above + ends, side="right")
    counts = np.maximum(hi - lo, 0)
    b = np.repeat(np.arange(len(starts)), counts)  # each pair: a run, and one run above it
    a = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    label = np.arange(len(starts))
    while True:
        new = label.copy()
        low = np.minimum(label[a], label[b])
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]  # a run's label is a run of its piece with a label no larger
        if np.array_equal(new, label):
            break
        label = new
    ids = np.unique(label, return_inverse=True)[1] + 1
    paint = np.zeros((h, w + 1), int)  # +id at a run's start, -id at its end, summed along rows
    np.add.at(paint, (rows, starts), ids)
    np.add.at(paint, (rows, ends), -ids)
    return np.cumsum(paint, axis=1)[:, :w], int(ids.max())


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in px: 2 * area / perimeter (a stroke of length L has perimeter ~2L)."""
    edges = sum(np.count_nonzero(np.diff(np.pad(mask, 1).astype(np.int8), axis=a)) for a in (0, 1))
    return 2 * mask.sum() / max(edges, 1)


def _max_filter(a: np.ndarray, size: int) -> np.ndarray:
    """Grey dilation by a size x size square (odd size), same shape as `a`."""
    a = np.pad(a, size // 2)
    for axis in (0, 1):
        out, span = np.moveaxis(a, axis, 0), 1
        while span < size:  # out[i] is the maximum of a[i : i + span]: doubles each pass
            step = min(span, size - span)
            out, span = np.maximum(out[:-step], out[step:]), span + step
        a = np.moveaxis(out, 0, axis)
    return a


def preprocess_image(path) -> np.ndarray:
    """What the model eats: float32 (28, 28, 1) in [0, 1]."""
    try:
        return mnist_style(load_image(path))[..., None]
    except InputError:
        raise
    except ValueError as e:
        raise InputError(path, str(e)) from None


# ---------------------------------------------------------------------------- numbers
# page -> ink -> find_digits(ink) -> boxes -> mnist_style per box -> classifier.
ROW_PX = 96  # px: the row is measured with its ink this high (48 px merged 1 px gaps)
INSIDE = 0.8  # a piece overlapping another horizontally by 80% of its width is part of it,
PIECE = 0.3  # ...as is one by 50% that is short (under SHORT of the other's height: a bar)
SHORT = 0.6
LONE = 0.1  # a piece with under 10% of the largest one's ink is a speck (a thin 1: ~25%)
SPLIT = 0.9  # a box wider than 0.9 row heights may be two touching digits; one wider than
WIDE = 1.4  # 1.4 is (MNIST digits cropped to their ink: 1% are wider than 1.25, 0.2% 1.4)
SURE = 0.5  # below WIDE, a box is cut only if the classifier gives it less than even odds
# (the model is trained to give two touching digits no class: recipes/mnist.py, PAIRS)
RATIO = 2.0  # ...or if twice as wide as the row's typical digit (1s left out; at 1.4, 9 of
# the benchmark's 200 numbers fewer come out exact)
# A piece alone in the image is most likely one digit, so WIDE does not apply to it, but
# one over RATIO times as wide as it is tall is not: a number whose digits all touch (cells
# of a form joined edge to edge) was read as one digit.
JOIN = 0.9  # neighbours together no wider than this many row heights may be one broken
GAP = 0.1  # digit, if at most this far apart (row heights) and the classifier agrees;
GROUP = 4  # pieces in one broken digit at most
TALL = 0.8  # a piece this tall for its run is a digit's full height: two such are two digits
FULL = 0.7  # a run shorter than this share of the tallest piece is suspect as a digit alone
ONE = 1.25  # ink this wide for its height may be one digit (MNIST: 1% of digits are wider)
NARROW = 0.45  # a box narrower than this many row heights is a 1 (or a piece)
SEPARATOR = 0.35  # a piece less tall than this many row heights is no digit: a hyphen, a dot
LINE_SPAN = 0.5  # a run of ink across half the image may be a ruled line, an underline or
LINE = 2.0  # a box's side, if it is also twice as long as the tallest piece left without it
LINE_THIN = 0.1  # ...and no thicker than a tenth of its length (a stretched 1 is a block)
CUTS = 5  # candidate cuts tried per box when a classifier chooses
DECISIVE = 0.99  # ...and the first cut giving both halves this much is taken at once


def find_digits(ink: np.ndarray, score=None) -> list:
    """The digits in `ink` (HxW, ink bright, as from `load_image`), left to right.

    Returns boxes (x0, y0, x1, y1) in `ink`'s pixels, x1 and y1 exclusive (as Pillow's
    crop). Pieces of one digit (a 5's detached bar, a 4 in two strokes) come back as one
    box; a lone digit as one box. Touching digits are cut apart: given `score` (one
    (28, 28, 1) digit -> class probabilities, e.g. `Classifier.probabilities`), a box is
    cut where both halves are digits the classifier is surer of than of the whole box;
    without it, boxes wider than WIDE row heights are cut where the ink is thinnest.
    Raises ValueError("no digit found") if there is no ink.
    """
    return [box for box, _ in _digits(ink, score)]


def prepare_number(path, score=None):
    """The digits of a handwritten number in an image file, ready for the classifier.

    Returns `(x, boxes)`: x is float32 (N, 28, 28, 1), one MNIST-style digit per box, left
    to right; boxes are (x0, y0, x1, y1) in the file's own pixels (x1, y1 exclusive). A
    lone digit is a number of length one. `score` as for `find_digits` (recommended:
    `Classifier(path).probabilities`). Raises InputError, naming the file, if it cannot
    be read or holds no digit.
    """
    ink, (width, height) = _load(path)
    try:
        found = _digits(ink, score)
    except ValueError as e:
        raise InputError(path, str(e)) from None
    sx, sy = width / ink.shape[1], height / ink.shape[0]
    boxes = [(math.floor(x0 * sx), math.floor(y0 * sy), min(width, math.ceil(x1 * sx)),
              min(height, math.ceil(y1 * sy))) for (x0, y0, x1, y1), _ in found]
    return np.stack([digit for _, digit in found])[..., None], boxes


def _digits(ink, score):
    """[(box, its MNIST-style (28, 28) digit)] left to right, as `find_digits` describes."""
    ink = np.clip(np.asarray(ink, dtype=np.float32), 0, 1)
    if ink.ndim != 2 or not (ink > INK).any():
        raise ValueError("no digit found")
    ink = _without_lines(ink)
    if not (ink > INK).any():
        raise ValueError("no digit found (only lines)")
    rows = np.flatnonzero((ink > INK).any(1))
    k = max(1, math.ceil((rows[-1] - rows[0] + 1) / ROW_PX))  # ink px per cell
    cells = _cells(ink, k)
    labels, n = _components((cells > INK).any(axis=(1, 3)))  # (H/k, W/k)
    mass = np.bincount(labels.ravel(), weights=cells.sum(axis=(1, 3)).ravel(), minlength=n + 1)
    pieces = [[xs.start, ys.start, xs.stop, ys.stop, mass[i], {i}]  # in cells
              for i, (ys, xs) in enumerate(_slices(labels, n), start=1)]
    pieces = _merge(pieces)
    top = max(p[4] for p in pieces)
    height = np.median([p[3] - p[1] for p in pieces if p[4] >= 0.25 * top])  # of the row
    pieces = [p for p in pieces if p[4] >= LONE * top]
    tallest = max(p[3] - p[1] for p in pieces)  # in cells
    if tallest < 3 or k * tallest < MIN_DIGIT * max(ink.shape):
        raise ValueError("no digit found (only specks)")

    inks = {}

    def ink_of(p):  # (corner in ink px, the piece's ink alone, cropped to its box)
        key = frozenset(p[5])
        if key not in inks:
            member = np.zeros(n + 1, bool)
            member[list(p[5])] = True
            member = _max_filter(member[labels].astype(np.float32), 3) > 0  # + faint edges
            member = np.repeat(np.repeat(member, k, 0), k, 1)[: ink.shape[0], : ink.shape[1]]
            y0, y1, x0, x1 = p[1] * k, p[3] * k, p[0] * k, p[2] * k
            inks[key] = (x0, y0), np.where(member[y0:y1, x0:x1], ink[y0:y1, x0:x1], 0)
        return inks[key]

    def sure(p):  # the classifier's top probability for the piece as one digit
        return float(np.max(score(_fit(_tight(ink_of(p)[1]))[..., None])))

    if score is not None and len(pieces) > 1:
        pieces = _rejoin(pieces, height, sure)
    digits = [p for p in pieces if p[3] - p[1] >= SEPARATOR * height]
    pieces = digits or pieces  # a hyphen, a dot: far shorter than the row's digits
    widths = [p[2] - p[0] for p in pieces if p[2] - p[0] >= NARROW * height]
    typical = np.median(widths) if len(widths) >= 2 else np.inf  # a digit's width in this row
    found, lone = [], len(pieces) == 1
    for p in sorted(pieces, key=lambda p: p[0]):
        (x0, y0), part = ink_of(p)
        found += [((x0 + a, y0 + b, x0 + c, y0 + d), digit)
                  for (a, b, c, d), digit in _split(part, height * k, typical * k, lone, score)]
    return found


def _without_lines(ink: np.ndarray) -> np.ndarray:
    """`ink` without the lines of ruled or squared paper, underlines and boxes round a number.

    A line: runs of ink across LINE_SPAN of the image (rows for a horizontal line, columns
    for a vertical one), at most LINE_THIN of their length thick. A horizontal one must be
    LINE times as long as the tallest piece left once the lines are gone (so a 7's bar is
    never one); a vertical one must reach from the highest horizontal line taken out to the
    lowest, with two or more of them a digit's height apart (a box's sides, squared paper;
    a 1 between ruled lines does not). Where a digit's stroke crosses or touches a line (ink
    within the line's thickness on either side), its pixels stay; the rest go, with their
    faint edges. A number on lined paper was read as one or two wrong digits, on squared
    paper as a row of 1s.
    """
    mask = ink > INK
    across = _lines(mask)
    if across is None:
        return ink  # vertical runs alone are 1s
    down = _lines(mask.T)
    down_line = down[0].T if down else np.zeros_like(mask)
    rest = mask & ~across[0] & ~down_line  # the ink that is no line
    across_cut = across[0] & ~_beside(rest, across[2])
    down_cut = (down[0] & ~_beside(rest.T, down[2])).T if down else None
    cut = _grid(mask, across_cut, across[1], down_cut)  # squared paper, a box: every digit
    if cut is None:  # may touch a vertical line; ruled paper, an underline: digits stand clear
        pixels = across_cut & ~down_line  # vertical runs stay whole where they cross (a 1)
        tallest = _tallest(mask & ~pixels)
        if tallest and across[1] < LINE * tallest:
            return ink
        cut = pixels
    if not cut.any():
        return ink
    out = ink.copy()
    out[(_max_filter(cut.astype(np.float32), 3) > 0) & ~rest] = 0
    return out


def _beside(other: np.ndarray, thick: int) -> np.ndarray:
    """Where `other` lies within thick + 1 px above or below: a stroke meets the line there."""
    near = np.zeros_like(other)
    for shift in range(1, thick + 2):
        near[shift:] |= other[:-shift]
        near[:-shift] |= other[shift:]
    return near


def _grid(mask, across, length, down):
    """The pixels of a box's or squared paper's lines, or None: the horizontal lines
    `across` (the longest `length`) LINE times as long as the tallest piece left without
    any line, and vertical lines of `down` from the highest of them to the lowest, two or
    more, at least as far apart as that piece is tall (a crossed 7's stem alone is not a
    box)."""
    if down is None:
        return None
    tallest = _tallest(mask & ~across & ~down)
    if not tallest or length < LINE * tallest:
        return None
    rows = np.flatnonzero(across.any(axis=1))
    if rows[-1] - rows[0] < tallest:
        return None
    tolerance = max(2, (rows[-1] - rows[0]) // 20)
    top = np.argmax(down, axis=0)
    bottom = len(down) - 1 - np.argmax(down[::-1], axis=0)
    columns = down.any(axis=0) & (top <= rows[0] + tolerance) & (bottom >= rows[-1] - tolerance)
    starts = np.flatnonzero(columns & ~np.concatenate([[False], columns[:-1]]))
    if len(starts) < 2 or starts[-1] - starts[0] < tallest:
        return None
    return across | (down & columns)


def _lines(mask: np.ndarray):
    """Horizontal runs of `mask` across LINE_SPAN of its width and thin: (those pixels, the
    longest run, its thickness), or None."""
    if mask.sum(axis=1).max() < LINE_SPAN * mask.shape[1]:
        return None  # no row holds that much ink: no line (most numbers, at little cost)
    runs = _row_runs(mask)
    line = runs >= LINE_SPAN * mask.shape[1]
    if not line.any():
        return None
    length, thick = int(runs[line].max()), int(_row_runs(line.T).max())
    return None if thick > LINE_THIN * length else (line, length, thick)


def _tallest(mask: np.ndarray) -> int:
    """The height in px of the tallest 8-connected piece of `mask` (0 if none)."""
    labels, n = _components(mask)
    return max((ys.stop - ys.start for ys, _ in _slices(labels, n)), default=0)


def _row_runs(mask: np.ndarray) -> np.ndarray:
    """The length of the horizontal run of True each pixel of `mask` is in (0 where False)."""
    h, w = mask.shape
    flat = np.zeros((h, w + 1), bool)  # a False column ends every row's last run
    flat[:, :w] = mask
    flat = flat.ravel()
    starts = flat & ~np.concatenate([[False], flat[:-1]])
    ids = np.cumsum(starts, dtype=np.int32) * flat
    lengths = np.bincount(ids).astype(np.int32)
    lengths[0] = 0
    return lengths[ids].reshape(h, w + 1)[:, :w]


def _rejoin(pieces, height, sure):
    """Join neighbours that are one broken digit (a thin pen's gaps, a 1-bit scan's breaks).

    Of all ways to group the pieces, left to right, into runs that could each be one digit,
    the one the classifier believes most. A run may be one digit if its pieces are at most
    GAP row heights apart, together no wider than JOIN row heights, at most GROUP of them,
    and no two as tall as the run (TALL: two full-height pieces are two digits). Belief is
    the sum over runs of the log of the top probability, `sure(piece)`, less a penalty for
    a run shorter than FULL of the tallest piece (a bar or a stroke's end alone reads as a
    1 or a 7). A tie keeps pieces apart. Ink no wider than ONE times its height may also be
    one digit in pieces, judged the same way.
    """
    pieces = sorted(pieces, key=lambda p: p[0])

    def one_digit(run, whole):  # at most one piece as tall as a digit: two are two digits
        return sum(p[3] - p[1] >= TALL * (whole[3] - whole[1]) for p in run) <= 1

    tallest = max(p[3] - p[1] for p in pieces)

    def belief(p):  # log P(digit), and a piece much shorter than the row is likely a fragment
        short = (p[3] - p[1]) / (FULL * tallest)
        return math.log(max(sure(p), 1e-6)) + min(0.0, math.log(short))

    def runs_ending_at(j):  # pieces[i:j] that may be one digit, shortest first
        for i in range(j - 1, max(-1, j - 1 - GROUP), -1):
            run = _union(pieces[i:j])
            tall = max(height, run[3] - run[1])
            if i < j - 1 and (pieces[j - 1][0] - max(p[2] for p in pieces[i:j - 1]) > GAP * tall
                              or run[2] - run[0] > JOIN * tall):
                break
            if i == j - 1 or one_digit(pieces[i:j], run):
                yield i, run

    candidates = [list(runs_ending_at(j)) for j in range(1, len(pieces) + 1)]
    whole = _union(pieces)
    whole_may_be_one = (len(pieces) <= GROUP and whole[2] - whole[0] <= ONE * (whole[3] - whole[1])
                        and one_digit(pieces, whole))
    if all(len(c) == 1 for c in candidates) and not whole_may_be_one:
        return pieces  # nothing to choose: no classifier calls
    best = [(0.0, [])]  # best[i]: (log belief, runs) for the first i pieces
    for options in candidates:
        best.append(max(((best[i][0] + belief(run), best[i][1] + [run]) for i, run in options),
                        key=lambda o: o[0]))  # the first (most runs) wins a tie
    value, runs = best[-1]
    if len(runs) > 1 and whole_may_be_one and belief(whole) > value:
        return [whole]
    return runs


def _union(run):
    """One piece [x0, y0, x1, y1, mass, component ids] covering all pieces of `run`."""
    return [min(p[0] for p in run), min(p[1] for p in run), max(p[2] for p in run),
            max(p[3] for p in run), sum(p[4] for p in run), set().union(*(p[5] for p in run))]


def _slices(labels, n):
    """Bounding slices (rows, cols) of labels 1..n."""
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    y0, y1 = np.full(n + 1, labels.shape[0]), np.zeros(n + 1, int)
    x0, x1 = np.full(n + 1, labels.shape[1]), np.zeros(n + 1, int)
    np.minimum.at(y0, lab, ys)
    np.maximum.at(y1, lab, ys + 1)
    np.minimum.at(x0, lab, xs)
    np.maximum.at(x1, lab, xs + 1)
    return [(slice(y0[i], y1[i]), slice(x0[i], x1[i])) for i in range(1, n + 1)]


def _merge(pieces):
    """Join pieces of one digit (one lies over the other horizontally, not far above or
    below it), until none do."""
    merged = True
    while merged:
        merged = False
        pieces.sort(key=lambda p: p[0])
        for a in range(len(pieces)):
            for b in range(a + 1, len(pieces)):
                p, q = pieces[a], pieces[b]
                overlap = min(p[2], q[2]) - max(p[0], q[0])
                apart = max(p[1], q[1]) - min(p[3], q[3])  # rows between them
                if overlap <= 0 or apart > 0.5 * max(p[3] - p[1], q[3] - q[1]):
                    continue
                narrow = min(p[2] - p[0], q[2] - q[0])
                short = min(p[3] - p[1], q[3] - q[1]) < SHORT * max(p[3] - p[1], q[3] - q[1])
                if overlap >= (PIECE if short else INSIDE) * narrow:
                    pieces[a] = _union([p, q])
                    del pieces[b]
                    merged = True
                    break
            if merged:
                break
    return pieces


def _split(part, height, typical, lone, score):
    """[(box in `part`, MNIST-style digit)]: the ink in `part` as one digit, or cut in two
    (and each half again) where the classifier is surer of both halves than of the whole."""
    box = _ink_box(part)
    x0, y0, x1, y1 = box
    part = part[y0:y1, x0:x1]
    whole = _fit(part)
    w = x1 - x0
    if w <= SPLIT * height:  # narrow enough to be one digit: no classifier call
        return [(box, whole)]
    tall = max(height, y1 - y0)  # a lone piece's own height: the row's may be its fragments'
    wide = (w > RATIO * tall if lone else w > WIDE * height) or w > RATIO * typical
    sure = float(np.max(score(whole[..., None]))) if score is not None else 0.0
    if not wide and (score is None or sure >= SURE):
        return [(box, whole)]
    column = part.sum(axis=0)  # ink per column: touching digits meet where it is least
    lo, hi = int(0.2 * w), max(int(0.2 * w) + 1, int(0.8 * w))
    order = lo + np.argsort(column[lo:hi], kind="stable")
    cuts = []  # the thinnest columns, spread out
    for c in order:
        if all(abs(c - d) >= w / (2 * CUTS) for d in cuts):
            cuts.append(int(c))
        if len(cuts) == (CUTS if score is not None else 1):
            break
    best, sure = None, -1.0 if wide else sure  # a wide box is always cut
    for c in cuts:
        halves = part[:, :c], part[:, c:]
        if not all((h > INK).any() for h in halves):
            continue
        runs = np.count_nonzero(np.diff(np.concatenate([[0], part[:, c] > INK, [0]])) == 1)
        if not wide and (runs > 2 or not all(_one_stroke(h) for h in halves)):
            continue  # touching digits meet at a stroke or two; this slices one digit
        if score is None:
            best = c
            break
        fits = [_fit(_tight(h)) for h in halves]
        both = min(float(np.max(score(f[..., None]))) for f in fits)
        if both > sure:  # ties (int8 scores saturate at 255/256): the thinner column
            best, sure = c, both
            if sure >= DECISIVE:
                break  # both halves all but certain: no later cut is worth its two calls
    if best is None:  # no cut, or the classifier is surest of the box as one digit
        return [(box, whole)]
    out = []
    for shift, half in ((0, part[:, :best]), (best, part[:, best:])):
        out += [((x0 + shift + a, y0 + b, x0 + shift + c, y0 + d), digit)
                for (a, b, c, d), digit in _split(half, height, typical, lone, score)]
    return out


def _one_stroke(a) -> bool:
    """Is the ink in `a` one connected piece (ignoring crumbs under a tenth of it)?"""
    labels, n = _components(a > INK)
    if n <= 1:
        return True
    mass = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    return np.count_nonzero(mass >= 0.1 * mass.sum()) <= 1


def _ink_box(a):
    """(x0, y0, x1, y1) of the ink in `a`."""
    rows, cols = np.flatnonzero((a > 0).any(1)), np.flatnonzero((a > 0).any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _tight(a):
    x0, y0, x1, y1 = _ink_box(a)
    return a[y0:y1, x0:x1]
