"""Waveform augmentation for spoken digits, aimed at voices and microphones not in FSDD.

Training side (NumPy + soxr). Each function takes a raw 8 kHz recording and a NumPy
Generator; `recording` chains them in the order a real capture would: a voice at its own
speed and pitch, in a room, through a microphone with its own colour, with background
noise, at some level. The result then goes through the device's own preparation
(`tinydigits.audio.prepare_clip`), so training sees exactly what the Pi will compute.
"""

import numpy as np
import soxr

RATE = 8000
SPEED = (0.85, 1.15)  # tempo and pitch together: shorter/longer vocal tracts, fast talkers
REVERB_PROBABILITY = 0.5
RT60 = (0.05, 0.5)  # s: from a close headset to a tiled kitchen
TILT_PROBABILITY = 0.6  # microphones differ most in their high-frequency response
NOISE_PROBABILITY = 0.8
SNR_DB = (0.0, 40.0)  # speech-to-noise ratio over the speech span
NOISE_COLOURS = (0.0, 1.0, 2.0)  # spectral slope: white, pink, brown (rumble)
LEAD = (0.0, 0.6)  # s of background before and after the word, as a real capture has
GAIN_DB = (-40.0, 6.0)  # recordings arrive anywhere from 1% of full scale to clipping


def speed(x, rng):
    factor = rng.uniform(*SPEED)
    return soxr.resample(x, RATE * factor, RATE).astype(np.float32)


def reverb(x, rng):
    """Convolve with a synthetic room: a direct path and an exponentially decaying tail."""
    rt60 = rng.uniform(*RT60)
    t = np.arange(int(rt60 * RATE)) / RATE
    tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    ir = np.concatenate([[1.0], 0.3 * tail / np.sqrt(np.sum(tail**2) + 1e-9)])
    n = fast_length(len(x) + len(ir))
    wet = np.fft.irfft(np.fft.rfft(x, n) * np.fft.rfft(ir, n), n)
    return wet[: len(x)].astype(np.float32)


def tilt(x, rng):
    """A random 3-tap filter: a cheap microphone or phone with more or less treble."""
    taps = np.array([1.0, rng.uniform(-0.6, 0.6), rng.uniform(-0.3, 0.3)])
    return np.convolve(x, taps / np.abs(taps).sum(), mode="same").astype(np.float32)


def coloured_noise(n, rng, slope):
    size = fast_length(n)
    spectrum = np.fft.rfft(rng.standard_normal(n), size)
    f = np.maximum(np.fft.rfftfreq(size), 1.0 / size)
    noise = np.fft.irfft(spectrum / f ** (slope / 2), size)[:n]
    return (noise / (noise.std() + 1e-12)).astype(np.float32)


