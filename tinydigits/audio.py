"""Device side: NumPy, soundfile and soxr only (never TensorFlow or Keras).

Turns any WAV the world sends into what the model hears: 1 s of mono float32 at
8 kHz with the spoken digit centred and its level normalised. Training runs every
FSDD clip through `prepare_clip` too, so training and device inputs are prepared
by the same lines of code.

    read_wav -> resample -> find_utterance -> normalise_level -> fit_to_window

Files that cannot be handled correctly raise `InputError(path, reason)`.
"""

import os
import stat

import numpy as np
import soundfile as sf
import soxr

from tinydigits.errors import InputError
from tinydigits.features import AUDIO
from tinydigits.runtime import quiet_native_stderr

# Reading files.
MAX_SECONDS = 10.0  # classify refuses longer files: a stream belongs to `tinydigits listen --input`
MIN_SECONDS = 0.1  # shorter than any spoken digit (FSDD's shortest clip is 0.14 s)
MIN_RATE, MAX_RATE = 4000, 192000  # Hz; below 4 kHz there is no speech band left to hear
MAX_CHANNELS = 32  # more is a broken header, not a microphone array we could mix sensibly
READ_BLOCK = 16384  # frames per read: peak memory is the mono result plus one block

# Finding the utterance: frame energies in dB, compared with the clip's own noise floor,
# so the decision does not depend on the recording level.
HOP_SECONDS = 0.010  # frames are two hops long: 20 ms, 160 samples at 8 kHz
FLOOR_PERCENTILE = 5  # the noise floor; FSDD clips are cut tight, so few frames are silence
MIN_CONTRAST_DB = 4.0  # loudest frame over the floor; below it the clip is stationary:
# white noise reaches 2.8 dB (0.3-10 s, 8 or 48 kHz), the flattest FSDD clip 5.3 dB
SPEECH_RISE_DB = 3.0  # a frame this far above the floor is speech (noise frames: +1 dB);
# half the contrast where that is less: a word with no silence around it is all speech
SPEECH_RANGE_DB = 40.0  # and within this of the loudest frame: quieter is breath or hum
MIN_PEAK_DBFS = -85.0  # a quieter loudest frame is no speech: 16-bit dither and 1-LSB
# toggling stay under -90 dBFS; FSDD's quietest clip played 30 dB down still peaks at -78
MAX_GAP_SECONDS = 0.15  # bridge shorter pauses: the closure in "six", "eight"
MIN_WORD_SECONDS = 0.06  # a shorter burst is a click, not a word
PAD_SECONDS = 0.05  # keep soft onsets and releases just under the threshold
STRING_MARGIN_SECONDS = 0.3  # background kept around a digit string (training: 0.05-0.5 s)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def audio_info(path) -> tuple[int, int, int]:
    """(rate, channels, frames) from the file's header, after checking that it is a regular,
    non-empty file that libsndfile can parse, with a usable rate and channel count. Reads
    no samples: `read_wav` and `listen --input` both start here."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except OSError as e:
        raise InputError(path, f"cannot open ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(path, "is a directory, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(path, "not a regular file")  # a FIFO or device would block or never end
    if st.st_size == 0:
        raise InputError(path, "empty file (0 bytes)")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise InputError(path, f"cannot open ({e.strerror})") from None

    try:
        with quiet_native_stderr():  # libmpg123 prints "Note: Illegal Audio-MPEG-Header"
            info = sf.info(str(path))  # for any file it takes for MPEG audio
    except Exception as e:  # sf.LibsndfileError for anything libsndfile cannot parse
        reason = getattr(e, "error_string", None) or str(e)
        raise InputError(path, f"not a WAV file (libsndfile: {reason.rstrip('.')})") from None

    rate, channels, frames = int(info.samplerate), int(info.channels), int(info.frames)
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InputError(path, f"sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
    if channels < 1:
        raise InputError(path, "no audio channels")
    if channels > MAX_CHANNELS:
        raise InputError(path, f"{channels} channels; at most {MAX_CHANNELS} are supported")
    if frames <= 0:
        raise InputError(path, "no audio samples")
    return rate, channels, frames


def read_wav(path, max_seconds=MAX_SECONDS) -> tuple[np.ndarray, int]:
    """Decode an audio file into float32 mono in [-1, 1] and its sample rate.

    Any format libsndfile reads (WAV, WAVEX, RF64, FLAC, OGG...), any rate in 4-192 kHz,
    up to 32 channels (mixed to mono by their mean), 8-bit to 64-bit float samples.
    The length is checked from the header, so an over-long file is never read.
    """
    rate, channels, frames = audio_info(path)
    if frames / rate > max_seconds:
        raise InputError(
            path,
            f"too long: {frames / rate:.1f} s; classify takes clips up to {max_seconds:g} s "
            "(use `tinydigits listen --input FILE` for streams)",
        )
    _check_duration(path, frames, rate)

    mono = np.zeros(frames, np.float32)
    got = 0
    try:
        with quiet_native_stderr(), sf.SoundFile(str(path)) as f:
            block = np.empty((min(READ_BLOCK, frames), channels), np.float32)
            while got < frames:
                k = f.read(min(len(block), frames - got), dtype="float32", out=block).shape[0]
                if k == 0:
                    break  # truncated: libsndfile returns fewer frames than declared
                mono[got : got + k] = block[:k].mean(axis=1, dtype=np.float64)  # no overflow
                got += k
    except Exception as e:  # corrupt data part-way: keep what decoded, if it is enough
        if got == 0:
            reason = getattr(e, "error_string", None) or str(e)
            raise InputError(path, f"unreadable audio data ({reason.rstrip('.')})") from None
    if got == 0:
        raise InputError(path, "no audio samples")
    mono = mono[:got]
    _check_duration(path, got, rate)
    if not np.isfinite(mono).all():
        raise InputError(path, "contains NaN or infinite samples")
    peak = float(np.abs(mono).max())
    if peak > 1.0:
        mono /= peak  # float files may exceed full scale; the level is normalised later anyway
    return mono, rate


def _check_duration(path, frames: int, rate: int) -> None:
    if frames < MIN_SECONDS * rate:
        raise InputError(path, f"too short: {_ms(frames / rate)}; need at least {_ms(MIN_SECONDS)}")


def resample(x, rate, target=AUDIO.sample_rate) -> np.ndarray:
    """`x` (1-D) from `rate` to `target` Hz with soxr's anti-aliased "HQ" filter, float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if rate == target or len(x) == 0:
        return x
    return soxr.resample(x, rate, target, quality="HQ").astype(np.float32, copy=False)


