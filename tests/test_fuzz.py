"""Fuzzed readers: every input is handled or refused with one line, fast and small.

Property-based tests (hypothesis) over what a user hands `tinydigits classify`: audio
files, images and `.tflite` models, made from random bytes and from the real files in
samples/ and tinydigits/models/, mutated: truncated, header fields overwritten (huge declared sizes,
zero channels, absurd rates), NaN/inf samples, 1-sample audio, 0x0 and 100000x1 images.

The contract checked for every input: the reader returns a well-formed model input, or
raises InputError / RuntimeUnavailable with one line naming the file; nothing else
escapes, no warning is printed (it would be a second line on stderr), and it takes under
MAX_SECONDS and MAX_MEMORY_BYTES. Each input runs in a forked child, so a native crash
(LiteRT aborts on some corrupt models) or a hang fails the test instead of killing it.

The long run is `benchmarks/fuzz_report.py`, which drives the same strategies.
"""

import faulthandler
import functools
import io
import json
import os
import resource
import signal
import struct
import tempfile
import time
import tracemalloc
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import MODELS, REPO, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tinydigits.audio import prepare_wav
from tinydigits.errors import InputError, RuntimeUnavailable
from tinydigits.images import preprocess_image
from tinydigits.runtime import Classifier, _interpreter_class

MAX_SECONDS = 5.0  # per input, on a loaded 2-core machine; the slowest bad input takes ~0.1 s
MAX_MEMORY_BYTES = 256 * 2**20  # RSS growth or tracemalloc peak: a 40 MP RGBA image (the
# largest accepted) decodes to 160 MB and reading it takes ~195 MB in all
CHILD_ADDRESS_SPACE = 2 * 2**30  # a runaway allocation fails in the child, not the machine
SAMPLE_AUDIO = sorted((REPO / "samples" / "audio").glob("[0-9]_*.wav"))
SAMPLE_IMAGES = sorted((REPO / "samples" / "images").glob("[0-9]_*.*"))
FUZZ_MODELS = [MODELS / "mnist.int8_io.tflite", MODELS / "mnist.float32.tflite"] + [
    p for p in [MODELS / "spoken_digits.int8.tflite"] if p.is_file()]  # its log-mel ops too
