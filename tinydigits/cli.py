"""`tinydigits classify`, `listen` and `models`. Device side: NumPy + LiteRT only.

Exit status: 0 every file classified; 1 some file refused (each named on stderr with
the reason, the others still classified); 2 bad usage or no usable model.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from tinydigits import __version__, catalog, ctc, listen, manifest
from tinydigits.errors import InputError, RuntimeUnavailable
from tinydigits.runtime import NOT_A_DIGIT, VARIANTS, Classifier, model_path, models_dir

AUDIO_SUFFIXES = {".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au"}
AUDIO_MAGIC = (b"RIFF", b"RF64", b"RIFX", b"fLaC", b"OggS", b"FORM", b".snd")


def kind_of(path: Path) -> str:
    """'audio' or 'image', from the suffix, else from the first bytes."""
    if path.suffix.lower() in AUDIO_SUFFIXES:
        return "audio"
    if not path.is_file():  # a FIFO would block the sniffing read; the reader refuses it
        return "image"
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b""
    return "audio" if head in AUDIO_MAGIC else "image"


class Models:
    """The classifier for each kind of input, loaded on first use and kept: an images-only
    call never loads the audio model. A model that fails to load fails the same way for
    every file that needs it."""

    def __init__(self, choice: str | None):
        self.choice, self.cache = choice, {}

    def load(self, path: Path):
        if path not in self.cache:
            try:
                self.cache[path] = Classifier(path)
                warn_if_modified(path)
            except RuntimeUnavailable as e:
                self.cache[path] = e
        if isinstance(self.cache[path], RuntimeUnavailable):
            raise self.cache[path]
        return self.cache[path]

    def for_kind(self, kind: str):
        path = model_path(kind, self.choice)
        if self.choice not in (None, *VARIANTS) and self.load(path).kind != kind:
            path = model_path(kind)  # a model given for the other kind of file
        return self.load(path)

    def strings(self):
        """The shipped digit-string model beside the isolated-word one, or None when it is
        not shipped or a model path was given (that model alone answers)."""
        spec = catalog.SPECS.get("digit_strings")
        if spec is None or self.choice not in (None, *VARIANTS):
            return None
        variant = self.choice if self.choice in spec.variants else spec.default_variant
        return self.load(models_dir() / f"{spec.stem}.{variant}.tflite")


def warn_if_modified(path: Path) -> None:
    """A shipped model that is not the file the exporter verified still runs, with a warning."""
    message = manifest.warning(path)
    if message:
        print(f"tinydigits: warning: {message}", file=sys.stderr, flush=True)


def list_models(args) -> int:
    """`tinydigits models`: every shipped model and variant with its verified figures."""
    where = models_dir()
    entries = manifest.load(where)
    rows, bad = [], 0
    for spec in catalog.SPECS.values():
        entry = entries.get(spec.stem, {})
        exported = str(entry.get("exported", ""))[:10] or "-"
        variants = entry.get("variants", {})
        for variant in spec.variants:
            path = where / f"{spec.stem}.{variant}.tflite"
            state = manifest.status(path, entries)
            bad += state != "ok"
            figures = variants.get(variant, {})
            rows.append({
                "model": spec.stem, "variant": variant, "file": path.name, "status": state,
                "default": variant == spec.default_variant, "for": spec.modality,
                "kb": round(path.stat().st_size / 1024, 1) if path.is_file() else None,
                "accuracy": figures.get("accuracy"), "agreement": figures.get("agreement"),
                "test_inputs": figures.get("inputs"), "exported": exported})
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 1 if bad else 0
    print(f"{where}  ({manifest.NAME}: {'found' if entries else 'MISSING'})")
    print(f"{'model':<15} {'variant':<9} {'KB':>6} {'accuracy':>9} {'agreement':>10} "
          f"{'inputs':>7}  {'exported':<10}  status")
    for r in rows:
        pct = lambda v: f"{v:.2%}" if isinstance(v, float) else "-"
        kb = f"{r['kb']:.1f}" if r["kb"] is not None else "-"
        mark = " (default)" if r["default"] else ""
        print(f"{r['model']:<15} {r['variant']:<9} {kb:>6} {pct(r['accuracy']):>9} "
              f"{pct(r['agreement']):>10} {r['test_inputs'] or '-':>7}  {r['exported']:<10}  "
              f"{r['status']}{mark}")
    if bad:
        print(f"tinydigits: warning: {bad} model files are not as verified (status other than "
              "ok): export them again", file=sys.stderr)
    return 1 if bad else 0


def read_image(path: Path, classifier) -> dict:
    """A handwritten digit or number: its digits left to right, each with its confidence
    and its box (x0, y0, x1, y1) in the file's pixels."""
    from tinydigits.images import prepare_number

    scored = {}  # each digit prepare_number tried, by its pixels: the final read reuses them

    def score(digit):
        key = digit.tobytes()
        if key not in scored:
            scored[key] = classifier.probabilities(digit)
        return scored[key]

    x, boxes = prepare_number(path, score=score)
    read = [(classifier.labels[int(p.argmax())], float(p.max())) for p in map(score, x)]
    return {"digits": "".join(label for label, _ in read),
            "confidences": [round(c, 4) for _, c in read], "boxes": [list(b) for b in boxes]}


