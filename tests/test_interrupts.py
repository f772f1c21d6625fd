"""Interrupted runs leave nothing half-written, and the next run recovers by itself.

The recipes, the exporter and the dataset cache write to a temporary name and rename.
Each is run for real and killed (SIGKILL, which runs no cleanup, and SIGINT, which does)
at a random moment: when its first output file appears plus a random delay, i.e. while
it writes, or mid-extraction, or mid-download. Afterwards every file under its final name
must verify completely (a .keras zip passes its CRCs, a .tflite loads and classifies, a
JSON parses, a PNG decodes, the dataset passes its checks), leftover temporary files are
ignored, and the next run succeeds. A writer that opened its final name directly would
be caught with that name present and short.

The recipe, exporter and download tests start TensorFlow several times: marked slow
(~3 min on a loaded 2-core machine; `pytest -m "not slow"` skips them). Kill moments are
random but seeded: TINYDIGITS_KILL_SEED=N reproduces a run.
"""

import http.server
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, REPO
from PIL import Image

from tinydigits import datasets

SEED = int(os.environ.get("TINYDIGITS_KILL_SEED", "7"))
SAMPLE_IMAGE = REPO / "samples" / "images" / "9_mnist_original.png"
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


class Run:
    """A command started in the background, its output in files (no pipe to fill up)."""

    def __init__(self, args, tmp: Path, env=None):
        self.log = tmp / f"run-{time.monotonic_ns()}.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO,
                                            env={**ENV, **(env or {})}, stdout=log, stderr=log)
        self.started = time.monotonic()

    def wait_until(self, condition, timeout=300.0, poll=0.002) -> bool:
        """Poll `condition` until it holds (True) or the process ends or time runs out."""
        while time.monotonic() - self.started < timeout:
            if condition():
                return True
            if self.process.poll() is not None:
                return bool(condition())
            time.sleep(poll)
        return False

    def kill(self, sig) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=120)

    def finish(self, timeout=600) -> int:
        return self.process.wait(timeout=timeout)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def new_entries(directory: Path, before: set) -> list:
    return sorted(set(os.listdir(directory)) - before) if directory.exists() else []


def temporary(name: str) -> bool:
    """What atomic_path and _download leave behind when killed: `.NAME.XXXX.tmp*`, `*.part`."""
    return (name.startswith(".") and ".tmp" in name) or name.endswith(".part") \
        or name.startswith(".fsdd-extract-")


def kill_while_writing(args, out_dir: Path, sig, rng, tmp: Path, env=None):
    """Start `args`; when a new entry appears in `out_dir`, wait 0-0.3 s and send `sig`."""
    before = set(os.listdir(out_dir))
    run = Run(args, tmp, env)
    assert run.wait_until(lambda: new_entries(out_dir, before)), run.output
    first = new_entries(out_dir, before)
    time.sleep(rng.uniform(0, 0.3))
    code = run.kill(sig)
    return run, code, first


def verify_final_files(out_dir: Path) -> dict:
    """Every file under a final name is whole: returns {name: what was checked}."""
    checked = {}
    for path in sorted(out_dir.iterdir()):
        if temporary(path.name):
            continue
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as z:  # a half-written zip has no central directory
                assert z.testzip() is None, f"{path}: a member fails its CRC"
                assert {"config.json", "model.weights.h5"} <= set(z.namelist()), path
                json.loads(z.read("config.json"))
            checked[path.name] = "zip CRCs, config.json"
        elif path.suffix == ".tflite":
            from tinydigits.images import preprocess_image
            from tinydigits.runtime import Classifier

            label, _ = Classifier(path).predict(preprocess_image(SAMPLE_IMAGE))
            assert label == "9", f"{path}: classifies the sample 9 as {label}"
            checked[path.name] = "loads, classifies a 9"
        elif path.suffix == ".json":
            json.loads(path.read_text())
            checked[path.name] = "parses"
        elif path.suffix == ".png":
            with Image.open(path) as img:
                img.load()
            checked[path.name] = "decodes"
        elif path.suffix == ".md":
            assert path.read_text().rstrip().endswith("|"), f"{path}: the table is cut short"
            checked[path.name] = "table complete"
        else:
            raise AssertionError(f"{path}: unexpected file")
    return checked


