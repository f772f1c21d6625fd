"""Export a trained Keras model to verified LiteRT (`.tflite`) variants.

    python export/tflite.py tinydigits/models/mnist.keras

Writes MODEL.{float32,float16,dynamic,int8,int8_io}.tflite next to the model, runs each
with the LiteRT interpreter on the full test set, compares it with the float Keras model
(accuracy, argmax agreement, largest probability difference, size, latency) and writes
the table to MODEL.verification.md and .json. A variant outside its thresholds is
refused: nothing is written for it (a stale file of that name is removed) and the exit
status is 1, unless --force. Builtin ops only: the Pi's interpreter has no Flex ops.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import keras

from tinydigits import convert
from tinydigits.errors import DatasetError
from tinydigits.files import write_bytes, write_text

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("model", type=Path, help="a .keras file written by a recipe")
parser.add_argument("--variants", nargs="+", choices=convert.VARIANTS, default=convert.VARIANTS,
                    help="which variants to write (default: all)")
parser.add_argument("--out-dir", type=Path, help="where to write (default: next to the model)")
parser.add_argument("--force", action="store_true",
                    help="write variants that fail verification anyway (exit status still 1)")
parser.add_argument("--data-dir", help="dataset cache (default: $TINYDIGITS_DATA or data/)")
parser.add_argument("--limit", type=int, default=0,
                    help="verify on the first N test inputs only (smoke tests; not for shipping)")
args = parser.parse_args()


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


if not args.model.is_file():
    fail(f"{args.model}: no such file")
try:
    model = keras.saving.load_model(args.model, safe_mode=True)  # refuses Lambda layers
except Exception as e:  # Keras raises ValueError, OSError, zipfile errors...
    fail(f"{args.model}: cannot load it as a Keras model ({str(e).splitlines()[0][:200]})")

out_dir = args.out_dir or args.model.parent
stem = args.model.name.removesuffix(".keras")
dataset = convert.dataset_of(model)
try:
    calibration, x_test, y_test = convert.verification_data(dataset, args.data_dir)
except DatasetError as e:
    fail(str(e))
if args.limit:
    x_test, y_test = x_test[: args.limit], y_test[: args.limit]
print(f"{args.model}: {dataset} model, {model.count_params():,} parameters; "
      f"verifying on {len(x_test):,} test inputs")
keras_probs = model.predict(x_test, batch_size=256, verbose=0)
keep_float = convert.float_layers(model)  # the audio front end stays float32

results = []
with tempfile.TemporaryDirectory() as tmp:
    for variant in args.variants:
        candidate = Path(tmp) / f"{stem}.{variant}.tflite"
        candidate.write_bytes(convert.convert(model, variant, calibration, keep_float))
        bar = keras.utils.Progbar(len(x_test), width=20, verbose=1, unit_name="input")

        def progress(i, bar=bar):
            if (i + 1) % 500 == 0:
                bar.update(i + 1)

        result = convert.verify(variant, candidate, x_test, y_test, keras_probs, progress=progress)
        bar.update(len(x_test), finalize=True)
        results.append(result)
        final = out_dir / candidate.name
        if result.passed or args.force:
            write_bytes(final, candidate.read_bytes())
            print(f"  {variant}: {'wrote' if result.passed else 'FORCED'} {final} "
                  f"({result.size_bytes / 1024:.1f} KB)")
        else:
            final.unlink(missing_ok=True)
            print(f"  {variant}: REFUSED, not written: {'; '.join(result.failures)}")

title = f"{stem}: {len(x_test):,} {dataset} test inputs, LiteRT interpreter, 1 thread"
table = convert.markdown_table(results, title)
write_text(out_dir / f"{stem}.verification.md", table)
write_text(out_dir / f"{stem}.verification.json", json.dumps({
    "model": str(args.model), "dataset": dataset, "test_inputs": len(x_test),
    "keras_accuracy": float((keras_probs.argmax(1) == y_test).mean()),
    "variants": [r.as_dict() for r in results]}, indent=2) + "\n")
print()
print(table)
refused = [r for r in results if not r.passed]
for r in refused:
    print(f"error: {r.variant} failed verification: {'; '.join(r.failures)}", file=sys.stderr)
sys.exit(1 if refused else 0)