FUZZ_SETTINGS = dict(deadline=None, database=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------- running one input


@dataclass
class Outcome:
    """What one input did: 'ok', 'refused', or a bug: 'error', 'warning', 'stderr' (a native
    library printed), 'crash', 'hang' or 'bad output'."""

    status: str
    message: str = ""
    seconds: float = 0.0
    memory_bytes: int = 0  # the larger of RSS growth and tracemalloc's peak

    @property
    def is_bug(self) -> bool:
        return self.status not in ("ok", "refused")


def read_audio(path) -> str:
    x = prepare_wav(path)
    good = x.shape == (8000,) and x.dtype == np.float32 and np.isfinite(x).all()
    return "" if good and np.abs(x).max() <= 1 else f"returned {x.dtype}{x.shape}"


def read_image(path) -> str:
    x = preprocess_image(path)
    good = x.shape == (28, 28, 1) and x.dtype == np.float32 and np.isfinite(x).all()
    return "" if good and 0 <= x.min() and x.max() <= 1 else f"returned {x.dtype}{x.shape}"


def load_model(path) -> str:
    classifier = Classifier(path)
    p = classifier.probabilities(np.full(classifier.input_shape, 0.5, np.float32))
    return "" if p.shape == (classifier.classes,) else f"probabilities of shape {p.shape}"


READERS = {"audio": read_audio, "image": read_image, "model": load_model}
_interpreter_class()  # LiteRT imported once here, not again in every forked child


def _measure(read, path, trace_memory) -> dict:
    """In the child: run `read(path)`, classify what happened, measure time and memory."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if trace_memory:  # sees allocations before they are touched; makes reading 2-3x slower
        tracemalloc.start()
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            problem = read(path)
            status, message = ("bad output", problem) if problem else ("ok", "")
        except (InputError, RuntimeUnavailable) as e:
            status, message = "refused", str(e)
        except BaseException as e:  # noqa: B036 - anything else escaping is the bug we hunt
            status, message = "error", f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] if tracemalloc.is_tracing() else 0
    tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    if caught and status in ("ok", "refused"):
        status, message = "warning", f"{caught[0].category.__name__}: {caught[0].message}"
    return {"status": status, "message": message[:500], "seconds": seconds,
            "memory_bytes": max(peak, rss_growth)}


def run_isolated(kind, path, timeout=MAX_SECONDS * 4, trace_memory=False) -> Outcome:
    """Run the `kind` reader on `path` in a forked child; a crash or hang is an Outcome too.

    Memory is the child's RSS growth, plus tracemalloc's peak if `trace_memory`; either
    way the child's address space is capped, so a runaway allocation fails there.
    """
    r, w = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest or hypothesis
        try:
            os.close(r)
            faulthandler.disable()  # pytest's would print the child's stack on an abort
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an abort leaves no core file
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            limit = _address_space() + CHILD_ADDRESS_SPACE
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
            with tempfile.TemporaryFile() as stderr:  # what C libraries print goes here
                os.dup2(stderr.fileno(), 2)
                report = _measure(READERS[kind], path, trace_memory)
                stderr.seek(0)
                noise = stderr.read().decode(errors="replace").strip()
            if noise and report["status"] in ("ok", "refused"):  # a second line on stderr
                report.update(status="stderr", message=noise.splitlines()[0][:500])
            os.write(w, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        while True:
            done, status, _ = os.wait4(pid, os.WNOHANG)
            if done:
                break
            if time.perf_counter() - start > timeout:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return Outcome("hang", f"killed after {timeout:.0f} s", time.perf_counter() - start)
            time.sleep(0.001)
        with os.fdopen(r, "rb") as f:
            report = f.read()
            r = None
    finally:
        if r is not None:
            os.close(r)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return Outcome("crash", f"killed by {name}", time.perf_counter() - start)
    if not report:
        return Outcome("crash", f"child exited {os.WEXITSTATUS(status)} without a report")
    return Outcome(**json.loads(report))


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def check(outcome: Outcome, path) -> Outcome:
    """The contract: handled, or refused with one line naming the file; in time and memory."""
    assert not outcome.is_bug, f"{path}: {outcome.status}: {outcome.message}"
    if outcome.status == "refused":
        assert outcome.message.startswith(f"{path}: ") and "\n" not in outcome.message, \
            outcome.message
        assert len(outcome.message) > len(f"{path}: ") + 3, outcome.message
    assert outcome.seconds < MAX_SECONDS, (path, outcome)
    assert outcome.memory_bytes < MAX_MEMORY_BYTES, (path, outcome)
    return outcome


def fuzz_one(kind, data: bytes, directory: Path, name="input", trace_memory=False) -> Outcome:
    path = directory / name
    path.write_bytes(data)
    return run_isolated(kind, path, trace_memory=trace_memory)


class Blob(bytes):
    """An input's bytes, shown by hypothesis as what it is rather than 300 KB of escapes."""

    def __new__(cls, data, how):
        blob = super().__new__(cls, data)
        blob.how = how
        return blob

    def __repr__(self):
        return f"<{len(self)} bytes: {self.how}>"


# ------------------------------------------------------------------------ audio inputs


def wav_bytes(samples=b"", fmt=1, channels=1, rate=8000, bits=16, *, block_align=None,
              byte_rate=None, data_size=None, riff_size=None, extensible=False) -> bytes:
    """A RIFF/WAVE file with every header field settable, consistent or not."""
    block_align = (channels * bits // 8) & 0xFFFF if block_align is None else block_align
    byte_rate = (rate * block_align) & 0xFFFFFFFF if byte_rate is None else byte_rate
    fmt_chunk = struct.pack("<HHIIHH", 0xFFFE if extensible else fmt, channels, rate,
                            byte_rate, block_align, bits)
    if extensible:  # WAVE_FORMAT_EXTENSIBLE: the real format is the sub-format GUID's first 2 bytes
        fmt_chunk += struct.pack("<HHIH", 22, bits, 0, fmt) + bytes.fromhex(
            "000000001000800000aa00389b71")
    body = (b"WAVEfmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk + b"data"
            + struct.pack("<I", len(samples) if data_size is None else data_size) + samples)
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def encode_samples(x: np.ndarray, fmt: int, bits: int) -> bytes:
    """Float samples (nominally in [-1, 1]) as the bytes a `fmt`/`bits` WAV would hold."""
    with np.errstate(invalid="ignore", over="ignore"):
        if fmt == 3 and bits in (32, 64):
            return x.astype(f"<f{bits // 8}").tobytes()
        scaled = np.nan_to_num(np.clip(x, -1, 1))
        if bits == 8:
            return (scaled * 127 + 128).astype(np.uint8).tobytes()
        if bits == 24:  # the low 3 bytes of each little-endian int32
            return (scaled * 8_388_607).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
        if bits == 32:
            return (scaled * 2_147_483_647).astype("<i4").tobytes()
        return (scaled * 32767).astype("<i2").tobytes()


@functools.cache
def speech() -> tuple[np.ndarray, int]:
    """A real spoken digit, mono float32: the payload of crafted files."""
    x, rate = sf.read(REPO / "samples" / "audio" / "3_theo_16k.wav", dtype="float32")
    return x, rate


@functools.cache
def audio_seeds() -> dict:
    """The sample WAVs plus the same digit in the other containers libsndfile sniffs."""
    seeds = {p.name: p.read_bytes() for p in SAMPLE_AUDIO}
    x, rate = speech()
    for fmt, subtype in [("FLAC", None), ("OGG", None), ("AIFF", None), ("AU", None),
                         ("RF64", "FLOAT"), ("W64", "PCM_24"), ("CAF", "DOUBLE")]:
        buf = io.BytesIO()
        sf.write(buf, x, rate, format=fmt, subtype=subtype)
        seeds[f"speech.{fmt.lower()}"] = buf.getvalue()
    return seeds


def wav_fields(data: bytes) -> dict:
    """Offset and width of each header field of a RIFF WAV, found by walking its chunks."""
    fields = {"riff_size": (4, 4)}
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if cid == b"fmt ":
            for name, off, width in [("format", 8, 2), ("channels", 10, 2), ("rate", 12, 4),
                                     ("byte_rate", 16, 4), ("block_align", 20, 2),
                                     ("bits", 22, 2)]:
                fields[name] = (pos + off, width)
        elif cid == b"data":
            fields["data_size"] = (pos + 4, 4)
            break
        pos += 8 + size + (size & 1)
    return fields


EXTREMES = [0, 1, 2, 3, 7, 8, 255, 256, 3999, 4000, 32767, 32768, 65535, 65536, 192001,
            2**31 - 1, 2**31, 2**32 - 1]
WAV_MAGICS = [b"", b"RIFF", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"RF64", b"RIFX", b"fLaC",
              b"OggS", b"FORM\x00\x00\x00\x00AIFF", b".snd", b"caff", b"riff"]


@st.composite
def crafted_wavs(draw):
    """A WAV whose header fields are drawn, with speech, silence or special-value samples."""
    fmt = draw(st.sampled_from([1, 1, 3, 3, 6, 7, 0, 2, 0x11, 0x55, 0xFFFF]))
    bits = draw(st.sampled_from([16, 16, 8, 24, 32, 64, 0, 1, 4, 12, 255, 65535]))
    channels = draw(st.one_of(st.sampled_from([1, 1, 2, 0, 32, 33, 65535]),
                              st.integers(0, 65535)))
    rate = draw(st.one_of(st.sampled_from([8000, 16000, 44100, 0, 1, 3999, 4000, 192000,
                                           192001, 10**6, 2**32 - 1]),
                          st.integers(0, 2**32 - 1)))
    frames = draw(st.sampled_from([0, 1, 2, 799, 800, 4000, 8000, 24000]))
    content = draw(st.sampled_from(["speech", "speech", "silence", "nan", "inf", "huge",
                                    "tiny", "noise"]))
    x, _ = speech()
    x = np.resize(x, frames).astype(np.float64)
    if content == "silence":
        x[:] = 0
    elif content in ("nan", "inf") and frames:
        where = draw(st.lists(st.integers(0, frames - 1), min_size=1, max_size=3))
        x[where] = np.nan if content == "nan" else draw(st.sampled_from([np.inf, -np.inf]))
    elif content == "huge":
        x *= draw(st.sampled_from([1e10, 3e38, 1e300]))
    elif content == "tiny":
        x *= draw(st.sampled_from([1e-30, 1e-40, 1e-300]))
    elif content == "noise":
        x = np.random.default_rng(draw(st.integers(0, 99))).uniform(-1, 1, frames)
    stored = min(max(channels, 1), 4)  # the header may claim 65535 channels; 4 are written
    samples = encode_samples(np.repeat(x[:, None], stored, axis=1).ravel(), fmt, bits)
    overrides = draw(st.fixed_dictionaries({}, optional={
        "data_size": st.sampled_from([0, 1, 2**31, 2**32 - 1]),
        "riff_size": st.sampled_from([0, 4, 2**32 - 1]),
        "block_align": st.sampled_from([0, 1, 65535]),
        "byte_rate": st.sampled_from([0, 1, 2**32 - 1]),
        "extensible": st.booleans(),
    }))
    how = f"wav fmt={fmt} bits={bits} channels={channels} rate={rate} frames={frames} " \
          f"{content} {overrides}"
    return Blob(wav_bytes(samples, fmt, channels, rate, bits, **overrides), how)


@st.composite
def mutated_files(draw, seeds, fields_of=None):
    """A seed file with up to 4 mutations: truncation, header fields, byte flips, junk."""
    name, data = draw(st.sampled_from(sorted(seeds.items())))
    data, done = bytearray(data), []
    ops = ["truncate", "flip", "overwrite", "junk", "header"] if fields_of else \
        ["truncate", "flip", "overwrite", "junk"]
    for op in draw(st.lists(st.sampled_from(ops), min_size=1, max_size=4)):
        if not data:
            break
        done.append(op)
        if op == "truncate":
            del data[draw(st.integers(0, len(data) - 1)):]
            done[-1] += f" to {len(data)}"
        elif op == "flip":
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "overwrite":  # a 2- or 4-byte field near the start, either byte order
            pos = draw(st.integers(0, max(0, min(len(data), 96) - 4)))
            width, order = draw(st.sampled_from([2, 4])), draw(st.sampled_from(["<", ">"]))
            value = draw(st.sampled_from(EXTREMES)) % (1 << (8 * width))
            data[pos:pos + width] = struct.pack(order + "HI"[width // 4], value)
        elif op == "junk":
            pos = draw(st.integers(0, len(data)))
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        else:
            fields = fields_of(bytes(data))
            if fields:
                field = draw(st.sampled_from(sorted(fields)))
                pos, width = fields[field]
                value = draw(st.sampled_from(EXTREMES)) % (1 << (8 * width))
                data[pos:pos + width] = struct.pack("<" + "HI"[width // 4], value)
                done[-1] = f"{field}={value}"
    return Blob(data, f"{name} mutated: {', '.join(done)}")


def magic_bytes(magics):
    return st.builds(lambda m, rest: Blob(m + rest, f"{m!r} + random bytes"),
                     st.sampled_from(magics), st.binary(max_size=600))


def audio_inputs():
    return st.one_of(crafted_wavs(), mutated_files(audio_seeds(), wav_fields),
                     magic_bytes(WAV_MAGICS))


# ------------------------------------------------------------------------ image inputs


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width, height, depth=8, color=0, pixels=b"\0" * 64) -> bytes:
    """A PNG with any declared size (CRCs correct, so only the size is a lie)."""
    header = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(pixels)) + png_chunk(b"IEND", b""))


def png_fields(data: bytes) -> dict:
    return {"width": (16, 4), "height": (20, 4)} if data[:8] == b"\x89PNG\r\n\x1a\n" else {}


def digit_image(height, width, ink=255.0, paper=0.0) -> np.ndarray:
    """A '1' and a bar of a '7': enough of a digit for the reader to find it."""
    a = np.full((height, width), paper, np.float64)
    top, bottom, pen = height // 5, height - height // 5, max(1, min(height, width) // 14)
    a[top:bottom, width // 2 - pen: width // 2 + pen + 1] = ink
    a[top: top + pen + 1, width // 4: width // 2] = ink
    return a


@st.composite
def drawn_images(draw):
    """A decodable image of a digit: any size, mode and format, floats with NaN and inf."""
    height, width = draw(st.integers(8, 300)), draw(st.integers(8, 300))
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "LA", "P", "1", "I;16", "I", "F", "CMYK"]))
    fmt = {"F": "TIFF", "I": "TIFF"}.get(mode) or draw(st.sampled_from(
        ["PNG", "PNG", "GIF", "BMP", "TIFF", "JPEG", "PPM", "WEBP"]))
    dark_ink = draw(st.booleans())
    a = digit_image(height, width, *((0.0, 255.0) if dark_ink else (255.0, 0.0)))
    if mode == "F":
        a = a / 255 * draw(st.sampled_from([1.0, 1e30, -1.0, 3e38]))
        special = draw(st.sampled_from([None, np.nan, np.inf, -np.inf]))
        if special is not None:
            a[draw(st.integers(0, height - 1)), :] = special
        img = Image.fromarray(a.astype(np.float32), "F")
    elif mode in ("I;16", "I"):
        img = Image.fromarray((a * 257).astype(np.uint16 if mode == "I;16" else np.int32))
    else:
        img = Image.fromarray(a.astype(np.uint8), "L").convert(mode)
    buf = io.BytesIO()
    try:
        img.save(buf, fmt)
    except (OSError, KeyError, ValueError):  # this mode cannot be stored in this format
        buf, img = io.BytesIO(), img.convert("RGB")
        img.save(buf, fmt if fmt != "WEBP" else "PNG")
    return Blob(buf.getvalue(), f"{width}x{height} {img.mode} {fmt}, dark ink {dark_ink}")


@st.composite
def crafted_pngs(draw):
    side = st.one_of(st.sampled_from([0, 1, 7, 8, 28, 100000, 2**31 - 1, 2**32 - 1]),
                     st.integers(0, 20000))
    args = (draw(side), draw(side), draw(st.sampled_from([8, 1, 2, 4, 16, 3])),
            draw(st.sampled_from([0, 2, 3, 4, 6, 5])),
            draw(st.sampled_from([b"", b"\0" * 64, b"\xff" * 4000])))
    return Blob(png_bytes(*args), "png {}x{} depth {} colour {}, {} pixel bytes".format(
        *args[:4], len(args[4])))


IMAGE_MAGICS = [b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
                b"\xff\xd8\xff\xe0", b"P5\n", b"P6 100000 100000 255\n", b"\x00\x00\x01\x00",
                b"8BPS", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"\x00\x00\x00\x0cjP  "]


@functools.cache
def image_seeds() -> dict:
    return {p.name: p.read_bytes() for p in SAMPLE_IMAGES}


def image_inputs():
    return st.one_of(drawn_images(), crafted_pngs(), mutated_files(image_seeds(), png_fields),
                     magic_bytes(IMAGE_MAGICS))


# ------------------------------------------------------------------------ model inputs


@functools.cache
def model_seeds() -> dict:
    return {p.name: p.read_bytes() for p in FUZZ_MODELS}


@functools.cache
def structure_offsets(name: str) -> np.ndarray:
    """Byte offsets of a model outside its weight buffers: shapes, scales, indices, ops.

    Mutating weights only changes the answers; the loader is hunted in the structure.
    """
    data = model_seeds()[name]
    weights = np.zeros(len(data), bool)
    try:
        from ai_edge_litert import schema_py_generated as schema

        model = schema.Model.GetRootAsModel(data, 0)
        for i in range(model.BuffersLength()):
            buffer = model.Buffers(i)
            if buffer.DataLength():
                start = buffer._tab.Vector(buffer._tab.Offset(4))
                weights[start:start + buffer.DataLength()] = True
    except ImportError:  # no schema module: mutate anywhere
        pass
    return np.flatnonzero(~weights)


@st.composite
def mutated_models(draw):
    name = draw(st.sampled_from(sorted(model_seeds())))
    data = bytearray(model_seeds()[name])
    offsets, changes = structure_offsets(name), {}
    for _ in range(draw(st.integers(1, 3))):
        pos = int(offsets[draw(st.integers(0, len(offsets) - 1))])
        data[pos] = changes[pos] = draw(st.one_of(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]),
                                                  st.integers(0, 255)))
    return Blob(data, f"{name} with bytes {changes}")


