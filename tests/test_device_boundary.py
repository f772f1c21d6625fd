"""The device side never imports TensorFlow or Keras: that is what runs on the Pi."""

import json
import subprocess
import sys

from conftest import MODELS, REPO

CHECK = """
import json, sys, runpy
sys.argv = ["tinydigits"] + {argv!r}
{body}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))))
"""


def heavy_modules_after(body, argv=()):
    code = CHECK.format(argv=list(argv), body=body)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_device_modules_loads_no_tensorflow():
    body = "import tinydigits, tinydigits.runtime, tinydigits.cli, tinydigits.images, " \
           "tinydigits.audio, tinydigits.listen, tinydigits.features, tinydigits.files, " \
           "tinydigits.errors"
    assert heavy_modules_after(body) == []


def test_classify_command_runs_without_tensorflow():
    image = sorted((REPO / "samples" / "images").glob("*.png"))[0]
    body = ("from tinydigits.cli import main\n"
            "try:\n    code = main(sys.argv[1:])\n"
            "except SystemExit as e:\n    code = e.code\n"
            "assert code == 0, code")
    assert heavy_modules_after(body, ["classify", str(image)]) == []


def test_listen_on_a_file_runs_without_tensorflow():
    stream = REPO / "samples" / "audio" / "stream_16k.wav"
    body = ("from tinydigits.cli import main\n"
            "code = main(sys.argv[1:])\n"
            "assert code == 0, code")
    assert heavy_modules_after(body, ["listen", "--input", str(stream)]) == []


def test_the_check_itself_can_fail():
    # Guard against a check that passes vacuously: the training side does import Keras.
    assert "keras" in heavy_modules_after("import tinydigits.blocks")


def test_shipped_default_models_exist():
    assert (MODELS / "mnist.int8_io.tflite").is_file()
