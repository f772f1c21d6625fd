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


# ------------------------------------------------ log-mel sequence augmentation (training)


def test_sequence_augment_is_the_identity_outside_training():
    from tinydigits.blocks import SequenceAugment

    x = np.random.default_rng(2).normal(size=(2, 37, 40)).astype(np.float32)
    layer = SequenceAugment(seed=3)
    assert np.array_equal(np.asarray(layer(x)), x)
    changed = np.asarray(layer(x, training=True))
    assert changed.shape == x.shape and not np.allclose(changed, x)


def test_sequence_augment_warp_moves_a_formant_and_masks_fill_with_the_mean():
    from tinydigits.blocks import SequenceAugment

    x = np.zeros((64, 25, 40), np.float32)
    x[:, :, 20] = 10.0  # one bright mel bin: a formant
    warp_only = SequenceAugment(warp=0.1, shift=1.5, freq_masks=0, time_masks=0, seed=4)
    peaks = np.asarray(warp_only(x, training=True)).mean(1).argmax(1)
    assert set(peaks) - {20} and np.all(np.abs(peaks - 20) <= 3)  # moved, by a few bins
    masks_only = SequenceAugment(warp=0, shift=0, freq_masks=2, freq_width=5, time_masks=3,
                                 time_width=5, seed=5)
    y = np.asarray(masks_only(x + 1.0, training=True))
    kept = np.isclose(y, x + 1.0)
    mean = (x + 1.0).mean(axis=(1, 2), keepdims=True)
    assert np.allclose(np.where(kept, 0, y), np.where(kept, 0, np.broadcast_to(mean, y.shape)),
                       atol=1e-5)
    assert 0.3 < kept.mean() < 1.0  # something masked, most kept