def fast_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: NumPy's FFT of a length with a large prime factor
    is many times slower (training strings spent most of their making time there)."""
    best = 1 << max(0, int(n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def recording(x, rng):
    """One random, plausible re-recording of the clean clip `x` (float32, 8 kHz)."""
    x = speed(x, rng)
    if rng.random() < REVERB_PROBABILITY:
        x = reverb(x, rng)
    if rng.random() < TILT_PROBABILITY:
        x = tilt(x, rng)
    speech_rms = np.sqrt(np.mean(x**2)) + 1e-9
    lead, trail = (int(rng.uniform(*LEAD) * RATE) for _ in range(2))
    x = np.concatenate([np.zeros(lead, np.float32), x, np.zeros(trail, np.float32)])
    if rng.random() < NOISE_PROBABILITY:
        snr = rng.uniform(*SNR_DB)
        noise = coloured_noise(len(x), rng, rng.choice(NOISE_COLOURS))
        x = x + noise * speech_rms / 10 ** (snr / 20)
    x = x * 10 ** (rng.uniform(*GAIN_DB) / 20) / (np.abs(x).max() + 1e-9)
    return np.clip(x, -1, 1).astype(np.float32)


def shift(window, rng, max_seconds=0.1):
    """Move the placed utterance by up to `max_seconds`: detection is never exact."""
    k = int(rng.uniform(-max_seconds, max_seconds) * RATE)
    out = np.zeros_like(window)
    if k >= 0:
        out[k:] = window[: len(window) - k]
    else:
        out[:k] = window[-k:]
    return out


# ------------------------------------------------------------------ not a digit (class 10)


def _envelope(n, rng):
    """A smooth random swell: attack, hold, decay, like a breath or a rustle."""
    attack, decay = (max(1, int(n * rng.uniform(0.1, 0.5))) for _ in range(2))
    env = np.ones(n)
    env[:attack] = np.linspace(0, 1, attack)
    env[n - decay:] *= np.linspace(1, 0, decay)
    return env


def _clicks(n, rng, count):
    """Sharp decaying bursts at random times: keys, taps, a mouse."""
    x = np.zeros(n)
    for start in rng.integers(0, n - 200, count):
        length = int(rng.integers(20, 200))
        x[start:start + length] += rng.uniform(0.3, 1) * rng.standard_normal(length) * np.exp(
            -np.arange(length) / rng.uniform(5, 40))
    return x


def not_a_digit(rng, fragments=None):
    """A sound that `listen` will hear between digits and must not print: breath, rustle,
    clicks and typing, knocks, creaks and buzzes, hum, whistles, a cough-like burst, or a
    40-120 ms scrap of speech."""
    n = int(rng.uniform(0.3, 1.2) * RATE)
    t = np.arange(n) / RATE
    kind = rng.integers(9)
    if kind == 0:  # breath / rustle: shaped noise swelling and fading
        x = coloured_noise(n, rng, rng.uniform(0, 2)) * _envelope(n, rng)
        x = tilt(x.astype(np.float32), rng)
    elif kind == 1:  # a few clicks
        x = _clicks(n, rng, rng.integers(1, 6))
    elif kind == 2:  # typing: a dense run of clicks
        x = _clicks(n, rng, rng.integers(6, 40))
    elif kind == 3:  # mains hum and its harmonics, switched on and off
        f0 = rng.choice([50.0, 60.0])
        x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 6))
        x = x * _envelope(n, rng)
    elif kind == 4:  # whistle or beep: a tone, maybe sweeping
        f = rng.uniform(300, 3000) + rng.uniform(-500, 500) * t
        x = np.sin(2 * np.pi * np.cumsum(f) / RATE) * _envelope(n, rng)
    elif kind == 5:  # knock / thump: low damped resonances, one or a few
        x = np.zeros(n)
        for start in rng.integers(0, n - 100, rng.integers(1, 4)):
            length = min(n - start, int(rng.uniform(0.03, 0.25) * RATE))
            tt = np.arange(length) / RATE
            f = rng.uniform(60, 400)
            x[start:start + length] += np.sin(2 * np.pi * f * tt) * np.exp(-tt / rng.uniform(
                0.01, 0.06)) + 0.2 * rng.standard_normal(length) * np.exp(-tt / 0.005)
    elif kind == 6:  # creak / buzz: a pulse train with no vowel in it (door, chair, motor)
        f0 = rng.uniform(40, 300) * (1 + rng.uniform(-0.3, 0.3) * t)
        phase = np.cumsum(f0) / RATE
        x = (np.mod(phase, 1.0) < rng.uniform(0.05, 0.5)).astype(float) - 0.5
        x = tilt(x.astype(np.float32), rng) * _envelope(n, rng)
    elif kind == 7:  # cough / thump: a loud short broadband burst
        length = int(rng.uniform(0.05, 0.25) * RATE)
        x = np.zeros(n)
        x[:length] = coloured_noise(length, rng, 1.0) * np.exp(-np.arange(length) / (0.3 * length))
        x = np.roll(x, rng.integers(0, n - length))
    else:  # a scrap of a word: too short to be a digit
        if fragments is None or not len(fragments):
            return not_a_digit(rng)
        clip = fragments[rng.integers(len(fragments))]
        length = int(rng.uniform(0.04, 0.12) * RATE)
        start = rng.integers(0, max(1, len(clip) - length))
        x = np.zeros(n)
        piece = clip[start:start + length]
        x[:len(piece)] = piece * np.hanning(len(piece))
        x = np.roll(x, rng.integers(0, n - length))
    x = x + coloured_noise(n, rng, rng.choice(NOISE_COLOURS)) * rng.uniform(0, 0.05) * np.std(x)
    x = x * 10 ** (rng.uniform(*GAIN_DB) / 20) / (np.abs(x).max() + 1e-9)
    return x.astype(np.float32)
