"""Write the sample images in samples/images/: digits as the world sends them.

Each file is a digit from the MNIST test set (or a TrueType font) made to look like a real
input: a phone photo of paper with uneven light and JPEG noise, an off-centre digit on a big
canvas, colour, transparency, a thin pen, small sizes, EXIF rotation, palette and 16-bit
files. The first character of each name is the true label. Deterministic (fixed seed).

    python scripts/make_sample_images.py          # ~14 files, ~100 KB in all
"""

import argparse
from pathlib import Path

import numpy as np
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont

from tinydigits.datasets import load_mnist
from tinydigits.files import atomic_path

OUT = Path(__file__).resolve().parent.parent / "samples" / "images"
SEED = 0


def first_index(y_test, label, skip=0):
    """The test set's (skip+1)-th digit with this label: a fixed, reproducible choice."""
    return int(np.flatnonzero(y_test == label)[skip])


def upscale(digit, size):
    """MNIST digit (uint8, ink bright) -> float ink in [0, 1] at size x size."""
    img = Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, np.float32) / 255


def on_paper(ink, paper=0.93, ink_level=0.12):
    """Dark ink on light paper, float [0, 1]."""
    return paper * (1 - ink) + ink_level * ink


def thin(mask):
    """Zhang-Suen thinning: a binary shape -> its 1 px wide skeleton (a fine pen's line)."""
    m = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = [np.roll(m, s, (0, 1)) for s in
                 [(1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1)]]
            # p[0..7] = P2..P9 (N, NE, E, SE, S, SW, W, NW) of each pixel
            b = sum(p)
            a = sum((p[i] == 0) & (p[(i + 1) % 8] == 1) for i in range(8))
            if step == 0:
                c, d = p[0] * p[2] * p[4], p[2] * p[4] * p[6]
            else:
                c, d = p[0] * p[2] * p[6], p[0] * p[4] * p[6]
            delete = (m == 1) & (b >= 2) & (b <= 6) & (a == 1) & (c == 0) & (d == 0)
            if delete.any():
                m[delete] = 0
                changed = True
        if not changed:
            return m[1:-1, 1:-1].astype(bool)


def font_digit(text, font_file, size, glyph_px, rng):
    """A digit typed in a TrueType font: dark on white paper, slightly noisy."""
    img = Image.new("L", (size, size), 240)
    font = ImageFont.truetype(font_file, glyph_px)
    ImageDraw.Draw(img).text((size / 2, size / 2), text, fill=25, font=font, anchor="mm")
    gray = np.asarray(img, np.float32) / 255 + rng.normal(0, 0.01, (size, size))
    return to_u8(gray)


def to_u8(gray):
    return (np.clip(gray, 0, 1) * 255).round().astype(np.uint8)


def save(img, name, **kwargs):
    dest = OUT / name
    fmt = {".png": "PNG", ".jpg": "JPEG", ".gif": "GIF"}[dest.suffix]
    with atomic_path(dest, suffix=dest.suffix) as tmp:
        img.save(tmp, format=fmt, **kwargs)
        tmp.chmod(0o644)  # mkstemp makes 0600; these are for everyone to read
    print(f"{dest.relative_to(OUT.parent.parent)}  {img.mode} {img.size[0]}x{img.size[1]}  "
          f"{dest.stat().st_size / 1024:.1f} KB")


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    rng = np.random.default_rng(SEED)
    (_, _), (x_test, y_test) = load_mnist()
    digit = {d: x_test[first_index(y_test, d)] for d in range(10)}

    # A phone photo: 300 px, digit ~200 px, light falling off to one corner, sensor noise.
    yy, xx = np.mgrid[0:1:300j, 0:1:300j]
    light = 1.0 - 0.25 * (xx + yy) / 2  # 100% top-left to 75% bottom-right
    ink = np.pad(upscale(digit[7], 220), 40)
    photo = on_paper(ink) * light + rng.normal(0, 0.015, light.shape)
    tint = np.float32([1.0, 0.97, 0.9])  # warm indoor light
    save(Image.fromarray(to_u8(photo[..., None] * tint)), "7_paper_photo.jpg", quality=80)

    # The same photo stored sideways, with the EXIF tag that says "rotate 90 CW to view".
    photo = on_paper(np.pad(upscale(digit[4], 200), 50)) * light + rng.normal(0, 0.015, (300, 300))
    sideways = Image.fromarray(to_u8(photo)).rotate(90)  # rotate() is counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: 6 = the viewer rotates 90 degrees clockwise
    save(sideways, "4_exif_rotated.jpg", quality=80, exif=exif)

    # A small digit far off-centre on a big sheet (a crop the user did not make).
    sheet = np.full((300, 400), 0.9, np.float32)
    sheet[40:120, 250:330] = on_paper(upscale(digit[2], 80), paper=0.9)
    save(Image.fromarray(to_u8(sheet)), "2_offcentre_canvas.png", optimize=True)

    # Colour: blue ballpoint on yellow sticky note.
    t = upscale(digit[1], 96)[..., None]
    note, blue = np.float32([0.98, 0.92, 0.45]), np.float32([0.1, 0.15, 0.55])
    save(Image.fromarray(to_u8(note * (1 - t) + blue * t)), "1_rgb_sticky_note.png")

    # Transparent background, as drawing apps export: black strokes, and white strokes.
    rgba = np.zeros((128, 128, 4), np.uint8)
    rgba[..., 3] = to_u8(upscale(digit[3], 128))
    save(Image.fromarray(rgba, "RGBA"), "3_rgba_transparent.png", optimize=True)
    rgba = np.zeros((128, 128, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 255, to_u8(upscale(digit[0], 128))
    save(Image.fromarray(rgba, "RGBA"), "0_rgba_white_strokes.png", optimize=True)

    # A fine pen: the digit's 1 px skeleton at 200 px, dark on white.
    line = thin(upscale(digit[5], 200) > 0.5)
    save(Image.fromarray(to_u8(on_paper(line.astype(np.float32), paper=0.97))),
         "5_thin_pen.png", optimize=True)

    # Tiny inputs: 32 px and 64 px, dark on light.
    save(Image.fromarray(to_u8(on_paper(upscale(digit[6], 32)))), "6_small_32px.png")
    save(Image.fromarray(to_u8(on_paper(upscale(digit[8], 64)))), "8_small_64px.png")

    # MNIST itself (white on black, 28x28), a palette GIF and a 16-bit grayscale PNG.
    save(Image.fromarray(digit[9]), "9_mnist_original.png")
    gif = Image.fromarray(to_u8(on_paper(upscale(x_test[first_index(y_test, 2, 1)], 80))))
    save(gif.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "2_palette.gif")
    sixteen = (on_paper(upscale(x_test[first_index(y_test, 3, 1)], 72)) * 65535).astype(np.uint16)
    save(Image.fromarray(sixteen), "3_grayscale_16bit.png")

    # Typed digits from TrueType fonts (matplotlib bundles DejaVu).
    sans = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"))
    serif = font_manager.findfont(font_manager.FontProperties(family="DejaVu Serif"))
    save(Image.fromarray(font_digit("4", sans, 160, 120, rng)), "4_font_dejavu_sans.png",
         optimize=True)
    save(Image.fromarray(font_digit("7", serif, 160, 120, rng)), "7_font_dejavu_serif.jpg",
         quality=85)


if __name__ == "__main__":
    main()
