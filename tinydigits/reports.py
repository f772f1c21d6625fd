"""What a recipe leaves behind besides the model: metrics JSON and PNG plots.

Training side (matplotlib); every file is written atomically.
"""

import json
import platform
import time

import numpy as np

from tinydigits.files import atomic_path, write_text


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    pyplot().close(fig)


def plot_history(history: dict, path, title=""):
    """Loss and accuracy per epoch, training and validation side by side."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if key in history:  # a NaN is an epoch not measured: the line joins the others
                values = np.asarray(history[key], dtype=float)
                epochs = np.arange(1, len(values) + 1)
                measured = np.isfinite(values)
                ax.plot(epochs[measured], values[measured], style, marker="o", ms=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save_figure(fig, path)


def confusion_matrix(y_true, y_pred, classes=10) -> np.ndarray:
    m = np.zeros((classes, classes), dtype=int)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def plot_confusion(y_true, y_pred, path, title="", labels=None):
    """Confusion matrix with counts in the cells; the diagonal is right answers."""
    plt = pyplot()
    m = confusion_matrix(y_true, y_pred, len(labels) if labels else 10)
    labels = labels or [str(i) for i in range(len(m))]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(np.log1p(m), cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                    color="white" if i == j else "black")
    ax.set_xticks(range(len(m)), labels)
    ax.set_yticks(range(len(m)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(m) / max(m.sum(), 1)
    ax.set_title(f"{title}  accuracy {accuracy:.2%} ({m.sum() - np.trace(m)} errors)")
    save_figure(fig, path)


def save_metrics(metrics: dict, path):
    metrics = {"written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": f"{platform.machine()}, {_cpu_count()} cores", **metrics}
    write_text(path, json.dumps(metrics, indent=2, default=_jsonable) + "\n")


def _cpu_count():
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def plot_spectrograms(logmels, labels, predicted, path, captions=None, columns=5):
    """A grid of log-mel spectrograms (frames x mel bins) with true and predicted digit."""
    plt = pyplot()
    rows = int(np.ceil(len(logmels) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (m, y, p) in enumerate(zip(logmels, labels, predicted)):
        ax = axes.flat[k]
        ax.imshow(m.T, origin="lower", aspect="auto", cmap="magma")
        caption = f" {captions[k]}" if captions else ""
        ax.set_title(f"{y} -> {p}{caption}", fontsize=8, color="black" if y == p else "red")
    fig.suptitle("log-mel spectrograms of test clips (1 s, 40 mel bins): true -> predicted")
    save_figure(fig, path)