def test_verify_final_files_catches_a_half_written_file(tmp_path):
    # The checks above are what make these tests able to fail: a file cut short fails them.
    for name, source in [("m.keras", MODELS / "mnist.keras"),
                         ("m.tflite", MODELS / "mnist.int8.tflite"),
                         ("m.json", MODELS / "mnist.metrics.json"),
                         ("m.png", MODELS / "mnist.history.png")]:
        out = tmp_path / name.split(".")[1]
        out.mkdir()
        data = source.read_bytes()
        (out / name).write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(Exception):  # noqa: B017 - zipfile, LiteRT, json and PIL differ
            verify_final_files(out)


# --------------------------------------------------------------------- dataset cache


def fsdd_cache(tmp_path) -> Path:
    cache = tmp_path / "data"
    cache.mkdir()
    (cache / datasets.FSDD_ARCHIVE).symlink_to(datasets.data_dir() / datasets.FSDD_ARCHIVE)
    return cache


LOAD_FSDD = ["-c", "from tinydigits.datasets import load_fsdd; "
                   "print(len(load_fsdd().audio), 'recordings')"]


def test_fsdd_extraction_killed_midway_leaves_no_folder_and_recovers(tmp_path):
    rng = random.Random(SEED)
    cache = fsdd_cache(tmp_path)
    for sig in (signal.SIGINT, signal.SIGKILL):
        target = rng.randrange(200, 2500)  # recordings extracted when the signal is sent

        def extracted(target=target):
            try:
                return any(len(os.listdir(d)) >= target
                           for d in cache.glob(".fsdd-extract-*/*/recordings"))
            except FileNotFoundError:  # renamed into place between glob and listdir
                return False

        run = Run(LOAD_FSDD, tmp_path, {"TINYDIGITS_DATA": str(cache)})
        assert run.wait_until(extracted, timeout=120), f"extraction never reached {target}"
        assert run.kill(sig) != 0
        assert not (cache / datasets.FSDD_DIR).exists(), "a partial folder under the final name"
        leftovers = sorted(p.name for p in cache.iterdir() if temporary(p.name))
        # SIGINT runs the cleanup; SIGKILL leaves the staging folder, which nothing reads.
        assert len(leftovers) == (0 if sig == signal.SIGINT else 1), (sig, leftovers)
    again = Run(LOAD_FSDD, tmp_path, {"TINYDIGITS_DATA": str(cache)})
    assert again.finish(timeout=300) == 0, again.output
    assert "3000 recordings" in again.output
    assert sorted(p.name for p in cache.iterdir() if temporary(p.name)) == leftovers


class SlowFile(http.server.BaseHTTPRequestHandler):
    """Serves one file at ~4 MB/s, so a download can be killed halfway."""

    data = b""

    def do_GET(self):  # noqa: N802 - the http.server API
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()
        try:
            for i in range(0, len(self.data), 64 * 1024):
                self.wfile.write(self.data[i: i + 64 * 1024])
                time.sleep(0.015)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client was killed: that is the point

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_mnist_download_killed_midway_leaves_no_file_and_recovers(tmp_path):
    SlowFile.data = (datasets.data_dir() / datasets.MNIST_FILE).read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowFile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/mnist.npz"
    cache = tmp_path / "data"
    cache.mkdir()
    download = ["-c", "import sys; import tinydigits.datasets as d; d.MNIST_URL = sys.argv[1]; "
                      "(x, y), _ = d.load_mnist(); print(len(x), 'images')", url]
    env = {"TINYDIGITS_DATA": str(cache)}
    rng = random.Random(SEED)
    try:
        part = cache / (datasets.MNIST_FILE + ".part")
        for sig in (signal.SIGKILL, signal.SIGINT):
            halfway = rng.uniform(0.2, 0.8) * len(SlowFile.data)
            # The last run's .part (if any) is replaced by this run's, which starts empty.
            stale = part.stat().st_size if part.exists() else None
            restarted = [stale is None]

            def downloading(halfway=halfway, stale=stale, restarted=restarted):
                try:
                    size = part.stat().st_size
                except FileNotFoundError:
                    restarted[0] = True
                    return False
                restarted[0] = restarted[0] or size < stale
                return restarted[0] and size > halfway

            run = Run(download, tmp_path, env)
            assert run.wait_until(downloading, timeout=300), run.output
            assert run.kill(sig) != 0
            assert not (cache / datasets.MNIST_FILE).exists(), "a partial download, trusted"
            assert part.exists() == (sig == signal.SIGKILL)  # Keras removes it on SIGINT
        again = Run(download, tmp_path, env)
        assert again.finish() == 0, again.output
        assert "60000 images" in again.output
        assert not (cache / (datasets.MNIST_FILE + ".part")).exists()
    finally:
        server.shutdown()


