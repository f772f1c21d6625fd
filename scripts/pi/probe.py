"""Helpers for scripts/pi_check.sh: the same probe runs on x86 and inside the emulated Pi.

    python scripts/pi/probe.py answers MODELS_DIR FILE...   every model x every input, JSON lines
    python scripts/pi/probe.py latency MODELS_DIR           median invoke time per model
    python scripts/pi/probe.py no-tensorflow                what is installed; exit 1 if TF is
    python scripts/pi/probe.py compare X86.jsonl PI.jsonl   exit 1 unless the answers are equal
    python scripts/pi/probe.py compare-text X86.txt PI.txt  same, for text output (`listen`)
    python scripts/pi/probe.py fallback-table X86.jsonl FALLBACK.jsonl
                               per model: loads under the fallback runtime, and agrees with x86?

`answers` and `latency` are device side (NumPy + LiteRT, through tinydigits.runtime);
`compare*` use the standard library only, so the host's python3 can run them.
"""

import argparse
import json
import re
import statistics
import sys
import time
import traceback
from pathlib import Path


def one_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def crash(e: Exception) -> str:
    """Where an unexpected exception came from: its type, message and innermost frame."""
    frame = traceback.extract_tb(e.__traceback__)[-1]
    return f"{type(e).__name__}: {one_line(e)} ({Path(frame.filename).name}:{frame.lineno})"


def answers(models_dir: Path, files: list[str]) -> None:
    """One JSON line per (model, input): the digit or the one-line refusal. A model that
    does not load gives one line with `load_error`: the runtime's own message."""
    from tinydigits.cli import kind_of
    from tinydigits.errors import InputError, RuntimeUnavailable
    from tinydigits.runtime import Classifier

    inputs = {}  # (file, output type) -> preprocessed input or the refusal, computed once

    def prepared(name, output):
        if (name, output) not in inputs:
            path = Path(name)
            try:
                if kind_of(path) == "image":
                    from tinydigits.images import preprocess_image

                    inputs[name, output] = preprocess_image(path)
                elif output == "ctc":
                    from tinydigits.audio import prepare_wav_string

                    inputs[name, output] = prepare_wav_string(path)[1][0]
                else:
                    from tinydigits.audio import prepare_wav

                    inputs[name, output] = prepare_wav(path)
            except InputError as e:
                inputs[name, output] = e
        return inputs[name, output]

    for model in sorted(models_dir.glob("*.tflite")):
        try:
            classifier = Classifier(model)
        except RuntimeUnavailable as e:
            print(json.dumps({"model": model.name, "load_error": one_line(e)}), flush=True)
            continue
        except Exception as e:  # a traceback for the user: never what the runtime promises
            print(json.dumps({"model": model.name, "crash": crash(e)}), flush=True)
            continue
        for name in files:
            if kind_of(Path(name)) != classifier.kind:
                continue
            record = {"model": model.name, "runtime": classifier.runtime, "file": name}
            try:
                x = prepared(name, classifier.output)
                if isinstance(x, Exception):
                    record["error"] = one_line(x)
                elif classifier.output == "ctc":
                    from tinydigits.ctc import greedy_decode

                    decoded = greedy_decode(classifier.scores(x))
                    record.update(digit=decoded.digits, confidence=round(decoded.confidence, 4))
                else:
                    label, confidence = classifier.predict(x)
                    record.update(digit=label, confidence=round(confidence, 4))
            except Exception as e:
                record["crash"] = crash(e)
            print(json.dumps(record), flush=True)


def latency(models_dir: Path, seconds: float) -> None:
    """Median time of one `invoke` (1 thread, after 2 warm-up runs) for each model."""
    import numpy as np

    from tinydigits.errors import RuntimeUnavailable
    from tinydigits.runtime import Classifier

    for model in sorted(models_dir.glob("*.tflite")):
        try:
            classifier = Classifier(model)
        except RuntimeUnavailable as e:
            print(f"{model.name:32s} does not load: {one_line(e)}")
            continue
        # A variable-length model is timed on 1 s of audio, like the isolated-word model.
        x = np.zeros(8000 if classifier.variable_length else classifier.input_shape, np.float32)
        for _ in range(2):
            classifier.scores(x)
        times, start = [], time.perf_counter()
        while len(times) < 5 or (len(times) < 50 and time.perf_counter() - start < seconds):
            t = time.perf_counter()
            classifier.scores(x)
            times.append(time.perf_counter() - t)
        print(f"{model.name:32s} {statistics.median(times) * 1e3:9.2f} ms "
              f"(median of {len(times)}, {classifier.runtime})")


TRAINING_SIDE = ("tensorflow", "tensorflow-cpu", "tf-keras", "tf-nightly", "keras")


def no_tensorflow() -> int:
    """Print the installed distributions; exit 1 if TensorFlow or Keras is among them or
    importable. (One interpreter start: under emulation each costs seconds.)"""
    import importlib.metadata
    import importlib.util

    installed = sorted(f"{d.metadata['Name']}=={d.version}"
                       for d in importlib.metadata.distributions())
    print(" ".join(installed))
    names = {x.split("==")[0].lower().replace("_", "-") for x in installed}
    found = sorted(n for n in names if n in TRAINING_SIDE or n.startswith("tensorflow-"))
    found += [f"import {m}" for m in ("tensorflow", "keras") if importlib.util.find_spec(m)]
    if found:
        print(f"training-side packages on the device: {', '.join(found)}")
        return 1
    print("no tensorflow / keras distribution; import tensorflow / import keras: not found")
    return 0


