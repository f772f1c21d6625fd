"""festival's accented digit strings: rendered, cached atomically, heard as the digits spelt."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from conftest import run_cli
from test_flite_strings import check_rendered_cache

from tinydigits import festival_strings
from tinydigits.audio import find_utterance
from tinydigits.errors import DatasetError
from tinydigits.festival_strings import FestivalStrings

pytestmark = pytest.mark.skipif(not shutil.which("text2wave"), reason="needs festival (apt)")


def test_every_voice_says_a_string_at_8khz_and_stretch_slows_the_diphone_voices():
    for voice in festival_strings.VOICES:
        text = festival_strings.text_of("4186", voice, np.random.default_rng(1))
        fast = festival_strings.render(text, voice, 0.8)
        assert fast.dtype == np.float32 and find_utterance(fast) is not None, voice
        assert 0.6 < len(fast) / festival_strings.RATE < 3.5, voice  # four words, 8 kHz
    slow = festival_strings.render("for uan eit siks", "czech_krb", 1.3)
    fast = festival_strings.render("for uan eit siks", "czech_krb", 0.8)
    assert 1.4 < len(slow) / len(fast) < 1.9  # 1.3 / 0.8 = 1.6 of the speech


def test_the_spellings_are_heard_as_their_digits(tmp_path):
    """A wrong spelling would teach the string model a wrong label: each voice's ten words,
    said alone, are heard by the shipped isolated model as their digits (2026-12-07: 86 of
    100; 6-10 of each voice's 10; each digit by 5-10 of the 10 voices)."""
    files = []
    for voice in festival_strings.VOICES:
        words = festival_strings.SPELLINGS[festival_strings.VOICES[voice][0]].split()
        for d, word in enumerate(words):
            path = tmp_path / f"{voice}-{d}.wav"
            sf.write(path, festival_strings.render(word, voice, 1.0), festival_strings.RATE)
            files.append((voice, d, path))
    out = run_cli("classify", "--json", *[p for _, _, p in files])
    assert out.returncode == 0, out.stderr
    heard = [json.loads(line)["digits"] for line in out.stdout.splitlines()]
    by_voice, by_digit = {}, {}
    for (voice, d, _), got in zip(files, heard, strict=True):
        by_voice[voice] = by_voice.get(voice, 0) + (got == str(d))
        by_digit[d] = by_digit.get(d, 0) + (got == str(d))
    assert sum(by_voice.values()) >= 80, by_voice
    assert min(by_voice.values()) >= 6, by_voice
    assert min(by_digit.values()) >= 5, by_digit  # a misspelt word fails a language's voices


def test_the_cache_is_written_whole_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setattr(festival_strings, "PER_VOICE", 10)  # one string of each length 1-10
    monkeypatch.setattr(festival_strings, "VOICES", {
        v: festival_strings.VOICES[v] for v in ("czech_dita", "pc_diphone")})
    check_rendered_cache(FestivalStrings, tmp_path)


def test_a_missing_voice_or_festival_is_one_line_naming_the_package(tmp_path, monkeypatch):
    monkeypatch.setitem(festival_strings.VOICES, "no_such_voice", ("en", "festvox-none"))
    with pytest.raises(DatasetError, match="apt install festvox-none"):
        festival_strings.render("one", "no_such_voice", 1.0)
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without festival
    with pytest.raises(DatasetError, match="apt install festival"):
        FestivalStrings.load(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_readme_and_ci_install_every_voice():
    """The recipe needs every voice in VOICES; the README's line and CI must name them all."""
    from conftest import REPO

    readme, ci = (REPO / "README.md").read_text(), (REPO / ".ci" / "run").read_text()
    for package in festival_strings.PACKAGES:
        assert f" {package}" in readme and f" {package}" in ci, package
