"""Export a trained Keras model to verified LiteRT (`.tflite`) variants, as one set.

    python export/tflite.py tinydigits/models/mnist.keras

Converts MODEL.keras to the variants its catalog entry lists (float32, float16, dynamic,
int8, int8_io; builtin ops only, since the Pi's interpreter has no Flex ops), each into a
staging folder, then runs every one with the LiteRT interpreter on the full test set and
compares it with the float Keras model (see `convert.Gate`: an exact McNemar test plus
floors on the accuracy drop and the agreement). Only if all pass is the set installed next
to the model, then `manifest.json` (hashes, figures, tool versions), written last. If any
variant is refused, nothing is installed and the old set stays whole (exit 1); with
--force the new set replaces the old one entirely, and the exit status is still 1.
"""

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

from tinydigits import catalog, manifest


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="a .keras file written by a recipe")
    parser.add_argument("--variants", nargs="+", choices=catalog.VARIANTS,
                        help="which variants to write (default: all that the model ships)")
    parser.add_argument("--out-dir", type=Path, help="where to write (default: next to the model)")
    parser.add_argument("--force", action="store_true",
                        help="install the set even if a variant fails verification "
                             "(exit status still 1)")
    parser.add_argument("--data-dir", help="dataset cache (default: $TINYDIGITS_DATA or data/)")
    parser.add_argument("--limit", type=int, default=0,
                        help="verify on the first N test inputs only (smoke tests; not for "
                             "shipping)")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's and the converter's own log lines")
    return parser.parse_args(argv)


ERR = sys.stderr  # our own messages; with fd 2 sent to a log file, a copy of the original


def fail(message, code=2):
    print(f"error: {message}", file=ERR)
    sys.exit(code)


def hide_native_logs():
    """Send everything written to fd 2 (TensorFlow's C++ logs, the converter's MLIR passes,
    absl, Python warnings) to a log file, and keep our own messages on the real stderr.
    Returns the log's path; its last lines are shown if the export dies unexpectedly."""
    global ERR
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads
    log = tempfile.NamedTemporaryFile("w+", prefix="tinydigits-export-", suffix=".log",
                                      delete=False)
    sys.stderr.flush()
    ERR = os.fdopen(os.dup(2), "w", buffering=1)
    os.dup2(log.fileno(), 2)
    return Path(log.name)


def show_log_tail(log: Path, lines=20):
    tail = log.read_text(errors="replace").strip().splitlines()[-lines:]
    if tail:
        print("\n".join([f"-- last lines of {log} --", *tail]), file=ERR)


