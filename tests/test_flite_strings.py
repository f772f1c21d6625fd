"""flite's digit strings: rendered, cached atomically, read back, varied like FSDD's."""

import shutil

import numpy as np
import pytest

from tinydigits import flite_strings
from tinydigits.audio import find_utterance
from tinydigits.errors import DatasetError
from tinydigits.flite_strings import FliteStrings

pytestmark = pytest.mark.skipif(not shutil.which("flite"), reason="needs flite (apt)")


def test_render_says_the_string_at_8khz_and_stretch_slows_it():
    fast = flite_strings.render("four one eight six", "slt", 0.8)
    slow = flite_strings.render("four one eight six", "slt", 1.3)
    assert fast.dtype == np.float32 and find_utterance(fast) is not None
    assert 1.4 < len(slow) / len(fast) < 1.9  # 1.3 / 0.8 = 1.6 of the speech
    assert 0.6 < len(fast) / flite_strings.RATE < 3.0  # four words, 8 kHz


def test_the_cache_is_written_whole_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setattr(flite_strings, "PER_VOICE", 10)  # one string of each length 1-10
    monkeypatch.setattr(flite_strings, "VOICES", ("kal16", "slt"))
    check_rendered_cache(FliteStrings, tmp_path)


def test_a_cache_cut_short_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(flite_strings, "PER_VOICE", 3)
    monkeypatch.setattr(flite_strings, "VOICES", ("kal16",))
    FliteStrings.load(tmp_path)
    path = tmp_path / flite_strings.FILE
    with np.load(path) as f:
        parts = dict(f)
    np.savez(path, samples=parts["samples"][:-100], ends=parts["ends"], digits=parts["digits"])
    with pytest.raises(DatasetError, match="inconsistent"):
        FliteStrings.load(tmp_path)
    path.write_bytes(b"not an npz")
    with pytest.raises(DatasetError, match="unreadable"):
        FliteStrings.load(tmp_path)


def test_build_gives_a_levelled_string_no_longer_than_asked():
    bank = FliteStrings([np.sin(np.arange(8000 * n) / 3).astype(np.float32) * 0.3
                         for n in (1, 2, 3)], ["7", "42", "418"])
    rng = np.random.default_rng(0)
    for count, expected in [(1, "7"), (2, "42"), (5, "418")]:
        x, digits = bank.build(rng, count)
        assert digits == expected
        assert x.dtype == np.float32 and np.abs(x).max() <= 1.0


def test_no_flite_is_one_line_saying_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without flite
    with pytest.raises(DatasetError, match="apt install flite"):
        FliteStrings.load(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_lone_words_are_the_one_digit_strings_each_a_word(tmp_path, monkeypatch):
    """The isolated-word recipe trains on these: each must be its digit, and a word the
    device's detector finds (else prepare_clip would refuse it)."""
    monkeypatch.setattr(flite_strings, "PER_VOICE", 12)  # lengths 1-10, then 1 and 2 again
    monkeypatch.setattr(flite_strings, "VOICES", ("kal16", "slt"))
    bank = FliteStrings.load(tmp_path)
    words, digits = bank.lone_words()
    ones = [(a, d) for a, d in zip(bank.audio, bank.digits) if len(d) == 1]
    assert len(words) == len(digits) == len(ones) == 4
    assert digits.dtype.kind == "i" and list(digits) == [int(d) for _, d in ones]
    for word, (audio, _) in zip(words, ones):
        assert word is audio
        assert find_utterance(word) is not None
        assert len(word) < 1.5 * flite_strings.RATE


def check_rendered_cache(bank_class, tmp_path, voices=2):
    """A bank of one string of each length 1-10 per voice, rendered into `tmp_path`: one
    whole file, long strings longer than short ones, and the same strings read back."""
    bank = bank_class.load(tmp_path)
    assert sorted(map(len, bank.digits)) == sorted(list(range(1, 11)) * voices)
    assert [p.name for p in tmp_path.iterdir()] == [bank_class.FILE]  # no temporary left
    longer = [len(a) for a, d in zip(bank.audio, bank.digits) if len(d) == 10]
    shorter = [len(a) for a, d in zip(bank.audio, bank.digits) if len(d) == 1]
    assert min(longer) > 3 * max(shorter)
    again = bank_class.load(tmp_path)  # from the file, not rendered again
    assert again.digits == bank.digits
    assert all(np.array_equal(a, b) for a, b in zip(again.audio, bank.audio))
