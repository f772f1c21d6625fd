"""Device side: NumPy, soxr, sounddevice and LiteRT only (soundfile reads `--input`; never
TensorFlow or Keras).

`tinydigits listen`: hear digits spoken into a microphone, with pauses between them, and
print each one once; print nothing for silence, breath, clicks, typing or room noise.

    source: microphone (PortAudio callback -> queue) or a file (soundfile blocks), any rate
      -> mono -> soxr.ResampleStream -> 8 kHz
      -> Segmenter: energy over an adaptive noise floor, pre-roll, hangover -> utterances
      -> audio.prepare_clip + Classifier -> reject "none" and low confidence -> one line

`--input FILE` runs a file through exactly this path (as fast as it decodes, or paced
with `--realtime`), so everything but the PortAudio callback is tested without hardware.
sounddevice is imported only when a microphone is opened: `--input` needs no PortAudio.

Exit status: 0 the stream ended or was stopped (Ctrl-C, SIGTERM); 1 the audio input cannot
be used (bad file, no microphone, no PortAudio, no supported rate, microphone lost);
2 bad usage or no usable model.
"""

import argparse
import json
import queue
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from tinydigits import audio, catalog, ctc, manifest
from tinydigits.errors import InputError, RuntimeUnavailable
from tinydigits.features import AUDIO
from tinydigits.runtime import (
    NOT_A_DIGIT,
    VARIANTS,
    Classifier,
    model_path,
    models_dir,
    quiet_native_stderr,
)

RATE = AUDIO.sample_rate  # 8000 Hz: what the model hears
HOP_SECONDS = audio.HOP_SECONDS  # 10 ms hops, 20 ms frames: the same framing as find_utterance
BLOCK_SECONDS = 0.02  # capture / file block: 960 frames at 48 kHz; latency vs wake-ups

# Segmenter. Levels are measured after pre-emphasis, which flattens rumble: without it
# 20 ms frames of brown noise wander up to 11 dB above their floor, with it 2.6 dB (white,
# pink or brown noise, 8-48 kHz). The floor is a low percentile of the last few seconds'
# frame levels: it follows a fan switching on, yet words with pauses do not lift it.
PRE_EMPHASIS = 0.97  # y[n] = x[n] - 0.97 x[n-1], for the detector only
FLOOR_SECONDS = 3.0  # the floor forgets in 0.3 s that the room was louder
FLOOR_PERCENTILE = 10
WARMUP_SECONDS = 0.25  # the first frames only teach the floor: device pops, filter ramps
START_DB = 9.0  # a word starts this far above the floor: FSDD words in pink noise at
# 20 dB SNR peak 18-35 dB above it (median 25), steady noise frames stay under +3 dB
CONTINUE_DB = 4.0  # and goes on while this far above the floor it started on
MIN_LEVEL_DBFS = -75.0  # never speech below this: dither, 1-LSB toggling, digital silence
HANGOVER_SECONDS = 0.15  # quiet this long ends a word: bridges the closures in "six" and
# "eight" as find_utterance does (0.15 s). No FSDD test word of 300 splits at 0.10-0.25 s
# (pink noise at 20, 40, 60 dB SNR); it is most of the end-to-print latency.
PRE_ROLL_SECONDS = 0.2  # kept before the first loud frame: soft onsets ("f", "s", "th"),
# and a noise floor for find_utterance to measure the word against
MIN_SPEECH_SECONDS = 0.08  # shorter loud spans are clicks and taps, not digits
MAX_SPEECH_SECONDS = 1.5  # longer loud spans are not one digit (FSDD's words: median 0.31 s,
# 99.9% under 0.8 s) but a louder room: their level is the new floor (a fan switched on)
MAX_STRING_SECONDS = 10.0  # with the digit-string model: a PIN or phone number said in one
# breath is one loud span; longer ones are still a louder room

# Rejection. The model's 11th class ("none": breath, clicks, hum, scraps of words) rejects
# most non-digits; the threshold rejects the doubtful rest.
DEFAULT_THRESHOLD = 0.7  # keeps 99.7% / 97.7% of 300 FSDD test words at 20 / 10 dB SNR
# (the int8 model of 2026-12-06); 1 of 144 everyday non-digit sounds still prints. 0.6 keeps
# a new voice's paused digit or two more and prints more wrong ones (README). `python
# benchmarks/listen_latency.py thresholds` prints the table.