def read_jsonl(path: str) -> list[dict]:
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def answer_of(record: dict) -> dict:
    return {k: record[k] for k in ("digit", "error", "load_error", "crash") if k in record}


def compare(reference: str, device: str) -> int:
    """The answer of each (model, file) must be equal: digit, refusal or load failure.
    Confidences may differ in the last digits (different kernels); the largest difference
    is printed, not judged."""
    def key(r):
        return r.get("model", ""), r.get("file", "")

    ref = {key(r): r for r in read_jsonl(reference)}
    dev = {key(r): r for r in read_jsonl(device)}
    mismatches = []
    for k in sorted(ref.keys() | dev.keys()):
        a, b = ref.get(k), dev.get(k)
        if a is None or b is None or answer_of(a) != answer_of(b):
            mismatches.append((k, a and answer_of(a), b and answer_of(b)))
    diffs = [abs(ref[k]["confidence"] - dev[k]["confidence"])
             for k in ref.keys() & dev.keys()
             if "confidence" in ref[k] and "confidence" in dev[k]]
    crashes = [r for r in [*ref.values(), *dev.values()] if "crash" in r]
    for r in crashes:
        print(f"  CRASH {r['model']} {r.get('file', '')}: {r['crash']}")
    for (model, name), a, b in mismatches:
        print(f"  MISMATCH {model} {name}: x86 {a} / pi {b}")
    largest = f"{max(diffs):.4f}" if diffs else "-"
    print(f"  {len(ref)} answers compared, {len(mismatches)} differ; "
          f"largest confidence difference {largest}")
    return 1 if mismatches or crashes or not ref else 0


NUMBER_WITH_DECIMALS = re.compile(r"-?\d+\.\d+")


def masked(line: str):
    """A line with its non-integer numbers (confidences, times) hidden: what must match."""
    if line.startswith("{"):
        record = json.loads(line)
        return {k: None if isinstance(v, float) else v for k, v in record.items()}
    return NUMBER_WITH_DECIMALS.sub("#", line.strip())


def compare_text(reference: str, device: str) -> int:
    ref = [masked(x) for x in Path(reference).read_text().splitlines() if x.strip()]
    dev = [masked(x) for x in Path(device).read_text().splitlines() if x.strip()]
    if ref == dev:
        print(f"  {len(ref)} lines equal (decimals masked)")
        return 0
    print(f"  MISMATCH: x86 printed {ref}\n            pi printed {dev}")
    return 1


def fallback_table(reference: str, fallback: str) -> int:
    """Which models the fallback runtime loads, and whether they give the x86 answers.
    Exit 1 if a model it cannot load is refused without naming the package to install,
    or crashes: the runtime promises one line that says what to do. A differing answer
    is reported (with both confidences: a near tie can flip on other int8 kernels), not
    judged."""
    ref, fb = read_jsonl(reference), read_jsonl(fallback)
    expected = {(r["model"], r["file"]): r for r in ref if "file" in r}
    failed = 0
    for model in sorted({r["model"] for r in ref}):
        rows = [r for r in fb if r["model"] == model]
        crashes = [r for r in rows if "crash" in r]
        if not rows:
            failed += 1
            print(f"  {model:28s} no answer (the probe stopped before this model)")
            continue
        if crashes:
            failed += 1
            print(f"  {model:28s} CRASHES (a traceback, not a one-line refusal): "
                  f"{crashes[0]['crash']}")
            continue
        if rows and "load_error" in rows[0]:
            message = rows[0]["load_error"]
            named = "ai-edge-litert" in message
            failed += not named
            print(f"  {model:28s} does not load"
                  f"{'' if named else ' (and the message names no package)'}: {message}")
            continue
        differ = [r for r in rows
                  if answer_of(r) != answer_of(expected.get((model, r["file"]), {}))]
        print(f"  {model:28s} loads; {len(rows) - len(differ)}/{len(rows)} answers equal to x86")
        for r in differ:
            x = expected.get((model, r["file"]), {})
            print(f"      differs: {r['file']}: x86 {x.get('digit')} ({x.get('confidence')}), "
                  f"tflite-runtime {r.get('digit')} ({r.get('confidence')})")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("answers", help="every model on every input of its kind")
    p.add_argument("models_dir", type=Path)
    p.add_argument("files", nargs="*")
    p = commands.add_parser("latency", help="median invoke time per model")
    p.add_argument("models_dir", type=Path)
    p.add_argument("--seconds", type=float, default=2.0, help="time budget per model")
    commands.add_parser("no-tensorflow", help="installed distributions; exit 1 if TF is")
    for name in ("compare", "compare-text", "fallback-table"):
        p = commands.add_parser(name, help="exit 1 unless the two outputs agree")
        p.add_argument("reference")
        p.add_argument("device")
    args = parser.parse_args()
    if args.command == "answers":
        answers(args.models_dir, args.files)
    elif args.command == "latency":
        latency(args.models_dir, args.seconds)
    elif args.command == "no-tensorflow":
        return no_tensorflow()
    elif args.command == "compare":
        return compare(args.reference, args.device)
    elif args.command == "compare-text":
        return compare_text(args.reference, args.device)
    else:
        return fallback_table(args.reference, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
