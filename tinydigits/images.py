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
BORDER = 0.05  # the outer 5% of each side is taken to be background (paper)
FIT_POINTS = 2000  # border pixels sampled to fit the paper's shading (6 unknowns)
EXTREME = 0.1  # percent; the ink sits in the darkest or brightest 0.1% (a 1 px pen does)
NOISE_K = 5.0  # ink must stand out by 5 sigma of the paper's noise, else it is noise
MIN_CONTRAST = 0.05  # ~13 grey levels: fainter than this is a blank page
MIN_FLOOR = 0.05  # always zero the lowest 5% of the ink range (JPEG ringing, texture)
INK = 0.25  # a pixel this bright belongs to a stroke when finding the digit
GRID = 64  # cells across the longer side for the speck analysis (dilates gaps < 1 cell)
NEAR = 0.05  # ink within 5% of the digit's size (+1 cell) of it is part of the digit, as is
SPECK = 0.02  # a piece with 2% of its ink anywhere; smaller pieces farther away are specks
THIN = 0.8  # px at 20 px box; thinner strokes are thickened (MNIST's 1st percentile: 1.0)
STROKE = 1.8  # px at 20 px box: MNIST's median of 2*area/perimeter of pixels > 0.5 (1.84)
RESAMPLE = Image.Resampling.LANCZOS  # anti-aliased, keeps strokes crisp like MNIST's
STRIP_PIXELS = 2**21  # source pixels converted and box-averaged at a time (8 MB as RGBA)


def load_image(path) -> np.ndarray:
    """Decode an image file into float32 HxW in [0, 1]: ink bright on black, paper at 0.

    Any format Pillow reads, EXIF orientation applied; images over WORK_SIDE px are
    box-averaged down to it first (so HxW is not always the file's size).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a directory")
    if not path.is_file():
        raise InputError(path, "not a regular file")  # a FIFO or device would block or never end
    if path.stat().st_size == 0:
        raise InputError(path, "empty file")
    ink = _normalise(_decode(path))
    if ink is None:
        raise InputError(path, "no digit found (blank image)")
    return ink


def _decode(path: Path) -> np.ndarray:
    """Open, check the declared size before any pixel is decoded, then decode to gray."""
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
                return _to_gray(img)
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
    """Luminance in [0, 1], at most WORK_SIDE px; transparent areas become contrasting paper."""
    wide = img.mode in ("I", "F") or img.mode.startswith("I;16")  # 16/32-bit, float
    # Palette, 1-bit, LA, CMYK...: read as RGBA, so that any transparency is kept.
    mode = img.mode if img.mode in ("F", "L", "RGB", "RGBA") else "F" if wide else "RGBA"
    factor = math.ceil(max(img.size) / WORK_SIDE)
    if factor > 1:  # box-average in Pillow, before any float copy of 40 MP exists
        img = _shrink(img, (-(-img.width // factor), -(-img.height // factor)), mode)
    elif img.mode != mode:
        img = img.convert(mode)
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
        strip = img.crop((0, top, w, bottom)).convert(mode)
        box = (0, y0 - top, w, min(y1, h) - top)
        out.paste(strip.resize((size[0], r1 - r0), Image.Resampling.BOX, box=box), (0, r0))
    return out


def _normalise(gray: np.ndarray):
    """Ink bright on black in [0, 1] with the paper at 0, or None if there is no ink."""
    h, w = gray.shape
    band = max(1, round(BORDER * min(h, w)))
    border = np.ones((h, w), bool)
    border[band:-band, band:-band] = False
    # Paper under uneven light: a quadratic surface fitted to the border, robustly.
    y = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    rows, cols = np.nonzero(border)
    if len(rows) > FIT_POINTS:  # a random sample fits as well, and 10x faster on a photo
        pick = np.random.default_rng(0).choice(len(rows), FIT_POINTS, replace=False)
        rows, cols = rows[pick], cols[pick]
    a, b = np.stack(_quadratic(y[rows, 0], x[0, cols]), axis=1), gray[rows, cols]
    keep = np.ones(len(b), bool)
    for _ in range(2):  # refit without the outliers (strokes touching the border)
        coef = np.linalg.lstsq(a[keep], b[keep], rcond=None)[0].astype(np.float32)
        resid = b - a @ coef
        sigma = 1.4826 * np.median(np.abs(resid - np.median(resid)))  # robust noise level
        keep = np.abs(resid) <= 3 * sigma + 1e-3  # (+1e-3: synthetic paper has sigma 0)
    ink = gray - sum(c * t for c, t in zip(coef, _quadratic(y, x), strict=True))
    dark, bright = -np.percentile(ink, EXTREME), np.percentile(ink, 100 - EXTREME)
    if dark > bright:  # dark ink on light paper
        ink = -ink
    peak = max(dark, bright)
    if peak < max(MIN_CONTRAST, NOISE_K * sigma):
        return None
    level = np.median(ink[ink > peak / 2])  # the strokes' typical level becomes 1
    floor = min(max(MIN_FLOOR, NOISE_K * sigma / level), 0.5)
    ink /= level
    return np.clip((ink - floor) / (1 - floor), 0, 1).astype(np.float32)


def _quadratic(y, x):  # the terms of a quadratic surface in x and y
    return [np.ones_like(x), x, y, x * x, y * y, x * y]


def mnist_style(gray: np.ndarray) -> np.ndarray:
    """The digit in `gray` (ink bright) as MNIST made it: float32 (28, 28) in [0, 1]."""
    gray = np.clip(np.asarray(gray, dtype=np.float32), 0, 1)
    if gray.ndim != 2 or not (gray > INK).any():
        raise ValueError("no digit found")
    crop = _crop_to_digit(gray)
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
    cells = np.pad(gray, ((0, -h % k), (0, -w % k))).reshape(-(-h // k), k, -(-w // k), k)
    labels, n = _components((cells > INK).any(axis=(1, 3)))
    mass = np.bincount(labels.ravel(), weights=cells.sum(axis=(1, 3)).ravel(), minlength=n + 1)
    mass[0] = 0
    main = labels == mass.argmax()
    rows, cols = np.flatnonzero(main.any(1)), np.flatnonzero(main.any(0))
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
    """8-connected labels of a small boolean grid (a flood fill: NumPy has no `label`)."""
    todo, labels, n = set(map(tuple, np.argwhere(mask).tolist())), np.zeros(mask.shape, int), 0
    while todo:
        n += 1
        stack = [todo.pop()]
        while stack:
            r, c = stack.pop()
            labels[r, c] = n
            for cell in ((r + i, c + j) for i in (-1, 0, 1) for j in (-1, 0, 1)):
                if cell in todo:
                    todo.remove(cell)
                    stack.append(cell)
    return labels, n


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
    except ValueError:
        raise InputError(path, "no digit found") from None
