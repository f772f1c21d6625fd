"""Untrusted archives, models and caches: refused in one line that names the fix.

Dataset archives unpack only plain files and folders that stay inside the cache, up to a
size limit; Keras models load with safe_mode (a Lambda's code never runs); nothing in the
repository unpickles; a corrupt `.tflite`, cached MNIST file or extracted FSDD folder is
refused with one line, and a corrupt cache names the file and what to do about it.
"""

import codecs
import contextlib
import gzip
import io
import json
import marshal
import re
import subprocess
import sys
import tarfile
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from conftest import MODELS, REPO, run_cli
from test_fuzz import model_with, tensor_field

from tinydigits import datasets
from tinydigits.errors import DatasetError, RuntimeUnavailable
from tinydigits.images import preprocess_image
from tinydigits.runtime import Classifier

SAMPLE_IMAGE = REPO / "samples" / "images" / "9_mnist_original.png"


# ------------------------------------------------------------------------ archives


def tar_gz(path, members):
    """members: (TarInfo, bytes or None)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name, kind=tarfile.REGTYPE, data=b"x", link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize("bad", [
    member("ok/tty", tarfile.CHRTYPE),
    member("ok/disk", tarfile.BLKTYPE),
    member("ok/fifo", tarfile.FIFOTYPE),
    member("ok/link", tarfile.SYMTYPE, link="fine.txt"),  # points inside: refused all the same
    member("ok/here", tarfile.SYMTYPE, link="."),
    member("ok/hard", tarfile.LNKTYPE, link="ok/fine.txt"),
], ids=["char-device", "block-device", "fifo", "symlink-inside", "symlink-dot", "hardlink-inside"])
def test_safe_extract_takes_only_plain_files_and_folders(tmp_path, bad):
    # Links are refused even when they point inside: a later member written through one
    # ("ok/here/../../x") would be checked against a path that does not exist yet.
    archive = tar_gz(tmp_path / "bad.tar.gz", [member("ok/fine.txt"), bad])
    dest = tmp_path / "cache"
    dest.mkdir()
    with pytest.raises(DatasetError, match=r"bad\.tar\.gz: member 'ok/\w+' is a link or special"):
        datasets.safe_extract(archive, dest)
    assert list(dest.rglob("*")) == []


def test_an_archive_declaring_more_than_the_limit_is_refused_before_inflating(tmp_path):
    # A header declaring 300 MiB followed by 1 MiB: refused for its size at the first header,
    # not read to its end (it used to fail as "unexpected end of data", after inflating).
    info = tarfile.TarInfo("a/big.bin")
    info.size = 300 * 2**20
    archive = tmp_path / "declared.tar.gz"
    archive.write_bytes(gzip.compress(info.tobuf(tarfile.GNU_FORMAT) + b"\0" * 2**20, 1))
    with pytest.raises(DatasetError, match="unpacks to more than 200 MiB; refused"):
        datasets.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").rglob("*")) == []


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    info = tarfile.TarInfo("a/zeros.bin")
    info.size = 250 * 2**20  # 250 MiB of zeros: 250 KB of gzip
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [deflate.compress(info.tobuf(tarfile.GNU_FORMAT))]
    parts += [deflate.compress(bytes(2**20)) for _ in range(250)] + [deflate.flush()]
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(b"".join(parts))
    assert archive.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match="unpacks to more than 200 MiB"):
            datasets.safe_extract(archive, tmp_path / "out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").rglob("*")) == []


# --------------------------------------------------------------------- Keras models


def keras_file_with_lambda(path, marker):
    """A .keras file as Keras 3 saves a Sequential with a Lambda, whose code creates `marker`.

    Written by hand (zip + config.json) so the test needs no TensorFlow of its own; the
    function is serialised the way Keras does it (base64 of the marshalled code object).
    """
    function = eval(f"lambda x: (open({str(marker)!r}, 'w').close(), x)[1]")
    code = codecs.encode(marshal.dumps(function.__code__), "base64").decode("ascii")
    dtype = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
             "registered_name": None}
    layers = [
        {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
         "config": {"batch_shape": [None, 28, 28, 1], "dtype": "float32", "sparse": False,
                    "ragged": False, "name": "image", "optional": False}},
        {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
         "config": {"name": "lambda", "trainable": True, "dtype": dtype, "arguments": {},
                    "function": {"class_name": "__lambda__",
                                 "config": {"code": code, "defaults": None, "closure": None}}},
         "build_config": {"input_shape": [None, 28, 28, 1]}},
        {"module": "keras.layers", "class_name": "Flatten", "registered_name": None,
         "config": {"name": "flatten", "trainable": True, "dtype": dtype,
                    "data_format": "channels_last"},
         "build_config": {"input_shape": [None, 28, 28, 1]}},
    ]
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": "sequential", "trainable": True, "dtype": dtype,
                         "layers": layers, "build_input_shape": [None, 28, 28, 1]}}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        z.writestr("config.json", json.dumps(config))
    return path


def test_exporter_refuses_a_keras_model_with_a_lambda_in_one_line(tmp_path):
    marker = tmp_path / "the_lambda_ran"
    model = keras_file_with_lambda(tmp_path / "mnist.keras", marker)  # named as a recipe would
    out = subprocess.run([sys.executable, REPO / "export" / "tflite.py", model,
                          "--out-dir", tmp_path / "out"], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.splitlines()  # TensorFlow's own log lines go to a log file
    assert line.startswith(f"error: {model}: cannot load it as a Keras model (") and \
        "`Lambda` layer" in line, line
    assert not marker.exists(), "the Lambda's code ran"
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------ no pickle


FORBIDDEN = {  # labels in words: this file must not match its own patterns
    "allow pickle": re.compile(r"allow_pickle\s*=\s*True"),
    "pickle import": re.compile(
        r"^\s*(?:import|from)\s+(?:c?pickle|_pickle|dill|joblib|cloudpickle|shelve)\b", re.M),
    "pickle load": re.compile(r"\bpickle\.loads?\("),
    "pandas pickle": re.compile(r"\bread_pickle\("),
    "torch load": re.compile(r"\btorch\.load\("),
    "safe mode off": re.compile(r"safe_mode\s*=\s*False"),
    "unsafe deserialization": re.compile(r"enable_unsafe_deserialization\("),
}


def offences(text: str) -> list:
    return [name for name, pattern in FORBIDDEN.items() if pattern.search(text)]


def test_nothing_in_the_repository_unpickles_or_loads_unsafely():
    files = [p for folder in ("tinydigits", "recipes", "export", "benchmarks", "scripts", "tests")
             for p in (REPO / folder).rglob("*.py")]
    assert len(files) > 25
    found = {str(p.relative_to(REPO)): offences(p.read_text()) for p in files}
    assert {name: what for name, what in found.items() if what} == {}
    loads = re.findall(r"np\.load\(([^)]*)\)", (REPO / "tinydigits" / "datasets.py").read_text())
    assert loads and all("allow_pickle=False" in args for args in loads), loads


def test_the_pickle_check_can_fail():
    # Built from pieces so that this file does not trip the check itself.
    planted = {"allow pickle": "np.load(f, allow_" + "pickle = True)",
               "pickle import": "x = 1\nimport " + "pickle\n",
               "pickle load": "model = pickle." + "load(f)",
               "safe mode off": "keras.saving.load_model(p, safe_" + "mode=False)"}
    for name, text in planted.items():
        assert offences(text) == [name], name
    assert offences("import pickleball_scores\nnp.load(f, allow_pickle=False)") == []


def test_a_pickled_object_array_in_the_mnist_cache_is_refused(tmp_path):
    arrays = {k: np.zeros(s, np.uint8) for k, s in [("x_train", (60000, 28, 28)),
                                                    ("x_test", (10000, 28, 28))]}
    arrays["y_train"] = np.array([object()] * 10, dtype=object)  # stored as a pickle
    arrays["y_test"] = np.zeros(10000, np.uint8)
    np.savez_compressed(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(DatasetError, match=r"mnist\.npz: unreadable \(ValueError: Object arrays "
                                           r"cannot be loaded when allow_pickle=False\)"):
        datasets.load_mnist(tmp_path)


# ---------------------------------------------------------------- .tflite via the CLI


def corrupt_models(tmp_path):
    good = (MODELS / "mnist.int8_io.tflite").read_bytes()
    int8_io = "mnist.int8_io.tflite"
    no_subgraph = bytearray((MODELS / "mnist.float32.tflite").read_bytes())
    no_subgraph[16:18] = b"\0\0"  # the root table's vtable slot for `subgraphs`
    models = {
        "random.tflite": (np.random.default_rng(1).integers(0, 256, 50_000, np.uint8).tobytes(),
                          "not a valid Flatbuffer"),
        "truncated.tflite": (good[: len(good) // 2], "not a valid Flatbuffer"),
        "empty.tflite": (b"", "cannot load it"),
        "negative_scale.tflite": (model_with({tensor_field(int8_io, 38, "scale"): 0xC4}),
                                  "has quantization scale -"),  # value: the model's
        "huge_batch.tflite": (model_with({tensor_field(int8_io, 34, "shape") + 2: 0x7F}),
                              "would take 12,446 MiB"),
        "no_subgraph.tflite": (bytes(no_subgraph), "lists no subgraph"),
    }
    for name, (data, _) in models.items():
        (tmp_path / name).write_bytes(data)
    return {tmp_path / name: reason for name, (_, reason) in models.items()}


def test_a_corrupt_model_given_to_classify_is_one_line_and_exit_2(tmp_path):
    # negative_scale aborted the whole process (SIGABRT, no message), huge_batch spent 47 s
    # allocating 12 GB, no_subgraph segfaulted: all found by tests/test_fuzz.py.
    for model, reason in corrupt_models(tmp_path).items():
        out = run_cli("classify", "--model", model, SAMPLE_IMAGE)
        assert out.returncode == 2, (model.name, out.returncode, out.stderr[-500:])
        assert "Traceback" not in out.stderr
        (line,) = out.stderr.strip().splitlines()
        assert line.startswith(f"tinydigits: error: {model}: ") and reason in line, line
        assert out.stdout == ""


# -------------------------------------------------------------------- corrupt caches


def test_mnist_with_wrong_label_counts_is_refused(tmp_path):
    np.savez_compressed(tmp_path / "mnist.npz", x_train=np.zeros((60000, 28, 28), np.uint8),
                        y_train=np.zeros(60000, np.uint8),  # every label a 0
                        x_test=np.zeros((10000, 28, 28), np.uint8),
                        y_test=np.arange(10000, dtype=np.uint8) % 10)
    with pytest.raises(DatasetError, match=r"y_train label counts \[60000, 0, .*not MNIST's; "
                                           r"delete .*mnist\.npz and run again"):
        datasets.load_mnist(tmp_path)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip",
                                     bytes(range(256)) * 100], ids=["empty", "fake-zip", "noise"])
def test_an_unreadable_mnist_cache_names_the_file_and_the_fix(tmp_path, content):
    (tmp_path / "mnist.npz").write_bytes(content)
    with pytest.raises(DatasetError) as e:
        datasets.load_mnist(tmp_path)
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'mnist.npz'}: unreadable") and "\n" not in message
    assert message.endswith(f"delete {tmp_path / 'mnist.npz'} and run again to download it anew")


@pytest.fixture(scope="module")
def extracted_fsdd(tmp_path_factory):
    """A cache holding an extracted FSDD folder: links to the 3,000 real recordings.

    Shared by the tests below; each damages one recording and puts the link back.
    """
    cache = tmp_path_factory.mktemp("fsdd")
    recordings = cache / datasets.FSDD_DIR / "recordings"
    recordings.mkdir(parents=True)
    for wav in datasets.fsdd_recordings_dir().glob("*.wav"):
        (recordings / wav.name).symlink_to(wav)
    return recordings


@contextlib.contextmanager
def damaged(recordings, name, damage):
    victim = recordings / name
    target = victim.readlink()
    victim.unlink()
    try:
        if damage == "folder":
            victim.mkdir()
        elif damage != "missing":
            data = target.read_bytes()
            victim.write_bytes({"truncated": data[:3000], "header-only": data[:44],
                                "noise": bytes(range(256)) * 19}[damage])
        yield victim
    finally:
        if victim.is_dir():
            victim.rmdir()
        victim.unlink(missing_ok=True)
        victim.symlink_to(target)


def test_an_extracted_fsdd_missing_a_recording_is_refused(extracted_fsdd):
    with damaged(extracted_fsdd, "7_theo_3.wav", "missing"), pytest.raises(
            DatasetError, match=r"2999 recordings \(\[300, 300, 300, 300, 300, 300, 300, 299, "
                                r"300, 300\] per digit\), expected 3000"):
        datasets.load_fsdd(extracted_fsdd.parent.parent)


@pytest.mark.parametrize("damage", ["truncated", "header-only", "noise", "folder"])
def test_a_damaged_fsdd_recording_is_named_not_read_short(extracted_fsdd, damage):
    # A truncated WAV used to load quietly: libsndfile returns the samples that are left.
    with damaged(extracted_fsdd, "0_george_0.wav", damage) as victim:  # the first one read
        with pytest.raises(DatasetError) as e:
            datasets.load_fsdd(extracted_fsdd.parent.parent)
    message = str(e.value)
    assert message.startswith(f"{victim}: truncated or unreadable (") and "\n" not in message
    assert message.endswith(f"delete {extracted_fsdd.parent} and run again to download it anew")


def test_the_undamaged_linked_fsdd_loads(extracted_fsdd):
    # The fixture itself is sound: without damage, the same folder loads in full.
    fsdd = datasets.load_fsdd(extracted_fsdd.parent.parent)
    assert len(fsdd.audio) == 3000 and np.bincount(fsdd.digit).tolist() == [300] * 10


def test_a_model_given_the_wrong_kind_of_input_says_so_in_one_line():
    # A user's --model with another input size used to end in a NumPy reshape traceback.
    model = MODELS / "spoken_digits.int8.tflite"
    if not model.is_file():
        model = MODELS / "mnist.int8.tflite"  # then feed it audio-shaped input instead
    classifier = Classifier(model)
    x = preprocess_image(SAMPLE_IMAGE) if classifier.kind == "audio" else np.zeros(8000)
    with pytest.raises(RuntimeUnavailable) as e:
        classifier.predict(x)
    assert str(e.value) == f"{model}: takes input {classifier.input_shape}, not {x.shape}"
