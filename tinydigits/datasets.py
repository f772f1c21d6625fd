"""MNIST and the Free Spoken Digit Dataset: download once, cache, check, split.

Downloads go through `keras.utils.get_file` (imported lazily, only when a file is
missing), land under a temporary name, are checked, and are renamed into place.
Archives are extracted with member checks and tarfile's `data` filter into a
temporary folder that is renamed into place when complete. A cached file that fails
its checks raises `DatasetError` naming the file and the command that fixes it.
"""

import io
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinydigits.errors import DatasetError

REPO_ROOT = Path(__file__).resolve().parent.parent
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_FILE = "mnist.npz"
FSDD_VERSION = "1.0.10"
FSDD_URL = (
    "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/"
    f"v{FSDD_VERSION}.tar.gz"
)
FSDD_ARCHIVE = f"free-spoken-digit-dataset-{FSDD_VERSION}.tar.gz"
FSDD_DIR = f"free-spoken-digit-dataset-{FSDD_VERSION}"
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
FSDD_TEST_INDICES = range(0, 5)  # official split: recordings 0-4 of each digit/speaker
MAX_ARCHIVE_BYTES = 200 * 2**20  # FSDD unpacks to ~30 MB; refuse archive bombs
_FSDD_NAME = re.compile(r"^([0-9])_([a-z]+)_([0-9]+)\.wav$")


def data_dir(path=None) -> Path:
    """The dataset cache: `path`, else $TINYDIGITS_DATA, else `data/` in the repo."""
    chosen = path or os.environ.get("TINYDIGITS_DATA") or REPO_ROOT / "data"
    chosen = Path(chosen)
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen


def _fix_hint(path: Path) -> str:
    return f"delete {path} and run again to download it anew"


def _download(url: str, dest: Path) -> None:
    """Download `url` to `dest` atomically with Keras's progress bar."""
    import keras  # lazy: only the training side ever downloads

    partial = dest.with_name(dest.name + ".part")
    partial.unlink(missing_ok=True)
    try:
        keras.utils.get_file(
            fname=partial.name, origin=url, cache_dir=str(dest.parent), cache_subdir="."
        )
    except Exception as e:  # no network, a proxy, a 404: one line, and the offline way
        partial.unlink(missing_ok=True)
        reason = str(getattr(e, "reason", None) or e).split(" -- ")[-1]
        raise DatasetError(f"{dest}: could not download {url} ({reason}); offline, copy the "
                           f"file there (see data/README.md)") from None
    os.replace(partial, dest)


# ----------------------------------------------------------------------------- MNIST


def check_mnist(arrays, path) -> None:
    expected = {
        "x_train": ((60000, 28, 28), np.uint8),
        "y_train": ((60000,), np.uint8),
        "x_test": ((10000, 28, 28), np.uint8),
        "y_test": ((10000,), np.uint8),
    }
    for key, (shape, dtype) in expected.items():
        if key not in arrays:
            raise DatasetError(f"{path}: no array {key!r}; {_fix_hint(path)}")
        a = arrays[key]
        if a.shape != shape or a.dtype != dtype:
            raise DatasetError(
                f"{path}: {key} is {a.dtype}{a.shape}, expected {np.dtype(dtype)}{shape}; "
                + _fix_hint(path)
            )
    for key, least in (("y_train", 5000), ("y_test", 800)):
        counts = np.bincount(arrays[key], minlength=10)
        if len(counts) != 10 or counts.min() < least:
            raise DatasetError(
                f"{path}: {key} label counts {counts.tolist()} are not MNIST's; "
                + _fix_hint(path)
            )


