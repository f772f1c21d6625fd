"""Audio for the `listen` tests and benchmark: digit streams, noise, a virtual microphone.

NumPy, soxr and soundfile only, plus the PulseAudio command-line tools for the virtual
microphone (`pulseaudio`, `pactl`, `pacat`, `paplay`: Debian package pulseaudio-utils).
"""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tinydigits import digit_strings
from tinydigits.audio import PAD_SECONDS, find_utterance

FSDD_RATE = 8000
SPEECH_RMS = 0.1  # every word's level over its span: -20 dBFS
NOISE_RMS = 0.01  # background noise in the long streams: -40 dBFS
REPO = Path(__file__).resolve().parent.parent


@dataclass
class DigitStream:
    path: Path
    digits: list  # the digits said, in order ("0"-"9"), or strings of them
    spans: list  # (start, end) of each word's (string's) speech, seconds since the file began
    rate: int
    seconds: float


def noise(n, rng, slope=1.0, rms=NOISE_RMS):
    """Coloured Gaussian noise: slope 0 white, 1 pink, 2 brown (power ~ 1/f^slope)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    x = np.fft.irfft(spectrum / f ** (slope / 2), n)
    return (x * rms / (x.std() + 1e-12)).astype(np.float32)


def to_file(path, mono, rate, channels=2):
    """Write `mono` as 16-bit PCM; a second channel is the same sound 4 dB quieter."""
    x = mono if channels == 1 else np.stack([mono] + [mono * 0.63] * (channels - 1), axis=1)
    peak = float(np.abs(x).max())
    if peak > 0.99:
        x = x * (0.99 / peak)
    sf.write(str(path), x, rate, subtype="PCM_16")


def build_digit_stream(path, fsdd, count=40, seed=0, snr_db=20.0, gaps=(0.3, 2.0),
                       rate=48000, channels=2, lead=1.0, tail=1.0, noise_slope=1.0):
    """FSDD test clips in a random (seeded) order with random gaps, in noise, as one file.

    Every digit appears count/10 times, each clip at most once. Each word is set to
    SPEECH_RMS over its speech span and pink noise (full band, at `rate`) is added
    `snr_db` below it (None: no noise). Written at `rate` with `channels` channels, 16-bit
    PCM.
    """
    rng = np.random.default_rng(seed)
    _, test = fsdd.official_split()
    order = rng.permutation(np.resize(np.arange(10), count))
    pools = {d: list(rng.permutation(test[fsdd.digit[test] == d])) for d in range(10)}
    pieces, digits, spans = [np.zeros(int(lead * FSDD_RATE), np.float32)], [], []
    cursor = len(pieces[0])
    for d in order:
        clip = np.asarray(fsdd.audio[pools[d].pop()], np.float32)
        clip = clip - clip.mean()
        start, end = find_utterance(clip)
        clip = clip * (SPEECH_RMS / np.sqrt(np.mean(clip[start:end] ** 2)))
        digits.append(str(d))
        pad = PAD_SECONDS * FSDD_RATE  # find_utterance's margin: the word is inside it
        spans.append(((cursor + min(start + pad, end)) / FSDD_RATE,
                      (cursor + max(end - pad, start)) / FSDD_RATE))
        gap = np.zeros(int(rng.uniform(*gaps) * FSDD_RATE), np.float32)
        pieces += [clip, gap]
        cursor += len(clip) + len(gap)
    pieces.append(np.zeros(int(tail * FSDD_RATE), np.float32))
    speech = soxr.resample(np.concatenate(pieces), FSDD_RATE, rate, quality="HQ")
    mixed = speech
    if snr_db is not None:
        mixed = speech + noise(len(speech), rng, noise_slope, SPEECH_RMS / 10 ** (snr_db / 20))
    to_file(path, mixed, rate, channels)
    return DigitStream(Path(path), digits, spans, rate, len(mixed) / rate)


def build_string_stream(path, fsdd, count=12, seed=0, snr_db=20.0, lengths=(3, 8),
                        pauses=(1.5, 2.5), rate=48000, channels=2):
    """Digit strings said in one breath, each by one FSDD test speaker, with pauses between
    strings, in pink noise: `listen`'s string path end to end.

    Each string is `lengths` digits of FSDD test words joined as in training with fluent
    gaps only (digit_strings.FLUENT_GAP: -30 ms overlaps to 100 ms), then set to SPEECH_RMS.
    `digits` holds one string per entry; `spans` each string's (start, end). A string's end
    is its last word's trimmed end less PAD_SECONDS, which may be up to 40 ms before the
    speech really ends (digit_strings trims 0-40 ms of the 50 ms pad): latencies measured
    from it err long.
    """
    from tinydigits import digit_strings

    rng = np.random.default_rng(seed)
    _, test = fsdd.official_split()
    builder = digit_strings.StringBuilder(fsdd, test, rerecorded=False, noise_in_gaps=False)
    pieces, strings, spans = [np.zeros(FSDD_RATE, np.float32)], [], []
    cursor = len(pieces[0])
    for _ in range(count):
        digits = rng.integers(0, 10, rng.integers(lengths[0], lengths[1] + 1))
        speaker = builder.speakers[rng.integers(len(builder.speakers))]
        words = [builder.word(rng, speaker, int(d)) for d in digits]
        gaps = [int(rng.uniform(*digit_strings.FLUENT_GAP) * FSDD_RATE) for _ in words[1:]]
        x = digit_strings.join(words, gaps)
        x = x * (SPEECH_RMS / np.sqrt(np.mean(x**2)))
        strings.append("".join(str(d) for d in digits))
        spans.append((cursor / FSDD_RATE, (cursor + len(x)) / FSDD_RATE - PAD_SECONDS))
        gap = np.zeros(int(rng.uniform(*pauses) * FSDD_RATE), np.float32)
        pieces += [x.astype(np.float32), gap]
        cursor += len(x) + len(gap)
    pieces.append(np.zeros(FSDD_RATE, np.float32))
    speech = soxr.resample(np.concatenate(pieces), FSDD_RATE, rate, quality="HQ")
    mixed = speech
    if snr_db is not None:
        mixed = speech + noise(len(speech), rng, 1.0, SPEECH_RMS / 10 ** (snr_db / 20))
    to_file(path, mixed, rate, channels)
    return DigitStream(Path(path), strings, spans, rate, len(mixed) / rate)


def build_noise_file(path, seconds=30.0, seed=0, rate=48000, channels=2,
                     slopes=(1.0, 0.0, 2.0)):
    """Background noise alone at NOISE_RMS: pink, white, brown in turn, crossfaded."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    part, fade, k = n // len(slopes), int(0.5 * rate), len(slopes)
    out = np.zeros(n, np.float32)
    for i, slope in enumerate(slopes):
        a, b = max(0, i * part - fade), n if i == k - 1 else min(n, (i + 1) * part + fade)
        w = np.ones(b - a, np.float32)
        if i > 0:
            w[:2 * fade] = np.linspace(0, 1, 2 * fade)
        if i < k - 1:
            w[-2 * fade:] = np.linspace(1, 0, 2 * fade)
        out[a:b] += noise(b - a, rng, slope) * np.sqrt(w)
    to_file(path, out, rate, channels)


