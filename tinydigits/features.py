"""Feature settings shared by training and the device. Standard library only.

One frozen dataclass per modality, read by the recipes (to build the model's front
end and prepare training clips) and by the device runtime (to prepare inputs), so the
two cannot drift apart.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class AudioFeatures:
    sample_rate: int = 8000  # FSDD's rate; every input is resampled to it
    window_seconds: float = 1.0  # the model hears 1 s; 98.6% of FSDD clips fit whole
    frame_length: int = 200  # 25 ms analysis window
    frame_step: int = 80  # 10 ms hop
    fft_length: int = 256
    mel_bins: int = 40
    fmin: float = 40.0  # Hz; below this is rumble, not speech
    fmax: float = 3800.0  # Hz; just under Nyquist (4 kHz)
    target_rms: float = 0.1  # utterance level after normalisation (-20 dBFS)

    @property
    def window_samples(self) -> int:
        return int(round(self.sample_rate * self.window_seconds))  # 8000

    @property
    def frames(self) -> int:
        return 1 + self.window_samples // self.frame_step  # 101 centred, reflection-padded


@dataclass(frozen=True)
class ImageFeatures:
    size: int = 28  # MNIST images are 28x28
    box: int = 20  # MNIST digits were fitted into a 20x20 box, longer side...
    # ...then placed in the 28x28 frame with their centre of mass at the centre.


AUDIO = AudioFeatures()
IMAGE = ImageFeatures()