@st.composite
def truncated_models(draw):
    name, data = draw(st.sampled_from(sorted(model_seeds().items())))
    length = draw(st.integers(0, len(data) - 1))
    return Blob(data[:length], f"{name} truncated to {length}")


def model_inputs():
    return st.one_of(mutated_models(), truncated_models(),
                     magic_bytes([b"", b"\x1c\x00\x00\x00TFL3", b"\x18\x00\x00\x00TFL3"]))


# ------------------------------------------------------------------------------- tests


@settings(max_examples=100, **FUZZ_SETTINGS)
@given(data=audio_inputs())
def test_fuzzed_audio_is_handled_or_refused_in_one_line(tmp_path, data):
    check(fuzz_one("audio", data, tmp_path, "input.wav"), tmp_path / "input.wav")


@settings(max_examples=80, **FUZZ_SETTINGS)
@given(data=image_inputs())
def test_fuzzed_images_are_handled_or_refused_in_one_line(tmp_path, data):
    check(fuzz_one("image", data, tmp_path, "input.png"), tmp_path / "input.png")


@settings(max_examples=40, **FUZZ_SETTINGS)
@given(data=model_inputs())
def test_fuzzed_models_load_or_are_refused_in_one_line(tmp_path, data):
    check(fuzz_one("model", data, tmp_path, "model.tflite"), tmp_path / "model.tflite")