# The model: tinydigits/models/spoken_digits.{variant}.tflite, as `tinydigits classify` uses.

# Capture.
TRY_RATES = (48000, 44100, 16000, 32000, 22050, 8000, 96000)  # after the device's own rate
# soxr's variable-rate engine, at a fixed ratio: it holds back at most 50 ms (median 40) of
# a 44.1/48 kHz stream; the fixed-rate "HQ" engine 173 ms (median 93) at 48 kHz, in bursts.
# Flat to 3.95 kHz, -75 dB at 4.05 kHz; output aligned with input to 0.25 ms.
RESAMPLER = dict(quality="HQ", vr=True)
QUEUE_SECONDS = 10.0  # audio the queue holds if classification stalls; beyond it, drops
REPORT_SECONDS = 10.0  # lost audio is reported at most this often, and at the end
STALL_SECONDS = 2.0  # no audio this long from a stopped stream (5x: any stream): lost


class MicrophoneError(RuntimeError):
    """The microphone cannot be used, with the reason in words."""


# ----------------------------------------------------------------------------- segmenting


@dataclass(frozen=True)
class Utterance:
    audio: np.ndarray  # float32 at 8 kHz: pre-roll, the loud span, the hangover
    start: float  # s since the stream began: start of the first loud frame
    end: float  # s: end of the last loud frame