def _frame_db(x: np.ndarray, hop: int) -> np.ndarray:
    """Power in dBFS of 2-hop frames every hop (20 ms / 10 ms), each frame's mean removed.

    Removing the mean ignores DC offsets (FSDD's nicolas records at -43 dBFS of DC; 8-bit
    files carry half an LSB). A partial last hop is ignored.
    """
    n = len(x) // hop
    blocks = x[: n * hop].astype(np.float64).reshape(n, hop)
    sums, energy = blocks.sum(axis=1), np.einsum("ij,ij->i", blocks, blocks)
    mean = (sums[:-1] + sums[1:]) / (2 * hop)
    power = np.maximum((energy[:-1] + energy[1:]) / (2 * hop) - mean * mean, 0.0)
    return 10.0 * np.log10(power + 1e-20)  # -200 dB marks digital silence


def find_utterance(x, rate=AUDIO.sample_rate) -> tuple[int, int] | None:
    """(start, end) in samples of the span holding all speech in `x`, or None if none.

    Speech is every frame SPEECH_RISE_DB above the clip's noise floor (a low percentile of
    its frame energies) and within SPEECH_RANGE_DB of its loudest frame, so the level of
    the recording does not matter. Pauses under MAX_GAP_SECONDS are bridged, bursts under
    MIN_WORD_SECONDS dropped, and PAD_SECONDS added each side (within `x`). Stationary
    sounds (digital silence, dither, steady noise at any level) lack MIN_CONTRAST_DB
    between their loudest frame and their floor: None.
    """
    x = np.asarray(x)
    hop = max(1, int(round(rate * HOP_SECONDS)))
    if len(x) < 3 * hop:
        return None
    db = _frame_db(x, hop)
    floor = float(np.percentile(db, FLOOR_PERCENTILE))
    peak = float(db.max())
    if peak < MIN_PEAK_DBFS or peak - floor < MIN_CONTRAST_DB:
        return None
    rise = min(SPEECH_RISE_DB, (peak - floor) / 2)
    speech = np.flatnonzero(db > max(floor + rise, peak - SPEECH_RANGE_DB))
    # Runs of speech frames with pauses under MAX_GAP_SECONDS bridged, as [first, last].
    breaks = np.flatnonzero((np.diff(speech) - 1) * hop > MAX_GAP_SECONDS * rate)
    firsts = np.r_[speech[0], speech[breaks + 1]]
    lasts = np.r_[speech[breaks], speech[-1]]
    frame = 2 * hop
    words = (lasts - firsts) * hop + frame >= MIN_WORD_SECONDS * rate
    if not words.any():
        return None
    pad = int(round(PAD_SECONDS * rate))
    start = firsts[words][0] * hop - pad
    end = lasts[words][-1] * hop + frame + pad
    return max(0, int(start)), min(len(x), int(end))