def _speech_samples(fmt=1, bits=16, channels=1, scale=1.0):
    x, _ = speech()
    x = np.repeat(x[:, None].astype(np.float64) * scale, channels, axis=1).ravel()
    return encode_samples(x, fmt, bits)


NAMED_WAVS = {  # the cases issue 7 names, each with the reason it must give
    "zero_channels": (wav_bytes(_speech_samples(), channels=0), "Channel count is zero"),
    "65535_channels": (wav_bytes(_speech_samples(), channels=65535), "not a WAV file"),
    "33_channels": (wav_bytes(_speech_samples(channels=33), channels=33, rate=16000),
                    "33 channels; at most 32"),
    "rate_1_hz": (wav_bytes(_speech_samples(), rate=1), "sample rate 1 Hz is outside"),
    "rate_1_mhz": (wav_bytes(_speech_samples(), rate=1_000_000), "1000000 Hz is outside"),
    "rate_0": (wav_bytes(_speech_samples(), rate=0), "not a WAV file"),
    "4_gb_declared_32ch_192k": (wav_bytes(_speech_samples(channels=32), channels=32,
                                          rate=192000, data_size=2**32 - 1), "too short"),
    "1_sample": (wav_bytes(b"\x10\x00"), "too short: 0 ms"),
    "0_samples": (wav_bytes(b""), "no audio samples"),
    "nan_sample": (wav_bytes(struct.pack("<f", np.nan) + _speech_samples(3, 32), fmt=3,
                             bits=32, rate=16000), "contains NaN or infinite samples"),
    "inf_sample": (wav_bytes(_speech_samples(3, 32) + struct.pack("<f", -np.inf), fmt=3,
                             bits=32, rate=16000), "contains NaN or infinite samples"),
    "doubles_beyond_float32": (wav_bytes(_speech_samples(3, 64, scale=1e300), fmt=3, bits=64,
                                         rate=16000), "contains NaN or infinite samples"),
    "truncated_header": (wav_bytes(_speech_samples())[:30], "not a WAV file"),
    "random_bytes": (bytes(np.random.default_rng(7).integers(0, 256, 4000, np.uint8)),
                     "not a WAV file"),
    # An MPEG layer I sync word: libsndfile hands it to libmpg123, which printed three
    # "Note: Illegal Audio-MPEG-Header" lines on stderr besides our one.
    "mpeg_like": (b"\xff\xfe\x90\x00" + bytes(np.random.default_rng(0).integers(
        0, 256, 4000, np.uint8)), "not a WAV file"),
}


