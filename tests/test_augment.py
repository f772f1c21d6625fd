"""Training-side waveform augmentation: the FFT sizes it picks and the noise it makes."""

import numpy as np
import pytest

from tinydigits.augment import RATE, coloured_noise, fast_length, reverb


def _factors_are_2_3_5(m):
    for p in (2, 3, 5):
        while m % p == 0:
            m //= p
    return m == 1


def test_fast_length_is_the_smallest_2_3_5_smooth_length_at_least_n():
    for n in range(1, 3000):
        m = fast_length(n)
        assert m >= n and _factors_are_2_3_5(m), n
        assert not any(_factors_are_2_3_5(k) for k in range(n, m)), n


@pytest.mark.parametrize("slope", [0.0, 1.0, 2.0])
def test_coloured_noise_has_the_asked_spectral_slope(slope):
    """White, pink and brown: power falls as 1/f^slope. A prime length (the slow FFT case)
    is made at a fast length and cut; the colour must survive that."""
    n = 16001  # prime
    rng = np.random.default_rng(0)
    x = coloured_noise(n, rng, slope)
    assert x.shape == (n,) and x.dtype == np.float32
    assert abs(float(x.std()) - 1.0) < 1e-3
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(n, 1 / RATE)
    band = (f > 50) & (f < 3500)
    fitted = np.polyfit(np.log(f[band]), np.log(power[band] + 1e-12), 1)[0]
    assert fitted == pytest.approx(-slope, abs=0.15)


def test_reverb_keeps_the_length_and_the_direct_sound():
    rng = np.random.default_rng(1)
    x = np.zeros(7919, np.float32)  # prime length
    x[100] = 1.0
    y = reverb(x, rng)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.allclose(y[:100], 0, atol=1e-6)  # nothing before the sound (causal)
    assert y[100] == pytest.approx(1.0, abs=1e-5)  # the direct path, unchanged
    assert np.abs(y[101:]).max() > 0.001  # and a tail after it
