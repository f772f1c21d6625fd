"""Keras building blocks shared by the recipes: conv / residual / pooling, 1D and 2D.

Training side: imports Keras. Blocks are plain functions over the functional API, so
a saved model contains only built-in layers and loads with `safe_mode` on.
"""

import keras
import numpy as np
from keras import layers


def _conv(rank):
    return layers.Conv1D if rank == 1 else layers.Conv2D


def conv_bn_relu(x, filters, kernel_size=3, strides=1, name=None):
    """Convolution without bias (the batch norm has one), batch norm, ReLU."""
    rank = len(x.shape) - 2
    x = _conv(rank)(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                    name=name and f"{name}_conv")(x)
    x = layers.BatchNormalization(name=name and f"{name}_bn")(x)
    return layers.ReLU(name=name and f"{name}_relu")(x)


def residual_block(x, filters, kernel_size=3, name=None):
    """Two convolutions and an identity (or 1x1 projection) shortcut, joined by `Add`."""
    rank = len(x.shape) - 2
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = _conv(rank)(filters, 1, use_bias=False, name=name and f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=name and f"{name}_proj_bn")(shortcut)
    y = conv_bn_relu(x, filters, kernel_size, name=name and f"{name}_a")
    y = _conv(rank)(filters, kernel_size, padding="same", use_bias=False,
                    name=name and f"{name}_b_conv")(y)
    y = layers.BatchNormalization(name=name and f"{name}_b_bn")(y)
    y = layers.Add(name=name and f"{name}_add")([shortcut, y])
    return layers.ReLU(name=name and f"{name}_out")(y)


def max_pool(x, size=2):
    return (layers.MaxPooling1D if len(x.shape) == 3 else layers.MaxPooling2D)(size)(x)


def global_pool(x):
    rank = len(x.shape) - 2
    return (layers.GlobalAveragePooling1D if rank == 1 else layers.GlobalAveragePooling2D)()(x)


def classifier_head(x, classes, dropout=0.0):
    if dropout:
        x = layers.Dropout(dropout)(x)
    return layers.Dense(classes, activation="softmax", name="probabilities")(x)