@pytest.mark.parametrize("name", NAMED_WAVS)
def test_named_bad_wavs_give_their_reason(tmp_path, name):
    data, reason = NAMED_WAVS[name]
    path = tmp_path / f"{name}.wav"
    outcome = check(fuzz_one("audio", data, tmp_path, path.name, trace_memory=True), path)
    assert outcome.status == "refused" and reason in outcome.message, outcome
    assert outcome.memory_bytes < 50 * 2**20  # a 4 GB header allocates nothing like it


def test_float_wav_beyond_full_scale_is_heard_like_the_original(tmp_path):
    # Stereo float32 at 3e38: mixing the channels overflowed float32 (a RuntimeWarning on
    # stderr and a NaN-samples refusal). Levels are normalised, so it is the same clip.
    x, rate = speech()
    x = x / np.abs(x).max()  # peak 1: the two channels' sum at 3e38 exceeds float32's 3.4e38
    sf.write(tmp_path / "plain.wav", x, rate, subtype="FLOAT")
    sf.write(tmp_path / "loud.wav", np.stack([x, x], 1) * np.float32(3e38), rate, subtype="FLOAT")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loud = prepare_wav(tmp_path / "loud.wav")
    np.testing.assert_allclose(loud, prepare_wav(tmp_path / "plain.wav"), atol=1e-5)