def normalise_level(x, span=None) -> np.ndarray:
    """Scale `x` so the RMS of `x[start:end]` is AUDIO.target_rms, then clip to [-1, 1].

    Real recordings range from 1% of full scale to clipping; the model hears one level.
    """
    x = np.asarray(x, dtype=np.float32)
    start, end = span if span is not None else (0, len(x))
    part = x[start:end]
    rms = float(np.sqrt(np.mean(np.square(part, dtype=np.float64)))) if len(part) else 0.0
    if not rms > 0 or not np.isfinite(rms):
        return x.copy()  # silence stays silence
    return np.clip(x * np.float32(AUDIO.target_rms / rms), -1.0, 1.0)


def fit_to_window(x, span=None, n=AUDIO.window_samples) -> np.ndarray:
    """`x[start:end]` centred in `n` zeros (float32, shape (n,)).

    A span longer than `n` keeps its `n` samples with the most energy.
    """
    x = np.asarray(x, dtype=np.float32)
    start, end = span if span is not None else (0, len(x))
    part = x[start:end]
    if len(part) > n:
        energy = np.concatenate([[0.0], np.cumsum(np.square(part, dtype=np.float64))])
        best = int(np.argmax(energy[n:] - energy[:-n]))
        part = part[best : best + n]
    out = np.zeros(n, np.float32)
    offset = (n - len(part)) // 2
    out[offset : offset + len(part)] = part
    return out


def _speech(x, rate, path):
    """Mono 8 kHz float32 without DC, and the span of its speech. Raises InputError."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1:
        raise ValueError(f"expected 1-D audio or (frames, channels), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError(path, "contains NaN or infinite samples")
    if len(x):
        x = x - np.float32(x.mean(dtype=np.float64))  # a DC offset is not speech
    x = resample(x, rate)
    span = find_utterance(x)
    if span is None:
        raise InputError(path, "no speech found")
    return x, span


def prepare_clip(x, rate, path="<audio>") -> np.ndarray:
    """A clip in memory (mono, or (frames, channels)) -> the model's input: float32 (8000,)."""
    x, span = _speech(x, rate, path)
    return fit_to_window(normalise_level(x, span), span)


def prepare_string(x, rate, path="<audio>") -> tuple[np.ndarray, float]:
    """A clip -> what the digit-string model hears, and where that starts in the clip (s):
    float32 (samples,) at 8 kHz, its speech at one level (as `digit_strings.set_level`
    trains it), cut to the speech with STRING_MARGIN_SECONDS either side (the model takes
    any length)."""
    x, (start, end) = _speech(x, rate, path)
    first = max(0, start - int(STRING_MARGIN_SECONDS * AUDIO.sample_rate))
    last = end + int(STRING_MARGIN_SECONDS * AUDIO.sample_rate)
    return normalise_level(x, (start, end))[first:last], first / AUDIO.sample_rate


def prepare_wav(path) -> np.ndarray:
    """An audio file -> the model's input: float32 (8000,). Raises InputError."""
    return prepare_clip(*read_wav(path), path=path)


def prepare_wav_string(path) -> tuple[np.ndarray, tuple[np.ndarray, float]]:
    """An audio file -> (the isolated-word model's input, `prepare_string`'s result)."""
    x, rate = read_wav(path)
    return prepare_clip(x, rate, path), prepare_string(x, rate, path)