def tool_versions() -> dict:
    versions = {"python": platform.python_version()}
    for package in ("tensorflow", "keras", "ai-edge-litert", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions


def main(argv=None) -> int:
    args = parse_args(argv)
    log = None if args.verbose else hide_native_logs()
    try:
        return export(args)
    except KeyboardInterrupt:
        print("interrupted", file=ERR)
        return 130
    except Exception:  # a bug: show it, with what TensorFlow said just before
        if log:
            show_log_tail(log)
        traceback.print_exc(file=ERR)
        return 1
    finally:
        if log:
            log.unlink(missing_ok=True)


def export(args) -> int:
    if not args.model.is_file():
        fail(f"{args.model}: no such file")
    stem = args.model.name.removesuffix(".keras")
    try:
        spec = catalog.spec_of_stem(stem)
    except KeyError as e:
        fail(f"{args.model}: {e.args[0]}; name the file after the recipe that made it")
    variants = args.variants or spec.variants

    import keras

    from tinydigits import convert
    from tinydigits.errors import DatasetError

    try:
        model = keras.saving.load_model(args.model, safe_mode=True)  # refuses Lambda layers
    except Exception as e:  # Keras raises ValueError, OSError, zipfile errors...
        fail(f"{args.model}: cannot load it as a Keras model ({str(e).splitlines()[0][:200]})")

    out_dir = args.out_dir or args.model.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        calibration, x_test, y_test = convert.verification_data(spec.dataset, args.data_dir)
    except DatasetError as e:
        fail(str(e))
    if args.limit:
        x_test, y_test = x_test[: args.limit], y_test[: args.limit]
    print(f"{args.model}: {spec.dataset} model, {model.count_params():,} parameters; "
          f"verifying {len(variants)} variants on {len(x_test):,} test inputs", flush=True)
    keras_scores = convert.keras_scores(model, spec, x_test)
    keep_float = convert.float_layers(model)  # the audio front end stays float32

    results = []
    staging = Path(tempfile.mkdtemp(prefix=f".{stem}.stage-", suffix=".tmp", dir=out_dir))
    try:
        for variant in variants:
            start = time.perf_counter()
            print(f"  {variant:<8} ", end="", flush=True)
            candidate = staging / f"{stem}.{variant}.tflite"
            candidate.write_bytes(convert.convert(model, variant, calibration, keep_float))
            result = convert.verify(variant, candidate, x_test, y_test, keras_scores,
                                    decode=convert.decoder(spec))
            results.append(result)
            verdict = "ok" if result.passed else "REFUSED: " + "; ".join(result.failures)
            print(f"accuracy {result.accuracy:.2%}  agreement {result.agreement:.2%}  "
                  f"{result.size_bytes / 1024:6.1f} KB  {time.perf_counter() - start:4.0f} s  "
                  f"{verdict}", flush=True)
        refused = [r for r in results if not r.passed]
        installed = not refused or args.force
        if installed:
            install(staging, out_dir, spec, args, model, results, len(x_test))
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    print()
    print(convert.markdown_table(results, f"{stem}: {len(x_test):,} {spec.dataset} test inputs, "
                                          "LiteRT interpreter, 1 thread"))
    if not refused:
        print(f"installed {len(results)} variants in {out_dir} and {manifest.NAME}")
        return 0
    for r in refused:
        print(f"error: {r.variant} failed verification: {'; '.join(r.failures)}", file=ERR)
    if installed:
        print(f"error: installed anyway (--force): {out_dir} holds variants that failed",
              file=ERR)
    else:
        print(f"error: nothing installed; {out_dir} keeps its previous set "
              "(--force installs this one anyway)", file=ERR)
    return 1


def install(staging, out_dir, spec, args, model, results, inputs):
    """Move the verified set into place, drop what belonged to another training, then write
    the manifest last: a kill before that leaves files whose hashes the old manifest names
    differently, which `tinydigits models` and every load report."""
    from tinydigits import convert
    from tinydigits.files import write_text

    stem, variants = args.model.name.removesuffix(".keras"), [r.variant for r in results]
    source_sha = manifest.sha256(args.model)
    old = manifest.load(out_dir).get(stem, {})
    keep_old = old.get("source", {}).get("sha256") == source_sha  # same training: a subset
    entries = {k: v for k, v in old.get("variants", {}).items() if keep_old and k not in variants}
    for r in results:
        staged = staging / f"{stem}.{r.variant}.tflite"
        entries[r.variant] = {"file": staged.name, "sha256": manifest.sha256(staged), **{
            k: v for k, v in r.as_dict().items() if k != "variant"}}
        os.replace(staged, out_dir / staged.name)
    for variant in catalog.VARIANTS:  # another training's variants must not stay beside these
        if variant not in entries:
            (out_dir / f"{stem}.{variant}.tflite").unlink(missing_ok=True)
    write_text(out_dir / f"{stem}.verification.md", convert.markdown_table(
        results, f"{stem}: {inputs:,} {spec.dataset} test inputs, LiteRT "
                              "interpreter, 1 thread"))
    gate = {"significance": convert.SIGNIFICANCE, "slack_inputs": convert.SLACK,
            "variants": {v: convert.GATES[v].__dict__ for v in variants}}
    manifest.update(out_dir, stem, {
        "source": {"file": args.model.name, "sha256": source_sha,
                   "parameters": model.count_params()},
        "exported": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "tools": tool_versions(),
        "verification": {"dataset": spec.dataset, "test_inputs": inputs,
                         "limited": bool(args.limit), "forced": bool(args.force), "gate": gate},
        "variants": dict(sorted(entries.items(), key=lambda kv: catalog.VARIANTS.index(kv[0]))),
    })


if __name__ == "__main__":
    sys.exit(main())