def load_mnist(path=None):
    """Return ((x_train, y_train), (x_test, y_test)) as uint8 arrays, downloading once."""
    file = data_dir(path) / MNIST_FILE
    if not file.exists():
        _download(MNIST_URL, file)
    try:
        with np.load(file, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError, OSError...
        raise DatasetError(
            f"{file}: unreadable ({type(e).__name__}: {e}); {_fix_hint(file)}") from None
    check_mnist(arrays, file)
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


# ---------------------------------------------------------------------- safe extraction


def safe_extract(archive, dest, max_bytes=MAX_ARCHIVE_BYTES) -> None:
    """Extract a tar archive into `dest`, refusing anything that could escape it.

    Only regular files and directories are accepted: links, devices and FIFOs are
    refused, as are absolute or `..` member names and archives that would unpack to
    more than `max_bytes`. tarfile's `data` filter then checks everything again.
    """
    dest = Path(dest).resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            total = 0
            for member in tar:  # header by header: a bomb is refused before it is inflated
                name = member.name
                target = (dest / name).resolve()
                if os.path.isabs(name) or not target.is_relative_to(dest):
                    raise DatasetError(f"{archive}: member {name!r} would escape {dest}")
                if not (member.isfile() or member.isdir()):
                    raise DatasetError(
                        f"{archive}: member {name!r} is a link or special file; refused"
                    )
                total += member.size
                if total > max_bytes:
                    raise DatasetError(
                        f"{archive}: unpacks to more than {max_bytes // 2**20} MiB; refused"
                    )
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DatasetError(
            f"{archive}: unreadable archive ({e}); {_fix_hint(Path(archive))}") from None


# ------------------------------------------------------------------------------ FSDD


@dataclass
class SpokenDigits:
    """FSDD as arrays: `audio[i]` (float32 in [-1, 1], 8 kHz), `digit`, `speaker`, `index`."""

    audio: list
    digit: np.ndarray
    speaker: np.ndarray
    index: np.ndarray
    sample_rate: int = 8000

    def official_split(self):
        """Indices of (train, test): recordings 0-4 of every digit and speaker are test."""
        test = np.isin(self.index, list(FSDD_TEST_INDICES))
        return np.flatnonzero(~test), np.flatnonzero(test)

    def loso_folds(self):
        """[(speaker, train indices, test indices)] leaving each speaker out once."""
        return [
            (s, np.flatnonzero(self.speaker != s), np.flatnonzero(self.speaker == s))
            for s in np.unique(self.speaker)
        ]


def fsdd_recordings_dir(path=None) -> Path:
    """The extracted `recordings/` folder, downloading and extracting it once."""
    root = data_dir(path)
    recordings = root / FSDD_DIR / "recordings"
    if recordings.is_dir():
        return recordings
    archive = root / FSDD_ARCHIVE
    if not archive.exists():
        _download(FSDD_URL, archive)
    staging = Path(tempfile.mkdtemp(prefix=".fsdd-extract-", dir=root))
    try:
        safe_extract(archive, staging)
        extracted = staging / FSDD_DIR
        if not (extracted / "recordings").is_dir():
            raise DatasetError(
                f"{archive}: no {FSDD_DIR}/recordings/ inside; {_fix_hint(archive)}"
            )
        _check_fsdd_files(extracted / "recordings", archive)
        try:
            os.replace(extracted, root / FSDD_DIR)  # the folder appears whole or not at all
        except OSError:
            if not recordings.is_dir():  # not a run beside this one that got there first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return recordings


def _check_fsdd_files(recordings: Path, origin: Path) -> list:
    names = sorted(p.name for p in recordings.glob("*.wav"))
    digits = np.array([int(n[0]) for n in names if _FSDD_NAME.match(n)], dtype=int)
    counts = np.bincount(digits, minlength=10) if len(digits) else np.zeros(10, int)
    if len(names) != 3000 or counts.tolist() != [300] * 10:
        raise DatasetError(
            f"{origin}: {len(names)} recordings ({counts.tolist()} per digit), expected "
            f"3000 (300 per digit); {_fix_hint(origin)}"
        )
    return names


def load_fsdd(path=None) -> SpokenDigits:
    """All 3,000 FSDD recordings, decoded, with their labels."""
    import soundfile as sf

    recordings = fsdd_recordings_dir(path)
    names = _check_fsdd_files(recordings, recordings.parent)
    audio, digit, speaker, index = [], [], [], []
    for name in names:
        d, s, i = _FSDD_NAME.match(name).groups()
        try:
            data = (recordings / name).read_bytes()
            declared = int.from_bytes(data[4:8], "little") + 8  # RIFF's size, as FSDD writes it
            if declared != len(data):  # libsndfile would quietly read what is left
                raise ValueError(f"{len(data)} bytes where its header says {declared}")
            x, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except Exception as e:
            raise DatasetError(f"{recordings / name}: truncated or unreadable ({e}); "
                               f"{_fix_hint(recordings.parent)}") from None
        if rate != 8000 or len(x) == 0:
            raise DatasetError(f"{recordings / name}: {rate} Hz, {len(x)} samples; expected "
                               f"8 kHz; {_fix_hint(recordings.parent)}")
        audio.append(x.mean(axis=1))
        digit.append(int(d))
        speaker.append(s)
        index.append(int(i))
    return SpokenDigits(audio, np.array(digit), np.array(speaker), np.array(index))
