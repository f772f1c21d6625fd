"""The Keras audio front end against the whole filterbank: its blocks multiply only the FFT
bins their filters hear, and must sum what the dense 129 x 40 filterbank sums."""

import numpy as np


def test_the_filterbank_blocks_sum_what_the_whole_filterbank_sums(fsdd):
    import keras

    from tinydigits.blocks import LogMelSpectrogram, mel_filterbank

    layer = LogMelSpectrogram()
    c = layer.config
    n = 4000  # 0.5 s of five real FSDD words, padded or cut to one length
    x = np.stack([np.pad(fsdd.audio[i], (0, n))[:n] for i in range(0, 1500, 300)])
    x = x.astype(np.float32)
    real, imag = keras.ops.stft(x, c["frame_length"], c["frame_step"], c["fft_length"],
                                window="hann", center=True)
    power = np.asarray(real) ** 2 + np.asarray(imag) ** 2
    dense = mel_filterbank(c["sample_rate"], c["fft_length"], c["mel_bins"], c["fmin"],
                           c["fmax"])
    expected = np.log(power @ dense + c["floor"])
    np.testing.assert_allclose(np.asarray(layer.log_mel(x)), expected, rtol=1e-4, atol=1e-4)
    assert sum(b.size for *_, b in layer.blocks) < dense.size / 4  # the zeros are left out