def align(truth, printed):
    """Levenshtein alignment of two label sequences: counts of each kind of edit."""
    counts = {"correct": 0, "substitutions": 0, "deletions": 0, "insertions": 0}
    for edit, _, _ in digit_strings.alignment(truth, printed):
        counts[edit if edit == "correct" else edit + "s"] += 1
    return counts


def listen_command(*args):
    return [sys.executable, "-m", "tinydigits.cli", "listen", *map(str, args)]


# ------------------------------------------------------------------- virtual microphone

PULSE_TOOLS = ("pulseaudio", "pactl", "pacat", "paplay")


def missing_pulse_tools():
    return [tool for tool in PULSE_TOOLS if shutil.which(tool) is None]


@contextlib.contextmanager
def virtual_microphone(workdir, warmup=2.5):
    """A private PulseAudio server whose default microphone hears what is played to it.

    A null sink `virt` (48 kHz) is the default output; its monitor `virt.monitor` is the
    default input. Yields the environment for clients (PortAudio reaches PulseAudio through
    ALSA's pulse plugin, Debian package libasound2-plugins). Everything lives in `workdir`
    (HOME with an .asoundrc) or a private /tmp/tdpa-* runtime dir: nothing of the real user's
    is read or written.
    Every process started is stopped by its PID on the way out, also on failure.
    """
    workdir = Path(workdir)
    # A unix socket path must fit in 108 bytes: keep the runtime dir short, not in workdir.
    runtime = Path(tempfile.mkdtemp(prefix="tdpa-", dir="/tmp" if os.path.isdir("/tmp") else None))
    home = workdir / "pulse-home"
    (home / ".config" / "pulse").mkdir(parents=True, exist_ok=True)
    socket = runtime / "native"
    (home / ".config" / "pulse" / "client.conf").write_text("autospawn = no\n")
    (home / ".asoundrc").write_text("pcm.!default { type pulse }\nctl.!default { type pulse }\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "ALSA_"))}
    env.update(XDG_RUNTIME_DIR=str(runtime), HOME=str(home), PULSE_SERVER=f"unix:{socket}",
               OPENBLAS_NUM_THREADS="1")
    log = open(workdir / "pulseaudio.log", "w")
    started = []
    try:
        started.append(subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--system=false", "--exit-idle-time=-1",
             "--use-pid-file=no", "--disallow-exit", "--log-target=stderr",
             "-L", f"module-native-protocol-unix socket={socket} auth-anonymous=1",
             "-L", "module-null-sink sink_name=virt rate=48000",
             "-L", "module-always-sink"],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log))
        deadline = time.monotonic() + 15
        while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode:
            if started[0].poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError("pulseaudio did not start: "
                                   + (workdir / "pulseaudio.log").read_text()[-2000:])
            time.sleep(0.1)
        for command in (["pactl", "set-default-sink", "virt"],
                        ["pactl", "set-default-source", "virt.monitor"]):
            subprocess.run(command, env=env, check=True, capture_output=True)
        # A low-latency reader kept on the monitor: without it each new recording client
        # loses its first 0.4-2 s while PulseAudio resizes the monitor's buffers.
        started.append(subprocess.Popen(
            ["pacat", "-r", "--latency-msec=10", "--device=virt.monitor", "--raw", "/dev/null"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log))
        time.sleep(warmup)
        yield env
    finally:
        for process in reversed(started):
            stop(process)
        log.close()
        shutil.rmtree(runtime, ignore_errors=True)


def stop(process, timeout=5.0):
    """Stop one process we started, by its PID: SIGTERM, then SIGKILL."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def play(path, env):
    """Play a file into the virtual microphone's sink and wait until it has been heard."""
    subprocess.run(["paplay", "--device=virt", str(path)], env=env, check=True,
                   capture_output=True, timeout=300)


def play_in_background(path, env):
    """Start playing a file into the sink; stop it with `stop(process)`."""
    return subprocess.Popen(["paplay", "--device=virt", str(path)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


# ------------------------------------------------------------------- sounds that are not digits


def _decay(n, rate, tau):
    return np.exp(-np.arange(n) / (tau * rate))


def not_digit_sounds(rng, rate=FSDD_RATE):
    """One of each kind of everyday non-speech sound, as (name, float32 at `rate`).

    Independent of the training side's `augment.not_a_digit`: typing, knocks, a clap,
    breath, a cough-like burst, a whistle, a beep, mains hum, a chair creak.
    """
    def seconds(s):
        return int(s * rate)

    sounds = []
    x = np.zeros(seconds(rng.uniform(1.0, 2.0)), np.float32)  # typing: 6-14 key clicks
    for at in np.sort(rng.uniform(0, len(x) / rate - 0.05, rng.integers(6, 15))):
        n = seconds(rng.uniform(0.005, 0.02))
        x[seconds(at):seconds(at) + n] += noise(n, rng, 0.0, 0.2) * _decay(n, rate, 0.004)
    sounds.append(("typing", x))
    for f in rng.uniform(70, 200, 2):  # knocks on a table: low decaying thumps
        n = seconds(0.25)
        t = np.arange(n) / rate
        sounds.append(("knock", (0.4 * np.sin(2 * np.pi * f * t) * _decay(n, rate, 0.04)
                                 + noise(n, rng, 1.0, 0.05) * _decay(n, rate, 0.01))
                       .astype(np.float32)))
    n = seconds(0.08)
    sounds.append(("clap", noise(n, rng, 0.5, 0.3) * _decay(n, rate, 0.012)))
    for _ in range(2):  # breath in / out: pink noise swelling and fading
        n = seconds(rng.uniform(0.5, 1.2))
        swell = np.sin(np.linspace(0, np.pi, n)) ** 2
        sounds.append(("breath", noise(n, rng, rng.uniform(0.5, 1.5), 0.05) * swell))
    n = seconds(0.3)  # a cough-like burst: fast attack, noisy, decaying
    sounds.append(("cough", noise(n, rng, 1.0, 0.3) * _decay(n, rate, 0.08)))
    for _ in range(2):  # whistles: a sweeping tone
        n = seconds(rng.uniform(0.3, 0.8))
        f = rng.uniform(800, 2500) + rng.uniform(-400, 400) * np.arange(n) / n
        sounds.append(("whistle", (0.1 * np.sin(2 * np.pi * np.cumsum(f) / rate)
                                   * np.sin(np.linspace(0, np.pi, n)) ** 0.5)
                       .astype(np.float32)))
    n = seconds(0.2)  # a beep: a steady tone switched on and off
    sounds.append(("beep", (0.1 * np.sin(2 * np.pi * 1000 * np.arange(n) / rate))
                   .astype(np.float32)))
    n = seconds(0.6)  # mains hum switched on and off
    t = np.arange(n) / rate
    sounds.append(("hum", (0.05 * sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8)))
                   .astype(np.float32)))
    n = seconds(0.7)  # a chair creak: a buzzy, wandering low tone
    f = 180 + 60 * np.sin(np.linspace(0, 3, n))
    creak = np.sign(np.sin(2 * np.pi * np.cumsum(f) / rate)) * np.sin(np.linspace(0, np.pi, n))
    sounds.append(("creak", (0.05 * creak).astype(np.float32)))
    return sounds


def build_not_digit_stream(path, repeats=3, seed=0, rate=48000, channels=2, gaps=(0.5, 1.5),
                           kinds=None):
    """Non-digit sounds (`not_digit_sounds`, `repeats` rounds, shuffled; only `kinds` if
    given) in pink noise at NOISE_RMS, 48 kHz stereo. Returns [(name, start, end)] in
    seconds, in order."""
    rng = np.random.default_rng(seed)
    pieces, events, cursor = [np.zeros(FSDD_RATE, np.float32)], [], FSDD_RATE
    for _ in range(repeats):
        sounds = [(n, x) for n, x in not_digit_sounds(rng) if kinds is None or n in kinds]
        for i in rng.permutation(len(sounds)):
            name, sound = sounds[i]
            gap = np.zeros(int(rng.uniform(*gaps) * FSDD_RATE), np.float32)
            pieces += [sound, gap]
            events.append((name, cursor / FSDD_RATE, (cursor + len(sound)) / FSDD_RATE))
            cursor += len(sound) + len(gap)
    x = soxr.resample(np.concatenate(pieces), FSDD_RATE, rate, quality="HQ")
    to_file(path, x + noise(len(x), rng, 1.0), rate, channels)
    return events