NAMED_IMAGES = {
    "0x0": (png_bytes(0, 0), "not an image"),
    "100000x1": (png_bytes(100000, 1, pixels=b"\0" * 100001), "100000x1 px; need at least 8x8"),
    "1x100000": (png_bytes(1, 100000), "1x100000 px; need at least 8x8"),
    "65535x65535": (png_bytes(65535, 65535), "too large"),
    "truncated": (next(iter(image_seeds().values()))[:200], "truncated or corrupt"),
    "blank": (png_bytes(28, 28, pixels=b"\0" * 29 * 28), "no digit found"),
    "random_bytes": (bytes(np.random.default_rng(7).integers(0, 256, 4000, np.uint8)),
                     "not an image"),
}


@pytest.mark.parametrize("name", NAMED_IMAGES)
def test_named_bad_images_give_their_reason(tmp_path, name):
    data, reason = NAMED_IMAGES[name]
    path = tmp_path / f"{name}.png"
    outcome = check(fuzz_one("image", data, tmp_path, path.name), path)
    assert outcome.status == "refused" and reason in outcome.message, outcome


@pytest.mark.parametrize("special", [np.inf, -np.inf, 3e38, -3e38])
def test_float_image_with_extreme_ink_reads_like_plain_ink(tmp_path, special):
    # -inf ink made _to_gray divide by 1 and left -3.4e38 in the paper fit: an overflow
    # warning and no digit. Scaled by the largest magnitude, it is just ink.
    plain, extreme = digit_image(56, 56, ink=np.sign(special)), digit_image(56, 56, ink=special)
    Image.fromarray(plain.astype(np.float32), "F").save(tmp_path / "plain.tiff")
    Image.fromarray(extreme.astype(np.float32), "F").save(tmp_path / "extreme.tiff")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = preprocess_image(tmp_path / "extreme.tiff")
    np.testing.assert_allclose(got, preprocess_image(tmp_path / "plain.tiff"), atol=1e-6)