class Segmenter:
    """Streaming utterance detector: feed 8 kHz blocks of any size, get finished words.

    Frame levels (20 ms frames every 10 ms, pre-emphasised, mean removed) are compared with
    the noise floor: a word starts on a frame START_DB above it and ends after
    HANGOVER_SECONDS of frames less than CONTINUE_DB above the floor it started on. Loud
    spans shorter than MIN_SPEECH_SECONDS (clicks) are dropped; a sound louder than the
    floor for longer than MAX_SPEECH_SECONDS (a fan switched on, music, a sentence) becomes
    the new floor at once and is heard again against it. Results do not depend on how the
    stream is cut into blocks.
    """

    def __init__(self, rate=RATE, max_speech_seconds=MAX_SPEECH_SECONDS,
                 hangover_seconds=HANGOVER_SECONDS):
        self.rate = rate
        self.hop = int(round(rate * HOP_SECONDS))  # 80 samples
        hops = lambda seconds: int(round(seconds / HOP_SECONDS))
        self.pre_roll = hops(PRE_ROLL_SECONDS)  # 20
        self.hangover = hops(hangover_seconds)  # 15 by default
        self.min_hops = hops(MIN_SPEECH_SECONDS)  # 8
        self.max_hops = hops(max_speech_seconds)  # 150; 1000 with a string model
        self.warmup = hops(WARMUP_SECONDS)  # 25
        self._levels = deque(maxlen=hops(FLOOR_SECONDS))  # recent frame levels, dB
        self._pending = np.zeros(0, np.float32)  # samples short of a whole hop...
        self._pending_emphasised = np.zeros(0, np.float32)  # ...and the same, pre-emphasised
        self._last_sample = np.float32(0.0)
        self._last_power = None
        self._recent = deque(maxlen=self.pre_roll + 2)  # (hop, level) before a word starts
        self._word = None  # (hop, level) of the word being heard, or None between words
        self._hop_index = 0  # index of the next hop
        self._floor = 0.0  # the floor the current word started on
        self._first = self._last = 0  # first and last loud hop of the current word
        # The opening: every (hop, level) since the stream began, until a word is heard or
        # the longest word has gone by. A stream that starts mid-word (a file whose first
        # word starts at once) teaches the floor that word's level; once quieter frames
        # bring the floor down, the opening is heard again against it (`_replay_opening`).
        self._opening = []
        self._opening_peak = -np.inf
        self._opening_hops = self.max_hops + self.pre_roll

    @property
    def noise_floor_db(self) -> float:
        if not self._levels:
            return float("nan")
        return float(np.percentile(np.fromiter(self._levels, float), FLOOR_PERCENTILE))

    def feed(self, x) -> list[Utterance]:
        """Add samples (1-D, at `rate`); return the words that ended within them."""
        x = np.asarray(x, np.float32).ravel()
        if len(x) == 0:
            return []
        emphasised = x - np.float32(PRE_EMPHASIS) * np.r_[self._last_sample, x[:-1]]
        self._last_sample = x[-1]
        x = np.concatenate([self._pending, x])
        emphasised = np.concatenate([self._pending_emphasised, emphasised])
        n = len(x) // self.hop
        self._pending, self._pending_emphasised = x[n * self.hop:], emphasised[n * self.hop:]
        hops = x[: n * self.hop].reshape(n, self.hop)
        powers = emphasised[: n * self.hop].reshape(n, self.hop).var(axis=1, dtype=np.float64)
        done = []
        for hop, power in zip(hops, powers):
            j = self._hop_index
            self._hop_index += 1
            last_power, self._last_power = self._last_power, float(power)
            measured = None  # the frame of hops j-1 and j, in dB
            if last_power is not None:
                measured = 10.0 * np.log10((last_power + power) / 2 + 1e-20)
            level = measured if j > self.warmup else None  # None while warming up
            done += self._step(j, hop, level, learn=True, opening_level=measured)
        return done

    def flush(self) -> list[Utterance]:
        """End of stream: a word still being heard ends here."""
        return self._finish() if self._word is not None else []

    def _step(self, j, hop, level, learn, opening_level=None) -> list[Utterance]:
        (self._recent if self._word is None else self._word).append((hop, level))
        if self._opening is not None:  # warm-up frames count here: a word may end in them
            self._opening.append((hop, opening_level))
            if self._word is not None or len(self._opening) > self._opening_hops:
                self._opening = None  # a word was heard, or the opening is over
            elif opening_level is not None:
                self._opening_peak = max(self._opening_peak, opening_level)
        if level is None:
            return []
        floor = self.noise_floor_db
        if learn:
            self._levels.append(level)
        if self._opening is not None and learn and \
                self._opening_peak > max(floor + START_DB, MIN_LEVEL_DBFS):
            return self._replay_opening(j)
        if self._word is None:
            if level > max(floor + START_DB, MIN_LEVEL_DBFS):  # False while floor is nan
                self._word, self._floor = list(self._recent), floor
                self._first, self._last = j - 1, j
            return []
        if level > max(self._floor + CONTINUE_DB, MIN_LEVEL_DBFS):
            self._last = j
        if self._last - self._first + 1 > self.max_hops:
            return self._too_long(j)
        if j - self._last >= self.hangover:
            return self._finish()
        return []

    def _too_long(self, j) -> list[Utterance]:
        """Longer than any digit: a louder room (a fan switched on, or a microphone that
        sent digital silence first). Its level is the floor now, and its audio is heard
        again against that floor, so a word said over it is still found."""
        word, self._word = self._word, None
        self._recent.clear()
        self._levels.clear()
        self._levels.extend(level for _, level in word[-(j - self._first + 1):]
                            if level is not None)
        done = []
        for k, (hop, level) in enumerate(word, start=j - len(word) + 1):
            done += self._step(k, hop, level, learn=False)
        return done

    def _replay_opening(self, j) -> list[Utterance]:
        """The opening heard again against today's floor, as `_too_long` hears a long
        sound, its warm-up frames included: a word the stream began with is found."""
        opening, self._opening = self._opening, None
        self._recent.clear()
        done = []
        for k, (hop, level) in enumerate(opening, start=j - len(opening) + 1):
            done += self._step(k, hop, level, learn=False)
        return done

    def _finish(self) -> list[Utterance]:
        word, self._word = self._word, None
        self._recent.clear()
        self._recent.extend(word[-self._recent.maxlen:])  # the hangover is the next pre-roll
        if self._last - self._first + 1 < self.min_hops:
            return []
        return [Utterance(audio=np.concatenate([hop for hop, _ in word]),
                          start=self._first * self.hop / self.rate,
                          end=(self._last + 1) * self.hop / self.rate)]


# ----------------------------------------------------------------------------- recognising


@dataclass(frozen=True)
class Detection:
    digit: str  # "0"-"9", or a string of digits; for a rejected sound, the model's best
    # label or "" (no speech)
    confidence: float  # of the least sure digit
    start: float  # s since the stream began
    end: float
    accepted: bool
    reason: str = ""  # why a sound was rejected
    confidences: tuple = ()  # per digit, for a string
    times: tuple = ()  # per digit (start, end) s since the stream began, for a string


