"""The training tools print their own lines, not TensorFlow's: no C++ log lines before the
first epoch of a recipe, one line per variant and the table from the exporter."""

import re
import subprocess
import sys

import pytest
from conftest import MODELS, REPO

NATIVE_LOG = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages|To enable the following)")


def run(*args, tmp_path):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)


@pytest.mark.slow
def test_recipe_prints_no_native_log_lines(tmp_path):
    r = run(REPO / "recipes" / "mnist.py", "--epochs", "1", "--limit", "300", "--out-dir",
            tmp_path / "out", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    native = [line for line in r.stderr.splitlines() if NATIVE_LOG.match(line)]
    assert not native, native
    assert "test accuracy" in r.stdout


def test_exporter_prints_one_line_per_variant_then_the_table(tmp_path):
    r = run(REPO / "export" / "tflite.py", MODELS / "spoken_digits.keras", "--out-dir", tmp_path,
            "--variants", "float32", "dynamic", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"{MODELS / 'spoken_digits.keras'}: spoken_digits model")
    assert [line.split()[0] for line in lines[1:3]] == ["float32", "dynamic"]
    assert all(line.endswith(" ok") for line in lines[1:3]), lines[1:3]
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + 2  # header, rule, two variants
    assert lines[-1] == f"installed 2 variants in {tmp_path} and manifest.json"
