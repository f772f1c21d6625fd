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
    (129 x 7 = 903), so the converter leaves it in float32.
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
        self.blocks = [filters[:, i:i + width] for i in range(0, mel_bins, width)]

    def log_mel(self, audio):
        """(batch, samples) -> log-mel (batch, frames, mel_bins), no normalisation."""
        c = self.config
        real, imag = keras.ops.stft(audio, c["frame_length"], c["frame_step"], c["fft_length"],
                                    window="hann", center=True)
        power = real * real + imag * imag  # (batch, frames, fft_length // 2 + 1)
        mel = keras.ops.concatenate([keras.ops.matmul(power, b) for b in self.blocks], -1)
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


@keras.saving.register_keras_serializable(package="tinydigits")
class SequenceAugment(layers.Layer):
    """Training only, on log-mel frames (batch, frames, mel_bins) of any length: a voice
    that is not one of FSDD's six.

    - *Mel warp*: the mel axis stretched by a random factor about its middle and shifted
      (linear interpolation between bins). A Conv1D sees mel bins as channels, so unlike a
      Conv2D it has no equivariance along frequency; this stands in for other vocal tracts
      and formants than the training speakers' (in the spirit of VTLP, Jaitly & Hinton 2013).
    - *SpecAugment* masks (Park et al., 2019): bands of mel bins and short runs of frames
      set to the clip's mean, so no one band or instant carries a word alone.
    """

    def __init__(self, warp=0.1, shift=1.5, freq_masks=2, freq_width=5, time_masks=3,
                 time_width=5, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.config = dict(warp=warp, shift=shift, freq_masks=freq_masks, freq_width=freq_width,
                           time_masks=time_masks, time_width=time_width, seed=seed)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _uniform(self, shape, low, high):
        return keras.random.uniform(shape, low, high, seed=self.seed_generator)

    def _keep(self, batch, length, count, width):
        """(batch, length) 1.0 outside `count` random bands of up to `width`, 0.0 inside."""
        positions = keras.ops.arange(length, dtype="float32")[None, :]
        length = keras.ops.cast(length, "float32")
        keep = keras.ops.ones_like(positions) * keras.ops.ones((batch, 1))
        for _ in range(count):
            w = self._uniform((batch, 1), 0, width)
            start = self._uniform((batch, 1), 0, 1) * (length - w)
            inside = keras.ops.logical_and(positions >= start, positions < start + w)
            keep = keep * (1.0 - keras.ops.cast(inside, "float32"))
        return keep

    def call(self, x, training=False):
        if not training:
            return x
        c = self.config
        batch, frames, bins = keras.ops.shape(x)[0], keras.ops.shape(x)[1], x.shape[2]
        # Mel warp: output bin i reads input position (i - mid) * factor + mid + shift.
        mid = (bins - 1) / 2
        factor = self._uniform((batch, 1), 1 - c["warp"], 1 + c["warp"])
        shift = self._uniform((batch, 1), -c["shift"], c["shift"])
        where = keras.ops.clip((keras.ops.arange(bins, dtype="float32")[None, :] - mid)
                               * factor + mid + shift, 0, bins - 1)  # (batch, bins)
        low = keras.ops.cast(keras.ops.floor(where), "int32")
        high = keras.ops.minimum(low + 1, bins - 1)
        frac = (where - keras.ops.cast(low, "float32"))[:, None, :]
        x = ((1 - frac) * keras.ops.take_along_axis(x, self._tile(low, frames), axis=2)
             + frac * keras.ops.take_along_axis(x, self._tile(high, frames), axis=2))
        # Masks, filled with the clip's mean.
        mean = keras.ops.mean(x, axis=(1, 2), keepdims=True)
        keep = (self._keep(batch, frames, c["time_masks"], c["time_width"])[:, :, None]
                * self._keep(batch, bins, c["freq_masks"], c["freq_width"])[:, None, :])
        return x * keep + mean * (1 - keep)

    @staticmethod
    def _tile(index, frames):  # (batch, bins) -> (batch, frames, bins)
        return keras.ops.repeat(index[:, None, :], frames, axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **self.config}


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