@pytest.mark.parametrize("length", [0x0F9F01EE, 0x7FFFFFF0, 0xFFFFFFF0],
                         ids=["250MB", "2GB", "4GB"])
def test_a_png_declaring_a_huge_chunk_does_not_allocate_it(tmp_path, length):
    # Pillow skips the rest of the image data with fp.read(declared length), and Python
    # allocated it all up front: 2 GB for 0x7ffffff0 (found by benchmarks/fuzz_report.py).
    buf = io.BytesIO()
    Image.fromarray(digit_image(200, 200).astype(np.uint8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    at = data.index(b"IDAT") - 4
    data[at:at + 4] = struct.pack(">I", length)
    path = tmp_path / "chunk.png"
    outcome = check(fuzz_one("image", bytes(data), tmp_path, path.name, trace_memory=True), path)
    assert outcome.memory_bytes < 50 * 2**20, outcome


def test_a_large_rgba_image_costs_little_more_than_its_pixels(tmp_path):
    # Converting and box-averaging a whole image at once (plus exif_transpose's copy) took
    # 3x its decoded size: 480 MB for a 40 MP RGBA PNG. Strips, and closing the full image
    # before the float copies of the small one, keep it near 1x (1.24x measured; CI once
    # measured 1.64x here when the full image outlived the float copies).
    side = 4000  # 16 MP: decoded as RGBA, 64 MB
    a = digit_image(side, side, ink=0.0, paper=255.0).astype(np.uint8)
    Image.fromarray(np.dstack([a, a, a, np.full_like(a, 255)]), "RGBA").save(
        tmp_path / "big.png", compress_level=1)
    outcome = check(run_isolated("image", tmp_path / "big.png", trace_memory=True),
                    tmp_path / "big.png")
    assert outcome.status == "ok"
    assert outcome.memory_bytes < 1.4 * side * side * 4, outcome


def model_with(byte_changes: dict, source="mnist.int8_io.tflite") -> bytes:
    data = bytearray(model_seeds()[MODELS.joinpath(source).name])
    for pos, value in byte_changes.items():
        data[pos] = value
    return bytes(data)


def tensor_field(name: str, index: int, field: str) -> int:
    """Offset of a tensor's shape[0] ('shape') or first quantization scale byte 3 ('scale')."""
    from ai_edge_litert import schema_py_generated as schema

    data = model_seeds()[name]
    tensor = schema.Model.GetRootAsModel(data, 0).Subgraphs(0).Tensors(index)
    if field == "shape":
        return tensor._tab.Vector(tensor._tab.Offset(4))
    q = tensor.Quantization()
    return q._tab.Vector(q._tab.Offset(8)) + 3  # float32 little-endian: sign and exponent


def test_models_that_crashed_or_swapped_the_interpreter_are_refused(tmp_path):
    # Found by fuzzing: a negative quantization scale made LiteRT abort() the process in
    # allocate_tensors (QuantizeMultiplierSmallerThanOneExp); a batch dimension of 8 million
    # made it allocate 12 GB for 47 s. Both are refused before allocate_tensors now.
    name = "mnist.int8_io.tflite"
    negative_scale = model_with({tensor_field(name, 38, "scale"): 0xC4})  # ~0.07 -> ~-1000
    huge_batch = model_with({tensor_field(name, 34, "shape") + 2: 0x7F})  # 1 -> 8323073
    for data, reason in [(negative_scale, "quantization scale -"), (huge_batch, "MiB")]:
        path = tmp_path / "model.tflite"
        outcome = check(fuzz_one("model", data, tmp_path, path.name), path)
        assert outcome.status == "refused" and reason in outcome.message, outcome
        assert outcome.seconds < 1.0


def test_the_isolation_reports_crashes_and_hangs(tmp_path):
    # The fuzz tests are only as good as this: a native abort or a hang must be seen.
    READERS["abort"] = lambda path: os.abort()
    READERS["sleep"] = lambda path: time.sleep(60)
    try:
        assert run_isolated("abort", tmp_path).status == "crash"
        assert run_isolated("sleep", tmp_path, timeout=1).status == "hang"
    finally:
        del READERS["abort"], READERS["sleep"]


def test_cli_classifies_the_good_files_and_reports_each_bad_one(tmp_path):
    """Issue 7, part 2: a mix of good and bad files; one line per bad file; exit 1."""
    bad = {}
    for name in ("0x0", "100000x1", "truncated", "random_bytes"):
        (tmp_path / f"{name}.png").write_bytes(NAMED_IMAGES[name][0])
        bad[tmp_path / f"{name}.png"] = NAMED_IMAGES[name][1]
    audio_model = (MODELS / "spoken_digits.int8.tflite").is_file()
    if audio_model:  # until the spoken-digit model ships, a WAV is refused for its absence
        for name in ("zero_channels", "4_gb_declared_32ch_192k", "nan_sample"):
            (tmp_path / f"{name}.wav").write_bytes(NAMED_WAVS[name][0])
            bad[tmp_path / f"{name}.wav"] = NAMED_WAVS[name][1]
    good = [SAMPLE_IMAGES[0], SAMPLE_IMAGES[-1]] + (SAMPLE_AUDIO[:1] if audio_model else [])
    files = [good[0], *list(bad)[:2], good[1], *list(bad)[2:], *good[2:]]
    out = run_cli("classify", *files)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    errors = out.stderr.strip().splitlines()
    assert len(errors) == len(bad), out.stderr
    for (path, reason), line in zip(bad.items(), errors):
        assert line.startswith(f"tinydigits: error: {path}: ") and reason in line, (reason, line)
    answers = [line.split()[:2] for line in out.stdout.strip().splitlines()]
    assert answers == [[str(p), p.name.split("_")[0]] for p in good]


@pytest.mark.parametrize("kind", ["audio", "image"])
def test_a_fifo_or_device_is_refused_without_reading_it(tmp_path, kind):
    # Reading a FIFO blocks until a writer comes; /dev/zero never ends. The image reader
    # used to call a FIFO an "empty file" (st_size 0): right outcome, wrong reason.
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        outcome = check(run_isolated(kind, path, timeout=10), path)
        assert outcome.status == "refused" and outcome.message.endswith("not a regular file")


def test_classify_does_not_wait_on_a_fifo(tmp_path):
    fifo = tmp_path / "drawing.png"
    os.mkfifo(fifo)
    out = run_cli("classify", fifo, SAMPLE_IMAGES[-1], timeout=5)
    assert out.returncode == 1 and "not a regular file" in out.stderr
