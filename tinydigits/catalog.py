"""What each shipped model is, in one place. Device side: standard library only.

The exporter (which data verifies a model, which variants to write), `classify`, `listen`
and `tinydigits models` all read this table instead of guessing a model's job from its
input shape. Files: `tinydigits/models/{stem}.{variant}.tflite`, described by
`tinydigits/models/manifest.json` (hashes and verification figures, see `manifest.py`).
"""

from dataclasses import dataclass

VARIANTS = ("float32", "float16", "dynamic", "int8", "int8_io")  # what export/tflite.py writes
DIGITS = tuple(str(d) for d in range(10))
NOT_A_DIGIT = "none"  # label of an optional 11th class: noise, clicks, breath, not a digit


@dataclass(frozen=True)
class ModelSpec:
    stem: str  # file names: {stem}.keras, {stem}.{variant}.tflite
    modality: str  # "image" or "audio": which files `classify` sends to it
    output: str  # "classes": one score per label; "ctc": per-frame scores, blank first
    labels: tuple  # index order of the scores
    dataset: str  # what the exporter verifies it on (convert.verification_data)
    default_variant: str  # what `classify` / `listen` load unless --model says otherwise
    variants: tuple = VARIANTS  # what the exporter writes and ships


SPECS = {
    spec.stem: spec
    for spec in (
        ModelSpec("mnist", "image", "classes", DIGITS, "mnist", "int8_io"),
        ModelSpec("spoken_digits", "audio", "classes", (*DIGITS, NOT_A_DIGIT), "spoken_digits",
                  "int8"),
        # Digit strings (PINs, phone numbers): per-frame scores, blank first; audio of any
        # length. `classify` and `listen` use it beside spoken_digits (see cli.read_audio).
        ModelSpec("digit_strings", "audio", "ctc", ("blank", *DIGITS), "digit_strings", "int8"),
    )
}


def spec_of_stem(stem: str) -> ModelSpec:
    """The spec of a model file's stem: `mnist`, or a variant of one such as
    `mnist_sequential` (a recipe's --model flag), which does the same job."""
    for known in sorted(SPECS, key=len, reverse=True):
        if stem == known or stem.startswith(known + "_"):
            return SPECS[known]
    raise KeyError(f"{stem!r} is none of the known models ({', '.join(SPECS)})")


def shipped(modality: str) -> ModelSpec:
    """The model `classify` uses for a kind of file."""
    for spec in SPECS.values():
        if spec.modality == modality:
            return spec
    raise KeyError(modality)