def recognise(utterance: Utterance, classifier, threshold: float, strings=None) -> Detection:
    """Recognise one utterance once; reject "none", low confidence, and no speech at all.

    With the digit-string model (`strings`), an utterance in which it hears two digits or
    more is that string; one longer than any single word (MAX_SPEECH_SECONDS) is the
    string model's alone; the isolated-word model answers the rest, as without it. In a
    string, the isolated-word model judges each digit again on its stretch (`ctc.rescore`),
    and the string is kept or dropped whole on its median digit confidence: one doubtful
    digit of a PIN said by a new voice is worth printing (it is shown in its confidence),
    and dropping the line turned every digit of it into a miss.
    """
    span = dict(start=utterance.start, end=utterance.end)
    long = utterance.end - utterance.start > MAX_SPEECH_SECONDS
    if strings is not None:
        try:
            x, offset = audio.prepare_string(utterance.audio, RATE)
        except InputError:
            return Detection("", 0.0, accepted=False, reason="no speech found", **span)
        head = utterance.start - PRE_ROLL_SECONDS  # where utterance.audio begins
        logits = strings.scores(x)
        decoded = ctc.greedy_decode(logits, offset_seconds=max(0.0, head) + offset)
        if ctc.words(logits) >= 2 or long or classifier is None:
            if classifier is not None:
                decoded = ctc.rescore(logits, x, isolated_judge(classifier), RATE,
                                      offset_seconds=max(0.0, head) + offset)
            if not decoded.digits:
                return Detection("", 0.0, accepted=False, reason="no digits heard", **span)
            detail = dict(confidences=decoded.confidences, times=decoded.times, **span)
            if np.median(decoded.confidences) < threshold:
                return Detection(decoded.digits, decoded.confidence, accepted=False,
                                 reason=f"median confidence under {threshold:g}", **detail)
            return Detection(decoded.digits, decoded.confidence, accepted=True, **detail)
    try:
        x = audio.prepare_clip(utterance.audio, RATE)
    except InputError:  # find_utterance saw no word in it: a steady sound
        return Detection("", 0.0, accepted=False, reason="no speech found", **span)
    label, confidence = classifier.predict(x)
    if label == NOT_A_DIGIT:
        return Detection(label, confidence, accepted=False, reason="not a digit", **span)
    if confidence < threshold:
        return Detection(label, confidence, accepted=False,
                         reason=f"confidence under {threshold:g}", **span)
    return Detection(label, confidence, accepted=True, **span)


def isolated_judge(classifier):
    """The isolated-word model's opinion of a stretch of a string (8 kHz), for
    `ctc.rescore`: 11 probabilities, digits 0-9 and then "none", or None where it finds
    no word at all."""
    def judge(stretch):
        try:
            p = classifier.probabilities(audio.prepare_clip(stretch, RATE))
        except InputError:
            return None
        return np.r_[p[:10], p[10:].sum()]
    return judge


