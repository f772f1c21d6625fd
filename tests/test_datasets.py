"""Dataset cache: safe extraction, corrupt files named with their fix, FSDD splits."""

import io
import tarfile

import numpy as np
import pytest

from tinydigits import datasets
from tinydigits.errors import DatasetError


def make_tar(path, members):
    """members: (TarInfo, bytes or None)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_member(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link_member(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize("member", [
    file_member("../escape.txt"),
    file_member("ok/../../escape.txt"),
    file_member("/tmp/tinydigits-absolute.txt"),
    link_member("ok/link", "/etc/passwd"),
    link_member("ok/link", "../../outside"),
    link_member("ok/hard", "/etc/passwd", tarfile.LNKTYPE),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink-abs", "symlink-rel", "hardlink"])
def test_safe_extract_refuses_members_that_escape(tmp_path, member):
    archive = make_tar(tmp_path / "bad.tar.gz", [file_member("ok/fine.txt"), member])
    dest = tmp_path / "cache"
    dest.mkdir()
    with pytest.raises(DatasetError, match="bad.tar.gz"):
        datasets.safe_extract(archive, dest)
    assert not (tmp_path / "escape.txt").exists()
    assert list(dest.rglob("*")) == []  # nothing extracted at all: checks come first


def test_safe_extract_refuses_fifo_and_bombs(tmp_path):
    fifo = tarfile.TarInfo("ok/fifo")
    fifo.type = tarfile.FIFOTYPE
    archive = make_tar(tmp_path / "fifo.tar.gz", [(fifo, None)])
    with pytest.raises(DatasetError, match="special"):
        datasets.safe_extract(archive, tmp_path)
    big = make_tar(tmp_path / "big.tar.gz", [file_member("a", b"\0" * 4096)])
    with pytest.raises(DatasetError, match="more than"):
        datasets.safe_extract(big, tmp_path, max_bytes=1024)


def test_safe_extract_extracts_a_good_archive(tmp_path):
    archive = make_tar(tmp_path / "good.tar.gz", [file_member("d/a.txt", b"hello")])
    datasets.safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "d" / "a.txt").read_bytes() == b"hello"


def test_mnist_loads_and_is_checked(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 28, 28) and x_test.dtype == np.uint8
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_truncated_mnist_names_the_file_and_the_fix(tmp_path):
    good = datasets.data_dir() / datasets.MNIST_FILE
    (tmp_path / datasets.MNIST_FILE).write_bytes(good.read_bytes()[: 1_000_000])
    with pytest.raises(DatasetError, match=r"mnist\.npz.*delete .*mnist\.npz"):
        datasets.load_mnist(tmp_path)


def test_wrong_mnist_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((10, 28, 28), np.uint8),
             y_train=np.zeros(10, np.uint8), x_test=np.zeros((10, 28, 28), np.uint8),
             y_test=np.zeros(10, np.uint8))
    with pytest.raises(DatasetError, match="x_train is uint8"):
        datasets.load_mnist(tmp_path)


def test_fsdd_extracts_atomically_and_splits(tmp_path):
    archive = datasets.data_dir() / datasets.FSDD_ARCHIVE
    (tmp_path / datasets.FSDD_ARCHIVE).symlink_to(archive)
    fsdd = datasets.load_fsdd(tmp_path)
    assert len(fsdd.audio) == 3000 and np.bincount(fsdd.digit).tolist() == [300] * 10
    train, test = fsdd.official_split()
    assert (len(train), len(test)) == (2700, 300) and set(fsdd.index[test]) == set(range(5))
    folds = fsdd.loso_folds()
    assert [s for s, _, _ in folds] == list(datasets.FSDD_SPEAKERS)
    for speaker, tr, te in folds:
        assert len(te) == 500 and speaker not in set(fsdd.speaker[tr])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_two_first_runs_at_once_both_get_the_recordings(tmp_path, monkeypatch):
    """Two trainings started together on an empty cache both extract FSDD; the one that
    finishes second finds the folder already there and must use it, not crash."""
    (tmp_path / datasets.FSDD_ARCHIVE).symlink_to(datasets.data_dir() / datasets.FSDD_ARCHIVE)
    real_extract = datasets.safe_extract

    def other_run_finishes_first(archive, staging):
        real_extract(archive, staging)
        monkeypatch.setattr(datasets, "safe_extract", real_extract)
        datasets.fsdd_recordings_dir(tmp_path)  # the run beside us, start to end

    monkeypatch.setattr(datasets, "safe_extract", other_run_finishes_first)
    recordings = datasets.fsdd_recordings_dir(tmp_path)
    assert len(list(recordings.glob("*.wav"))) == 3000
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_fsdd_archive_with_missing_recordings_is_refused(tmp_path):
    wav = (datasets.fsdd_recordings_dir() / "0_george_0.wav").read_bytes()
    make_tar(tmp_path / datasets.FSDD_ARCHIVE,
             [file_member(f"{datasets.FSDD_DIR}/recordings/0_george_{i}.wav", wav)
              for i in range(3)])
    with pytest.raises(DatasetError, match="3 recordings.*expected 3000"):
        datasets.load_fsdd(tmp_path)
    assert not (tmp_path / datasets.FSDD_DIR).exists()  # nothing half-extracted is left


def test_a_failed_download_is_one_line_with_the_offline_fix(tmp_path):
    # A real fetch from a port where nothing listens: refused at once, no network needed.
    dest = tmp_path / "mnist.npz"
    with pytest.raises(DatasetError, match=r"mnist\.npz: could not download .*data/README"):
        datasets._download("http://127.0.0.1:9/mnist.npz", dest)
    assert list(tmp_path.iterdir()) == []  # no partial file for a later run to trust