MIN_STRING_DIGITS = 2  # the string model answers when it hears this many digits or more
MAX_RECORDING_SECONDS = 120.0  # a file longer than one string (10 s: a number said with
# pauses, a few numbers read out) is heard as `listen --input` hears it, up to this long


def read_audio(path: Path, classifier, strings=None,
               threshold: float = listen.DEFAULT_THRESHOLD) -> dict:
    """A spoken digit, or a digit string said in one breath or with pauses.

    The isolated-word model answers a lone digit (or `none`, for a sound that is no digit);
    the string model, when shipped, answers when it hears two digits or more, and the
    isolated-word model judges each of them again on its own stretch (`ctc.rescore`). A
    recording longer than one string (MAX_SECONDS) is read as `listen --input` hears it,
    keeping what reaches `threshold`.
    """
    from tinydigits.audio import MAX_SECONDS, audio_info, prepare_wav, prepare_wav_string

    if classifier.output == "ctc":  # --model PATH of a string model: it alone answers
        strings, classifier = classifier, None
    if strings is None:
        return read_audio_clip(prepare_wav(path), classifier)
    rate, _, frames = audio_info(path)
    if frames / rate > MAX_SECONDS:
        return read_recording(path, classifier, strings, frames / rate, threshold)
    clip, (string, offset) = prepare_wav_string(path)
    logits = strings.scores(string)
    if classifier is None:
        decoded = ctc.greedy_decode(logits, offset_seconds=offset)
    elif ctc.words(logits) < MIN_STRING_DIGITS:
        return read_audio_clip(clip, classifier)
    else:
        decoded = ctc.rescore(logits, string, listen.isolated_judge(classifier),
                              offset_seconds=offset)
    found = decoded.as_dict()
    return {"digits": decoded.digits, "label": decoded.digits or NOT_A_DIGIT,
            "confidences": found["confidences"] or [0.0], "times": found["times"]}


def read_recording(path: Path, classifier, strings, seconds: float, threshold: float) -> dict:
    """A recording longer than one string, read in blocks and cut at pauses exactly as
    `listen --input` does (with its `--threshold`): the digits of every line, in order."""
    if seconds > MAX_RECORDING_SECONDS:
        raise InputError(path, f"too long: {seconds:.1f} s; classify takes recordings up to "
                               f"{MAX_RECORDING_SECONDS:g} s (use `tinydigits listen --input "
                               "FILE` for streams)")
    heard = [d for d, _ in listen.detections(listen.FileSource(path), classifier, threshold,
                                             strings=strings) if d.accepted]
    if not heard:
        raise InputError(path, f"no digits heard (none reached --threshold {threshold:g})")
    digits = "".join(d.digit for d in heard)
    return {"digits": digits, "label": digits,
            "confidences": [round(c, 4) for d in heard for c in d.confidences or [d.confidence]],
            "times": [[round(a, 3), round(b, 3)] for d in heard
                      for a, b in d.times or [(d.start, d.end)]]}