# ------------------------------------------------------------------ recipe and exporter


@pytest.mark.slow
def test_recipe_killed_while_saving_leaves_the_old_model_and_recovers(tmp_path):
    rng = random.Random(SEED)
    out = tmp_path / "models"
    out.mkdir()
    old = MODELS / "mnist.keras"
    shutil.copy(old, out / "mnist.keras")  # a model from an earlier run must survive
    recipe = [REPO / "recipes" / "mnist.py", "--epochs", "1", "--limit", "500", "--out-dir", out]

    run, code, first = kill_while_writing(recipe, out, signal.SIGKILL, rng, tmp_path)
    assert code == -signal.SIGKILL, run.output
    assert all(temporary(name) for name in first), first  # the new model under a temp name
    verify_final_files(out)  # mnist.keras: the old model, or (if renamed in time) a whole new one
    stale = {name for name in os.listdir(out) if temporary(name)}

    run = Run(recipe, tmp_path)  # SIGINT while training: KeyboardInterrupt, no files
    time.sleep(rng.uniform(2, 10))
    assert run.kill(signal.SIGINT) != 0
    assert {name for name in os.listdir(out) if temporary(name)} == stale  # nothing new

    again = Run(recipe, tmp_path)
    assert again.finish() == 0, again.output
    assert "test accuracy" in again.output
    checked = verify_final_files(out)
    assert {"mnist.keras", "mnist.metrics.json", "mnist.history.png",
            "mnist.confusion.png"} <= set(checked)
    assert (out / "mnist.keras").read_bytes() != old.read_bytes()  # the new model replaced it
    assert {name for name in os.listdir(out) if temporary(name)} == stale  # ignored, not read


@pytest.mark.slow
def test_exporter_killed_while_writing_leaves_whole_files_and_recovers(tmp_path):
    rng = random.Random(SEED + 1)
    out = tmp_path / "export"
    out.mkdir()
    old = MODELS / "mnist.float32.tflite"
    shutil.copy(old, out / "mnist.float32.tflite")
    export = [REPO / "export" / "tflite.py", MODELS / "mnist.keras", "--out-dir", out,
              "--limit", "200", "--variants", "float32", "int8"]

    for sig in (signal.SIGKILL, signal.SIGINT):
        for _attempt in range(3):  # on a busy machine a small write can finish between polls
            for name in os.listdir(out):  # start each attempt from the old float32 alone,
                if not temporary(name):  # so the new int8 file is a new entry to wait for
                    (out / name).unlink()
            shutil.copy(old, out / "mnist.float32.tflite")
            before = {name for name in os.listdir(out) if temporary(name)}
            run, code, first = kill_while_writing(export, out, sig, rng, tmp_path)
            verify_final_files(out)  # the old float32 model, or a whole new one
            if code != 0 and all(temporary(name) for name in first):
                break
        assert code != 0, run.output  # the kill landed before the exporter finished...
        assert all(temporary(name) for name in first), first  # ...and mid-write
        if sig == signal.SIGINT:  # the interrupted write cleaned up after itself
            assert {name for name in os.listdir(out) if temporary(name)} == before

    again = Run(export, tmp_path)
    assert again.finish() == 0, again.output
    checked = verify_final_files(out)
    assert {"mnist.float32.tflite", "mnist.int8.tflite", "manifest.json",
            "mnist.verification.md"} <= set(checked)
    entry = json.loads((out / "manifest.json").read_text())["models"]["mnist"]
    assert list(entry["variants"]) == ["float32", "int8"]
    assert entry["verification"]["test_inputs"] == 200


def test_atomic_path_keeps_the_old_file_when_the_block_fails(tmp_path):
    from tinydigits.files import atomic_path

    dest = tmp_path / "model.bin"
    dest.write_bytes(b"old and whole")
    with pytest.raises(KeyboardInterrupt), atomic_path(dest) as tmp:
        tmp.write_bytes(b"new but ha")
        raise KeyboardInterrupt
    assert dest.read_bytes() == b"old and whole"
    assert os.listdir(tmp_path) == ["model.bin"]  # the temporary file is gone too
    with atomic_path(dest) as tmp:
        tmp.write_bytes(np.arange(3, dtype=np.uint8).tobytes())
    assert dest.read_bytes() == b"\x00\x01\x02" and os.listdir(tmp_path) == ["model.bin"]