def detections(source, classifier, threshold: float, clock=time.monotonic, strings=None,
               pause=HANGOVER_SECONDS):
    """The one code path from any source to detections: (Detection, latency or None).

    `source` yields (block, arrival) with `block` float32 (frames,) or (frames, channels)
    at `source.rate` and `arrival` the monotonic time its last frame was captured (None for
    a file read as fast as possible). Latency is from the end of the word to now. `pause`
    seconds of quiet end a word or string.
    """
    resampler = None
    if source.rate != RATE:
        resampler = soxr.ResampleStream(source.rate, RATE, 1, dtype="float32", **RESAMPLER)
    segmenter = Segmenter(RATE, MAX_STRING_SECONDS if strings is not None else
                          MAX_SPEECH_SECONDS, pause)
    origin = None  # monotonic time of the stream's first frame: the earliest estimate wins
    frames = 0
    for block, arrival in source:
        if block.ndim == 2:
            block = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
        block = np.ascontiguousarray(block, dtype=np.float32)
        frames += len(block)
        if arrival is not None:
            start = arrival - frames / source.rate
            origin = start if origin is None else min(origin, start)
        words = segmenter.feed(resampler.resample_chunk(block) if resampler else block)
        for utterance in words:
            yield _judged(utterance, classifier, threshold, origin, clock, strings)
    if resampler is not None:
        words = segmenter.feed(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    else:
        words = []
    for utterance in words + segmenter.flush():
        yield _judged(utterance, classifier, threshold, origin, clock, strings)


def _judged(utterance, classifier, threshold, origin, clock, strings=None):
    detection = recognise(utterance, classifier, threshold, strings)
    latency = None if origin is None else clock() - (origin + utterance.end)
    return detection, latency


# --------------------------------------------------------------------------------- sources


class FileSource:
    """An audio file in blocks, as a microphone would deliver it; `realtime` paces it."""

    def __init__(self, path, realtime=False, block_seconds=BLOCK_SECONDS):
        self.path, self.realtime = str(path), realtime
        self.rate, self.channels, _ = audio.audio_info(path)
        self.block = max(1, int(round(self.rate * block_seconds)))
        self.overflows = 0  # a file never overflows; the field keeps sources alike
        self.description = (f"{self.path} ({self.rate} Hz, {self.channels} ch"
                            f"{', real time' if realtime else ''})")

    def __iter__(self):
        t0, frames = time.monotonic(), 0
        try:
            with sf.SoundFile(self.path) as f:
                while True:
                    block = f.read(self.block, dtype="float32", always_2d=True)
                    if len(block) == 0:
                        return
                    if not np.isfinite(block).all():
                        raise InputError(self.path, "contains NaN or infinite samples")
                    frames += len(block)
                    arrival = None
                    if self.realtime:
                        arrival = t0 + frames / self.rate
                        time.sleep(max(0.0, arrival - time.monotonic()))
                    yield block, arrival
        except (sf.LibsndfileError, RuntimeError) as e:
            if frames == 0:
                raise InputError(self.path, f"unreadable audio data ({e})") from None
            # corrupt part-way: what decoded has been heard; stop like the file ended


def _sounddevice():
    """Import sounddevice here, not at the top: `--input` must work without PortAudio."""
    try:
        with quiet_native_stderr():  # PortAudio's ALSA probing prints "ALSA lib ..." lines
            import sounddevice
    except OSError:  # sounddevice raises OSError when libportaudio is not found
        raise MicrophoneError("PortAudio is not installed: sudo apt install libportaudio2") \
            from None
    except ImportError:
        raise MicrophoneError("sounddevice is not installed: pip install sounddevice") from None
    return sounddevice


def _parse_device(device):
    return int(device) if isinstance(device, str) and device.strip().isdigit() else device


class MicrophoneSource:
    """The microphone: PortAudio's callback only copies each block into a queue.

    The first rate the device accepts among its own default and TRY_RATES is used
    (USB microphones often offer only 44.1/48 kHz); the stream resamples it to 8 kHz.
    """

    def __init__(self, device=None, block_seconds=BLOCK_SECONDS):
        sd = self._sd = _sounddevice()
        device = _parse_device(device)
        try:
            with quiet_native_stderr():
                info = sd.query_devices(device, "input")
        except (ValueError, sd.PortAudioError) as e:
            if device is None:
                raise MicrophoneError("no microphone found (no default input device; see "
                                      "`tinydigits listen --list-devices`)") from None
            raise MicrophoneError(f"no input device {device!r} ({e}); see "
                                  "`tinydigits listen --list-devices`") from None
        self.device = info["index"]
        self.name = info["name"]
        if info["max_input_channels"] < 1:
            raise MicrophoneError(f"device {self.name!r} has no input channels")
        self.rate, self.channels = self._choose_format(info)
        self.block = int(round(self.rate * block_seconds))
        self.queue = queue.Queue(maxsize=int(QUEUE_SECONDS / block_seconds))
        self.overflows = 0  # PortAudio input overflows: the device dropped audio
        self.dropped = 0  # blocks the full queue refused: classification fell behind
        self.description = f"{self.name!r} at {self.rate} Hz"
        self.stream = None

    def _choose_format(self, info):
        sd = self._sd
        rates = [int(info["default_samplerate"])] + [r for r in TRY_RATES
                                                      if r != int(info["default_samplerate"])]
        channels = [1] + ([min(2, info["max_input_channels"])]
                          if info["max_input_channels"] > 1 else [])
        for rate in rates:
            for ch in channels:
                try:
                    with quiet_native_stderr():
                        sd.check_input_settings(device=self.device, channels=ch,
                                                samplerate=rate, dtype="float32")
                    return rate, ch
                except (ValueError, sd.PortAudioError):
                    continue
        raise MicrophoneError(f"device {self.name!r} refuses every sample rate tried "
                              f"({', '.join(str(r) for r in rates)} Hz)")

    def _callback(self, indata, frames, time_info, status):
        if status.input_overflow:
            self.overflows += 1
        try:
            self.queue.put_nowait((indata.copy(), time.monotonic()))
        except queue.Full:
            self.dropped += 1

    def start(self):
        try:
            with quiet_native_stderr():
                self.stream = self._sd.InputStream(
                    device=self.device, samplerate=self.rate, channels=self.channels,
                    dtype="float32", blocksize=self.block, callback=self._callback)
                self.stream.start()
        except self._sd.PortAudioError as e:
            self.close()
            raise MicrophoneError(f"cannot open {self.description}: {e}") from None

    def close(self):
        if self.stream is not None:
            try:
                self.stream.close(ignore_errors=True)
            finally:
                self.stream = None

    def __iter__(self):
        waited, reported, reported_at = 0.0, 0, -np.inf
        while True:
            try:
                item = self.queue.get(timeout=0.1)
            except queue.Empty:
                waited += 0.1
                stopped = not (self.stream and self.stream.active)
                if waited >= STALL_SECONDS and stopped or waited >= 5 * STALL_SECONDS:
                    raise MicrophoneError(f"{self.description} stopped delivering audio "
                                          "(unplugged?)") from None
                continue
            waited = 0.0
            lost = self.overflows + self.dropped
            if lost > reported and item[1] - reported_at > REPORT_SECONDS:
                reported, reported_at = lost, item[1]
                print(f"tinydigits: warning: {self.overflows} input overflows, "
                      f"{self.dropped} blocks dropped so far: audio was lost (CPU too busy?)",
                      file=sys.stderr, flush=True)
            yield item


def list_devices(out=sys.stdout) -> int:
    sd = _sounddevice()
    try:
        with quiet_native_stderr():
            devices, apis = sd.query_devices(), sd.query_hostapis()
        default = sd.default.device[0]
    except sd.PortAudioError as e:
        raise MicrophoneError(f"PortAudio cannot list devices ({e})") from None
    inputs = [d for d in devices if d["max_input_channels"] > 0]
    if not inputs:
        print("no input devices found", file=out)
        return 0
    print("   #  input devices (use --device # or a part of the name)", file=out)
    for d in inputs:
        mark = "*" if d["index"] == default else " "
        print(f"{mark} {d['index']:>2}  {d['name']}  ({apis[d['hostapi']]['name']}, "
              f"{d['max_input_channels']} ch, {d['default_samplerate']:g} Hz)", file=out)
    return 0


# ------------------------------------------------------------------------- command line


def _number_in(low, high, unit=""):
    """An argparse type: a number from `low` to `high`, or a one-line error saying so."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value:g}{unit} is outside {low:g}-{high:g}{unit}")
        return value

    return parse


parse_threshold = _number_in(0.0, 1.0)  # classify's --threshold too
_pause = _number_in(0.1, 1.0, " s")


def add_parser(commands):
    """Register `tinydigits listen` on the subparsers object of the main parser."""
    p = commands.add_parser(
        "listen", help="print each digit spoken into the microphone (or a file)",
        description="Listen to the default microphone and print one line per digit or "
                    "number said: the digits, the lowest confidence, and when it was said "
                    "(seconds since start). Digits may be said one at a time or in one "
                    "breath (a PIN, a phone number): a line is printed when a pause ends "
                    "them. Silence, breath, clicks and room noise print nothing. Ctrl-C "
                    "stops.")
    p.add_argument("--device", metavar="ID|NAME",
                   help="input device: its number or part of its name from --list-devices "
                        "(default: the system's default microphone)")
    p.add_argument("--list-devices", action="store_true",
                   help="list the input devices with their number and default rate, and exit")
    p.add_argument("--threshold", type=parse_threshold, default=DEFAULT_THRESHOLD, metavar="P",
                   help="print a digit only if the model gives it at least this probability "
                        "(a number: the median of its digits' probabilities; "
                        f"0-1, default {DEFAULT_THRESHOLD}): raise it if noises print "
                        "digits, lower it if quiet words are missed")
    p.add_argument("--pause", type=_pause, default=HANGOVER_SECONDS, metavar="SECONDS",
                   help=f"quiet that ends a line (0.1-1, default {HANGOVER_SECONDS:g}): a "
                        "number said in one breath sometimes comes as two or three lines; "
                        "0.25 keeps most whole, and every answer comes that much later")
    p.add_argument("--model", metavar="VARIANT|PATH",
                   help=f"a variant of the shipped spoken-digit model ({', '.join(VARIANTS)})"
                        " or a .tflite path (default: the shipped int8 model)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per line: digits, confidence, start, end (seconds "
                        "since the stream began), latency (seconds from the end of the "
                        "speech to the print; live and --realtime only); 'digit' too for a "
                        "lone digit, per-digit 'confidences' and 'times' for a string")
    p.add_argument("--input", metavar="FILE",
                   help="stream an audio file through the same path instead of the "
                        "microphone (as fast as possible unless --realtime)")
    p.add_argument("--realtime", action="store_true",
                   help="with --input: pace the file as a microphone would deliver it")
    p.add_argument("--show-rejected", action="store_true",
                   help="also print each rejected sound on stderr with the model's best "
                        "guess and why it was rejected: use it to tune --threshold")
    p.set_defaults(run=run)
    return p


def _load(path):
    model = Classifier(path)
    if message := manifest.warning(model.path):
        print(f"tinydigits: warning: {message}", file=sys.stderr, flush=True)
    return model


def load_models(choice):
    """(isolated-word classifier, digit-string model or None). A variant name picks that
    variant of both shipped models; a path to either kind of model uses it alone."""
    model = _load(model_path("audio", choice))
    if model.output == "ctc":  # a string model given by path: it alone answers
        return None, model
    if model.input_shape != (AUDIO.window_samples,):
        raise RuntimeUnavailable(f"{model.path}: takes input {model.input_shape}, "
                                 f"not {AUDIO.window_samples} samples of 8 kHz audio")
    spec = catalog.SPECS.get("digit_strings")
    if spec is None or choice not in (None, *VARIANTS):
        return model, None
    variant = choice if choice in spec.variants else spec.default_variant
    return model, _load(models_dir() / f"{spec.stem}.{variant}.tflite")


def _print(detection: Detection, latency, as_json: bool):
    if as_json:
        record = {"digits": detection.digit, "confidence": round(detection.confidence, 4),
                  "start": round(detection.start, 3), "end": round(detection.end, 3)}
        if len(detection.digit) == 1:
            record["digit"] = detection.digit
        if detection.times:
            record["confidences"] = [round(c, 4) for c in detection.confidences]
            record["times"] = [[round(a, 3), round(b, 3)] for a, b in detection.times]
        if latency is not None:
            record["latency"] = round(latency, 4)
        print(json.dumps(record), flush=True)
    else:
        print(f"{detection.digit}  {detection.confidence:.2f}  {detection.start:.2f} s",
              flush=True)


def _error(message) -> None:
    print(f"tinydigits: error: {message}", file=sys.stderr, flush=True)


def _stop_on_sigterm():
    """systemd stops a service with SIGTERM: stop as cleanly as Ctrl-C does."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded): keep the default
        pass


def run(args) -> int:
    try:
        if args.list_devices:
            return list_devices()
    except MicrophoneError as e:
        _error(e)
        return 1
    if args.realtime and not args.input:
        _error("--realtime only applies to --input FILE")
        return 2
    try:
        classifier, strings = load_models(args.model)
    except RuntimeUnavailable as e:
        _error(e)
        return 2
    _stop_on_sigterm()
    source = None
    try:
        if args.input:
            source = FileSource(args.input, realtime=args.realtime)
        else:
            source = MicrophoneSource(args.device)
            source.start()
        print(f"tinydigits: listening to {source.description}; Ctrl-C stops",
              file=sys.stderr, flush=True)
        for detection, latency in detections(source, classifier, args.threshold,
                                             strings=strings, pause=args.pause):
            if detection.accepted:
                _print(detection, latency, args.json)
            elif args.show_rejected:
                print(f"rejected {detection.digit or '-'}  {detection.confidence:.2f}  "
                      f"{detection.start:.2f} s: {detection.reason}", file=sys.stderr,
                      flush=True)
    except KeyboardInterrupt:
        pass
    except (InputError, MicrophoneError) as e:
        _error(e)
        return 1
    finally:
        if isinstance(source, MicrophoneSource):
            source.close()
            if source.overflows or source.dropped:
                print(f"tinydigits: warning: audio was lost: {source.overflows} input "
                      f"overflows, {source.dropped} blocks dropped (CPU too busy?)",
                      file=sys.stderr, flush=True)
    return 0