def mel_filterbank(sample_rate, fft_length, mel_bins, fmin, fmax) -> np.ndarray:
    """(fft_length // 2 + 1, mel_bins) triangular filters on the HTK mel scale."""
    def mel(hz):
        return 1127.0 * np.log1p(np.asarray(hz) / 700.0)

    bins = mel(np.linspace(0, sample_rate / 2, fft_length // 2 + 1))
    edges = np.linspace(mel(fmin), mel(fmax), mel_bins + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


@keras.saving.register_keras_serializable(package="tinydigits")
class LogMelSpectrogram(layers.Layer):
    """Raw audio (batch, samples) -> log-mel image (batch, frames, mel_bins, 1), per clip.

    `keras.layers.MelSpectrogram(power_to_db=True)` clips against the maximum of the
    whole batch, so a quiet clip's features would depend on its batch-mates; here the
    log has a fixed floor and each clip is centred on its own mean, so a batch of 64 in
    training and a batch of 1 on the Pi compute the same thing.

    This layer must stay float32 when the model is quantized: int8 cannot hold a power
    spectrum's ~80 dB range. Int8 exports denylist it by name (`frontend`); for
    dynamic-range export, which quantizes every weight tensor of 1,024+ elements
    together with its input, the mel projection is split into blocks of fewer weights
    (at most 129 x 7 = 903), so the converter leaves it in float32. Each block multiplies
    only the FFT bins its filters hear: the rest of a triangular filterbank is zeros (8.5 KB
    of the int8 string model).
    """

    MAX_FLOAT_BLOCK = 1023  # dynamic-range quantization skips smaller weight tensors

    def __init__(self, sample_rate=8000, frame_length=200, frame_step=80, fft_length=256,
                 mel_bins=40, fmin=40.0, fmax=3800.0, floor=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.config = dict(sample_rate=sample_rate, frame_length=frame_length,
                           frame_step=frame_step, fft_length=fft_length, mel_bins=mel_bins,
                           fmin=fmin, fmax=fmax, floor=floor)
        filters = mel_filterbank(sample_rate, fft_length, mel_bins, fmin, fmax)
        width = max(1, self.MAX_FLOAT_BLOCK // filters.shape[0])  # 7 mel bins per block
        self.blocks = []  # (first FFT bin, last + 1, filters): only the bins a block hears
        for i in range(0, mel_bins, width):
            heard = np.flatnonzero(filters[:, i:i + width].any(axis=1))
            lo, hi = int(heard[0]), int(heard[-1]) + 1
            self.blocks.append((lo, hi, filters[lo:hi, i:i + width]))

    def log_mel(self, audio):
        """(batch, samples) -> log-mel (batch, frames, mel_bins), no normalisation."""
        c = self.config
        real, imag = keras.ops.stft(audio, c["frame_length"], c["frame_step"], c["fft_length"],
                                    window="hann", center=True)
        power = real * real + imag * imag  # (batch, frames, fft_length // 2 + 1)
        mel = keras.ops.concatenate(
            [keras.ops.matmul(power[..., lo:hi], b) for lo, hi, b in self.blocks], -1)
        return keras.ops.log(mel + c["floor"])

    def call(self, audio):
        logmel = self.log_mel(audio)
        logmel = logmel - keras.ops.mean(logmel, axis=(1, 2), keepdims=True)
        return keras.ops.expand_dims(logmel, -1)  # (batch, frames, mel_bins, 1)

    def compute_output_shape(self, input_shape):
        frames = 1 + input_shape[1] // self.config["frame_step"]  # centred frames: 101
        return (input_shape[0], frames, self.config["mel_bins"], 1)

    def get_config(self):
        return {**super().get_config(), **self.config}


@keras.saving.register_keras_serializable(package="tinydigits")
class SpecAugment(layers.Layer):
    """Training only: zero random bands of frames and of mel bins (Park et al., 2019)."""

    def __init__(self, time_masks=2, time_width=10, freq_masks=2, freq_width=6, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.config = dict(time_masks=time_masks, time_width=time_width,
                           freq_masks=freq_masks, freq_width=freq_width, seed=seed)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _masks(self, batch, length, count, width):
        positions = keras.ops.arange(length, dtype="float32")[None, :]
        keep = keras.ops.ones((batch, length))
        for _ in range(count):
            w = keras.random.uniform((batch, 1), 0, width, seed=self.seed_generator)
            start = keras.random.uniform((batch, 1), 0, 1, seed=self.seed_generator) * (length - w)
            inside = keras.ops.logical_and(positions >= start, positions < start + w)
            keep = keep * (1.0 - keras.ops.cast(inside, "float32"))
        return keep

    def call(self, x, training=False):
        if not training:
            return x
        batch, frames, bins = keras.ops.shape(x)[0], x.shape[1], x.shape[2]
        t = self._masks(batch, frames, self.config["time_masks"], self.config["time_width"])
        f = self._masks(batch, bins, self.config["freq_masks"], self.config["freq_width"])
        return x * t[:, :, None, None] * f[:, None, :, None]

    def get_config(self):
        return {**super().get_config(), **self.config}


# ------------------------------------------------------------- sequences (Conv1D + CTC)


@keras.saving.register_keras_serializable(package="tinydigits")
class LogMelFrames(LogMelSpectrogram):
    """The log-mel front end as a sequence: raw audio (batch, samples) -> (batch, frames,
    mel_bins), mel bins as channels for Conv1D, for audio of any length (time axis `None`,
    so a `.tflite` takes any length through `resize_tensor_input`).

    Unlike `LogMelSpectrogram` it removes no per-clip mean: a frame's features depend only
    on the 25 ms of audio under it, so silence padding, the length of a file or the window
    a stream is cut into change nothing. The caller sets the level first, as training does
    (`audio.normalise_level` over the speech span). Same filterbank blocks, same float32
    rules for export (the layer is a `LogMelSpectrogram`, named `frontend`).
    """

    def call(self, audio):
        return self.log_mel(audio)  # (batch, frames, mel_bins)

    def compute_output_shape(self, input_shape):
        samples = input_shape[1]
        frames = None if samples is None else 1 + samples // self.config["frame_step"]
        return (input_shape[0], frames, self.config["mel_bins"])


def ctc_logits(x, classes, dropout=0.0, name="logits"):
    """Per-frame scores (logits) over `classes` (blank first), from a 1-D feature sequence."""
    if dropout:
        x = layers.Dropout(dropout)(x)
    return layers.Conv1D(classes, 1, name=name)(x)


@keras.saving.register_keras_serializable(package="tinydigits")
def ctc_loss(labels, logits):
    """CTC over per-frame logits; `labels` (batch, max_length) int, padded with 0 (the blank).

    Every output frame counts (the padding after a short string is silence, where the
    model should say blank), so the logit length is the full time axis.
    """
    labels = keras.ops.cast(labels, "int32")
    label_length = keras.ops.sum(keras.ops.cast(labels > 0, "int32"), axis=1)
    batch, frames = keras.ops.shape(logits)[0], keras.ops.shape(logits)[1]
    logit_length = keras.ops.full((batch,), frames, dtype="int32")
    return keras.ops.ctc_loss(labels, logits, label_length, logit_length, mask_index=0)
