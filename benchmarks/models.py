"""Print the results table of the shipped models: size, accuracy, agreement, latency.

    OPENBLAS_NUM_THREADS=1 python benchmarks/models.py            # all shipped models
    python benchmarks/models.py --models mnist

Every variant runs on the full test set with the LiteRT interpreter (batch 1, one thread,
this CPU) and is compared with its float Keras model. Training time and parameters come
from the recipe's metrics JSON. Prints a Markdown table for the README.
"""

import tinydigits.quiet  # noqa: F401  (first: loads TensorFlow without its start-up log lines)

import argparse
import json
import platform
from pathlib import Path

import keras

from tinydigits import catalog, convert

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--models", nargs="+", default=["mnist", "spoken_digits"],
                    help="model names in models/ (default: mnist spoken_digits)")
parser.add_argument("--models-dir", type=Path, default=Path("tinydigits/models"),
                    help="where they are")
args = parser.parse_args()

rows = []
for name in args.models:
    keras_path = args.models_dir / f"{name}.keras"
    if not keras_path.exists():
        print(f"skipping {name}: {keras_path} not found")
        continue
    model = keras.saving.load_model(keras_path)
    dataset = catalog.spec_of_stem(name).dataset
    _, x_test, y_test = convert.verification_data(dataset)
    keras_probs = model.predict(x_test, batch_size=256, verbose=0)
    metrics = json.loads((args.models_dir / f"{name}.metrics.json").read_text())
    for variant in convert.VARIANTS:
        path = args.models_dir / f"{name}.{variant}.tflite"
        if not path.exists():
            rows.append(f"| {name} | | {variant} | not shipped (refused by verification) "
                        "| | | | | |")
            continue
        r = convert.verify(variant, path, x_test, y_test, keras_probs)
        rows.append(
            f"| {name} | {model.count_params():,} | {variant} | {r.size_bytes / 1024:.1f} | "
            f"{r.keras_accuracy:.2%} | {r.accuracy:.2%} | {r.agreement:.2%} | "
            f"{r.latency_ms_median:.3f} / {r.latency_ms_p95:.3f} | "
            f"{metrics['train_seconds'] / 60:.1f} |")
        print(rows[-1], flush=True)

print(f"\nLiteRT interpreter, 1 thread, {platform.machine()} "
      f"({platform.processor() or 'cpu'}); full test sets (MNIST 10,000; FSDD 300)\n")
print("| model | params | variant | KB | accuracy Keras | accuracy .tflite | agreement "
      "| ms median / p95 | train min |")
print("|---|---|---|---|---|---|---|---|---|")
print("\n".join(rows))