def read_audio_clip(clip, classifier) -> dict:
    label, confidence = classifier.predict(clip)
    return {"digits": label if label != NOT_A_DIGIT else "", "label": label,
            "confidences": [round(confidence, 4)]}


def report(name: str, kind: str, reading: dict, as_json: bool) -> None:
    """`file  digits  confidence` (the lowest digit's), or one JSON object; a lone digit
    also carries `"digit"` as before numbers were read."""
    confidence = min(reading["confidences"])
    label = reading.get("label", reading["digits"])
    if as_json:
        record = {"file": name, "kind": kind, "digits": reading["digits"],
                  "confidence": confidence, **{k: v for k, v in reading.items()
                                               if k not in ("digits", "label")}}
        if len(reading["confidences"]) == 1:
            record["digit"] = label
        print(json.dumps(record), flush=True)
    else:
        print(f"{name}  {label}  {confidence:.3f}", flush=True)


def classify(args) -> int:
    models = Models(args.model)
    if args.model and args.model not in VARIANTS:
        try:  # a model path given by the user must at least load
            models.load(Path(args.model))
        except RuntimeUnavailable as e:
            print(f"tinydigits: error: {e}", file=sys.stderr)
            return 2
    failed = 0
    for name in args.files:
        path = Path(name)
        kind = kind_of(path)
        try:
            classifier = models.for_kind(kind)
            if kind == "image":
                reading = read_image(path, classifier)
            else:
                reading = read_audio(path, classifier, models.strings(), args.threshold)
        except (InputError, RuntimeUnavailable) as e:
            failed += 1
            message = str(e) if isinstance(e, InputError) else f"{name}: {e}"
            print(f"tinydigits: error: {message}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": name, "error": message}), flush=True)
            continue
        report(name, kind, reading, args.json)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinydigits",
        description="Classify handwritten and spoken digits with small LiteRT models.")
    parser.add_argument("--version", action="version", version=f"tinydigits {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = commands.add_parser(
        "classify", help="classify image and WAV files",
        description="Print one line per file: file, digits, confidence (of the least sure "
                    "digit). Images (PNG, JPEG, ...) of any size and polarity hold a "
                    "handwritten digit or a number written in a row, read with the MNIST "
                    "model; WAV/FLAC/OGG files hold a spoken digit or a number said in "
                    "one breath or with pauses (up to 120 s).")
    p.add_argument("files", nargs="+", metavar="FILE", help="images and/or WAV files")
    p.add_argument("--model", metavar="VARIANT|PATH",
                   help=f"a variant of the shipped models ({', '.join(VARIANTS)}) or a "
                        ".tflite path (default: the shipped int8 models)")
    p.add_argument("--json", action="store_true", help="one JSON object per file on stdout")
    p.add_argument("--threshold", type=listen.parse_threshold, default=listen.DEFAULT_THRESHOLD,
                   metavar="P",
                   help="for recordings over 10 s, heard as `tinydigits listen` hears them: "
                        "keep a digit or number only if the model gives it at least this "
                        f"probability (0-1, default {listen.DEFAULT_THRESHOLD}); shorter "
                        "files always get an answer, with its confidence")
    p.set_defaults(run=classify)
    listen.add_parser(commands)
    p = commands.add_parser(
        "models", help="list the shipped models and their verification figures",
        description="List every shipped model variant with its size, the accuracy and "
                    "agreement with the float model measured when it was exported (from "
                    "manifest.json), and whether the file is still the one verified. Exit "
                    "status 1 if any file is missing, modified or unlisted.")
    p.add_argument("--json", action="store_true", help="one JSON object per variant")
    p.set_defaults(run=list_models)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tinydigits ... | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
