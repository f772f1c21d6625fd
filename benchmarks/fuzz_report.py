"""How the readers stand up to hostile input: a time-bounded fuzz run, and its figures.

    python benchmarks/fuzz_report.py                  # 10 minutes: 4 audio, 4 image, 2 model
    python benchmarks/fuzz_report.py --minutes 1      # a quick look

Drives the hypothesis strategies of tests/test_fuzz.py (random bytes; real samples and
models truncated, with header fields overwritten, huge declared sizes, NaN/inf samples...)
with many more examples than the test suite, each input in a forked child with its
address space capped, and prints per reader: cases run, how many were handled or
refused, bugs (a traceback, a warning, a crash, a hang, a malformed result), the slowest
input and the worst memory (the larger of tracemalloc's peak and RSS growth). Then it
replays the inputs that crashed or hung the readers before they were fixed. Inputs that
show a bug are saved to --keep (default /tmp/tinydigits-fuzz) to reproduce them.
"""

import argparse
import collections
import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, Phase, given, seed, settings
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import test_fuzz as fuzz  # noqa: E402 - the strategies and the isolated runner live there

SHARE = {"audio": 0.4, "image": 0.4, "model": 0.2}  # of the time; a model case costs ~5x
BATCH = 100  # examples per hypothesis run; runs repeat with new seeds until time is up
STRATEGIES = {"audio": fuzz.audio_inputs, "image": fuzz.image_inputs, "model": fuzz.model_inputs}
SUFFIX = {"audio": ".wav", "image": ".png", "model": ".tflite"}

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--minutes", type=float, default=10.0, help="total time, split by SHARE")
parser.add_argument("--seed", type=int, default=0, help="first hypothesis seed")
parser.add_argument("--keep", type=Path, default=Path(tempfile.gettempdir()) / "tinydigits-fuzz",
                    help="where the inputs that show a bug, and the slowest and largest, go")
parser.add_argument("--readers", nargs="+", choices=list(SHARE), default=list(SHARE),
                    help="fuzz only these (each keeps its share of --minutes)")
args = parser.parse_args()


class Tally:
    def __init__(self):
        self.status = collections.Counter()
        self.slowest, self.slowest_path, self.retimed = (0.0, ""), None, 0.0
        self.largest = (0, "")
        self.bugs = []

    def add(self, outcome, how, data, kind):
        self.status[outcome.status] += 1
        if outcome.seconds > self.slowest[0]:
            self.slowest_path = keep(data, kind, "slowest")
            self.slowest = (outcome.seconds, f"{how}; saved as {self.slowest_path}")
        if outcome.memory_bytes > self.largest[0]:
            self.largest = (outcome.memory_bytes, f"{how}; saved as {keep(data, kind, 'largest')}")
        if outcome.is_bug:
            path = keep(data, kind, f"bug-{len(self.bugs)}")
            self.bugs.append(f"{outcome.status}: {outcome.message} ({how}; saved as {path})")


def keep(data, kind, what) -> Path:
    args.keep.mkdir(parents=True, exist_ok=True)
    path = args.keep / f"{kind}-{what}{SUFFIX[kind]}"
    path.write_bytes(data)
    return path


def fuzz_reader(kind, seconds, work: Path) -> Tally:
    tally, deadline, batch = Tally(), time.monotonic() + seconds, args.seed

    @settings(max_examples=BATCH, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(data=STRATEGIES[kind]())
    def one(data):
        if time.monotonic() > deadline:
            return  # the rest of this batch is skipped: hypothesis cannot be told to stop
        outcome = fuzz.fuzz_one(kind, data, work, "input" + SUFFIX[kind], trace_memory=True)
        tally.add(outcome, getattr(data, "how", "?"), bytes(data), kind)

    while time.monotonic() < deadline:
        seed(batch)(one)()
        batch += 1
    return tally


def replay_fixed(work: Path) -> list:
    """The inputs that crashed, hung or misread before their fixes, run again."""
    int8_io = "mnist.int8_io.tflite"
    no_subgraph = bytearray(fuzz.model_seeds()["mnist.float32.tflite"])
    no_subgraph[16:18] = b"\0\0"
    x, rate = fuzz.speech()
    x = x / np.abs(x).max()
    loud = io.BytesIO()
    sf.write(loud, np.stack([x, x], 1) * np.float32(3e38), rate, format="WAV", subtype="FLOAT")
    tiff = io.BytesIO()
    ink = fuzz.digit_image(56, 56, ink=-np.inf).astype(np.float32)
    Image.fromarray(ink, "F").save(tiff, "TIFF")
    cases = [
        ("model", "negative quantization scale (LiteRT abort)",
         fuzz.model_with({fuzz.tensor_field(int8_io, 38, "scale"): 0xC4})),
        ("model", "batch of 8,323,073 (12 GB, 47 s in allocate_tensors)",
         fuzz.model_with({fuzz.tensor_field(int8_io, 34, "shape") + 2: 0x7F})),
        ("model", "no subgraphs vector (LiteRT segfault)", bytes(no_subgraph)),
        ("audio", "stereo float WAV at 3e38 (overflow warning, refused)", loud.getvalue()),
        ("image", "float TIFF with -inf ink (overflow warning, no digit)", tiff.getvalue()),
    ]
    return [(kind, what, fuzz.fuzz_one(kind, data, work, "replay" + SUFFIX[kind],
                                       trace_memory=True)) for kind, what, data in cases]


def main():
    work = Path(tempfile.mkdtemp(prefix="tinydigits-fuzz-"))
    started = time.monotonic()
    try:
        tallies = {kind: fuzz_reader(kind, args.minutes * 60 * share, work)
                   for kind, share in SHARE.items() if kind in args.readers}
        replays = replay_fixed(work)
        for kind, t in tallies.items():  # was the slowest input slow, or the machine busy?
            runs = [fuzz.run_isolated(kind, t.slowest_path, trace_memory=True) for _ in range(5)] \
                if t.slowest[0] else []
            t.retimed = statistics.median(o.seconds for o in runs) if runs else 0.0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    print(f"\n### Fuzzing the readers: {elapsed / 60:.1f} min, seeds from {args.seed}\n")
    print("| reader | cases | handled | refused | bugs | slowest input (s) | the same, "
          "re-timed (s) | worst memory (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, t in tallies.items():
        cases = sum(t.status.values())
        bugs = cases - t.status["ok"] - t.status["refused"]
        print(f"| {kind} | {cases:,} | {t.status['ok']:,} | {t.status['refused']:,} | {bugs} | "
              f"{t.slowest[0]:.3f} | {t.retimed:.3f} | {t.largest[0] / 2**20:.1f} |")
    print("\n(re-timed: the median of 5 more runs of the slowest input; the first figure "
          "includes whatever else the machine was doing)")
    for kind, t in tallies.items():
        print(f"\n{kind}: slowest: {t.slowest[1]}; largest: {t.largest[1]}")
        for bug in t.bugs[:20]:
            print(f"  BUG {bug}")
    print("\n| found by fuzzing, now | outcome | s | MiB |\n|---|---|---|---|")
    for kind, what, o in replays:
        print(f"| {kind}: {what} | {o.status}: {o.message.split(': ', 1)[-1][:70]} | "
              f"{o.seconds:.3f} | {o.memory_bytes / 2**20:.1f} |")
    return 1 if any(t.bugs for t in tallies.values()) or any(o.is_bug for *_, o in replays) else 0


if __name__ == "__main__":
    sys.exit(main())
