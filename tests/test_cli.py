"""`tinydigits classify`: right digits on real files, one clear line per bad file."""

import json

import numpy as np
import pytest
from conftest import REPO, run_cli
from PIL import Image

SAMPLE_IMAGES = sorted((REPO / "samples" / "images").glob("*.*"))


def label_of(path):
    return path.name.split("_")[0]


def test_sample_images_get_their_digit():
    assert len(SAMPLE_IMAGES) >= 8
    out = run_cli("classify", *SAMPLE_IMAGES)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == len(SAMPLE_IMAGES)
    for path, line in zip(SAMPLE_IMAGES, lines):
        name, digit, confidence = line.split()
        assert name == str(path)
        assert digit == label_of(path), line
        assert 0.0 <= float(confidence) <= 1.0


@pytest.fixture
def bad_files(tmp_path):
    png = SAMPLE_IMAGES[0].read_bytes() if SAMPLE_IMAGES[0].suffix == ".png" else None
    if png is None:
        buf = tmp_path / "src.png"
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(buf)
        png = buf.read_bytes()
    files = {
        "empty.png": (b"", "empty"),
        "notes.png": (b"this is not an image\n" * 10, "not an image"),
        "truncated.png": (png[: len(png) // 2], "truncated"),
    }
    paths = {}
    for name, (data, reason) in files.items():
        (tmp_path / name).write_bytes(data)
        paths[tmp_path / name] = reason
    Image.new("L", (1, 1), 255).save(tmp_path / "tiny.png")
    paths[tmp_path / "tiny.png"] = "1x1"
    bands = np.full((10, 162), 102, np.uint8)  # three grey bands, found by fuzzing: the
    bands[2:7] = 19  # "sheet" on the "table" held no paper, and NumPy printed warnings
    bands[7:9, 15:148], bands[9, 81:148] = 167, 167
    Image.fromarray(bands).save(tmp_path / "bands.png")
    paths[tmp_path / "bands.png"] = "no digit found"
    (tmp_path / "folder").mkdir()
    paths[tmp_path / "folder"] = "directory"
    paths[tmp_path / "missing.png"] = "no such file"
    return paths


def test_bad_inputs_give_one_line_each_and_the_good_file_is_still_classified(bad_files):
    good = SAMPLE_IMAGES[0]
    out = run_cli("classify", *bad_files, good)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    errors = out.stderr.strip().splitlines()
    assert len(errors) == len(bad_files), out.stderr
    for (path, reason), line in zip(bad_files.items(), errors):
        assert str(path) in line and reason in line, (reason, line)
    (line,) = out.stdout.strip().splitlines()
    assert line.split()[:2] == [str(good), label_of(good)]


def test_json_output_is_one_object_per_file(bad_files):
    good = SAMPLE_IMAGES[0]
    missing = next(p for p, r in bad_files.items() if r == "no such file")
    out = run_cli("classify", "--json", good, missing)
    assert out.returncode == 1
    first, second = (json.loads(line) for line in out.stdout.strip().splitlines())
    assert first["file"] == str(good) and first["digit"] == label_of(good)
    assert 0 < first["confidence"] <= 1
    assert second["file"] == str(missing) and "no such file" in second["error"]


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_model_variant_can_be_chosen(variant):
    out = run_cli("classify", "--model", variant, *SAMPLE_IMAGES[:3])
    assert out.returncode == 0, out.stderr
    assert [line.split()[1] for line in out.stdout.splitlines()] == \
        [label_of(p) for p in SAMPLE_IMAGES[:3]]


def test_a_bad_model_path_is_one_line_and_exit_2(tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"TFL3" + b"\0" * 100)
    for model in (broken, tmp_path / "none.tflite"):
        out = run_cli("classify", "--model", model, SAMPLE_IMAGES[0])
        assert out.returncode == 2
        assert "Traceback" not in out.stderr
        (line,) = out.stderr.strip().splitlines()
        assert str(model) in line


def test_help_and_usage_errors():
    assert run_cli("--help").returncode == 0
    assert "--model" in run_cli("classify", "--help").stdout
    out = run_cli("classify")
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_wavs_and_images_in_one_call():
    wavs = sorted((REPO / "samples" / "audio").glob("[0-9]_*.wav"))
    assert len(wavs) >= 4
    out = run_cli("classify", SAMPLE_IMAGES[0], *wavs)
    assert out.returncode == 0, out.stderr
    answers = [line.split()[1] for line in out.stdout.strip().splitlines()]
    assert answers == [label_of(p) for p in [SAMPLE_IMAGES[0], *wavs]]


def test_bad_wavs_give_one_line_each(tmp_path):
    import soundfile as sf

    rate = 8000
    (tmp_path / "empty.wav").write_bytes(b"")
    sf.write(tmp_path / "header_only.wav", np.zeros(0, np.int16), rate)
    (tmp_path / "not_a.wav").write_text("RIFF? no, just text\n" * 20)
    sf.write(tmp_path / "10ms.wav", np.full(80, 0.3, np.float32), rate)
    sf.write(tmp_path / "silent.wav", np.zeros(rate, np.int16), rate)
    with sf.SoundFile(tmp_path / "ten_minutes.wav", "w", rate, 1, "PCM_16") as f:
        for _ in range(600):
            f.write(np.zeros(rate, np.int16))
    reasons = {"empty.wav": "empty file", "header_only.wav": "no audio samples",
               "not_a.wav": "not a WAV file", "10ms.wav": "too short",
               "silent.wav": "no speech found", "ten_minutes.wav": "too long"}
    good = sorted((REPO / "samples" / "audio").glob("[0-9]_*.wav"))[0]
    out = run_cli("classify", *(tmp_path / n for n in reasons), good)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    errors = out.stderr.strip().splitlines()
    assert len(errors) == len(reasons), out.stderr
    for (name, reason), line in zip(reasons.items(), errors):
        assert str(tmp_path / name) in line and reason in line, (reason, line)
    assert out.stdout.split()[:2] == [str(good), label_of(good)]


def number_image(mnist_digits, path, gap=0.3, height=120):
    """MNIST test digits side by side as dark ink on white paper, `gap` of a digit's width
    apart, scaled to `height` px: a number as a user writes it."""
    crops = []
    for d in mnist_digits:
        rows, cols = np.flatnonzero(d.any(1)), np.flatnonzero(d.any(0))
        crops.append(d[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
    h = max(c.shape[0] for c in crops)
    space = int(gap * np.mean([c.shape[1] for c in crops]))
    canvas = np.zeros((h + 8, sum(c.shape[1] for c in crops) + space * (len(crops) - 1) + 8))
    x = 4
    for c in crops:
        top = 4 + (h - c.shape[0]) // 2
        canvas[top:top + c.shape[0], x:x + c.shape[1]] = c
        x += c.shape[1] + space
    img = Image.fromarray((255 - canvas).astype(np.uint8))
    img.resize((round(img.width * height / img.height), height), Image.LANCZOS).save(path)


def test_a_handwritten_number_reads_as_its_digits(mnist, tmp_path):
    _, (x_test, y_test) = mnist
    rng = np.random.default_rng(7)
    files, expected = [], []
    for n in range(6):
        pick = rng.choice(len(x_test), 2 + n % 4, replace=False)
        path = tmp_path / f"number_{n}.png"
        number_image(x_test[pick], path)
        files.append(path)
        expected.append("".join(str(y_test[i]) for i in pick))
    out = run_cli("classify", "--json", *files)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["digits"] for r in records] == expected
    for r, digits in zip(records, expected):
        assert len(r["confidences"]) == len(r["boxes"]) == len(digits)
        assert r["confidence"] == min(r["confidences"])
        assert "digit" not in r  # a number: "digit" is for a lone digit only
        lefts = [box[0] for box in r["boxes"]]
        assert lefts == sorted(lefts)
    text = run_cli("classify", files[0])
    assert text.stdout.split()[1] == expected[0]


def test_a_lone_digit_keeps_its_json_shape():
    out = run_cli("classify", "--json", REPO / "samples" / "images" / "7_paper_photo.jpg")
    (record,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert record["digit"] == record["digits"] == "7"
    assert record["kind"] == "image" and len(record["boxes"]) == 1


def test_a_recording_longer_than_a_string_is_read_as_listen_hears_it(fsdd, tmp_path):
    """A number said with pauses makes a file longer than the string model's 10 s: classify
    reads it in blocks, cut at the pauses as `listen --input` does, and prints its digits in
    order (ten FSDD test words 1-2 s apart, starting at once, about 20 s)."""
    import json

    from audio_fixtures import build_digit_stream

    stream = build_digit_stream(tmp_path / "slow_phone_number.wav", fsdd, count=10, seed=2,
                                lead=0.0, gaps=(1.0, 2.0), rate=16000, channels=1)
    assert stream.seconds > 10
    out = run_cli("classify", "--json", stream.path)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["digits"] == "".join(stream.digits)
    assert len(answer["confidences"]) == len(answer["times"]) == 10

    # --threshold is listen's: above every digit's confidence, nothing is kept
    strict = (max(answer["confidences"]) + 1) / 2
    assert strict < 1
    out = run_cli("classify", "--threshold", f"{strict:.5f}", stream.path)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "no digits heard" in out.stderr, out.stderr
    out = run_cli("classify", "--threshold", "1.5", stream.path)
    assert out.returncode == 2 and "outside 0-1" in out.stderr
