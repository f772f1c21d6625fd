"""How fast `tinydigits listen` answers, and what listening costs: a table for the README.

    OPENBLAS_NUM_THREADS=1 python benchmarks/listen_latency.py          # a file, real time
    OPENBLAS_NUM_THREADS=1 python benchmarks/listen_latency.py file strings mic thresholds

Builds a stream of FSDD test words (random order, 0.3-2 s pauses, pink noise at 20 dB
SNR, 48 kHz stereo) and runs `tinydigits listen --json` on it as a user would:
- file: `--input FILE --realtime`, paced as a microphone would deliver it;
- strings: the same for digit strings said in one breath (FSDD test words of one speaker,
  -30 to 100 ms apart, 3-8 digits, 1.5-2.5 s between strings): latency from the end of a
  string to its line, which includes the per-digit second opinion (`ctc.rescore`);
- mic: the words are played with `paplay` into a private PulseAudio null sink whose
  monitor is the default microphone, so PortAudio's capture path runs (needs pulseaudio,
  pulseaudio-utils, libportaudio2, libasound2-plugins).

Latency is from the end of each word (known from the stream, FSDD's own recording) to the
printed line: for the file as measured by `listen` (end of the word's last sample -> print);
for the mic from the parent's clock, play start + end of word -> line received, which also
counts PulseAudio's buffers. CPU share is the listen process's user + system time over the
wall time while it listens (after start-up), as a share of one core.

`pauses` reads 60 strings said in one breath with each `listen --pause` and counts the lines
printed and the strings printed whole.

`thresholds` runs 300 FSDD test words (20 and 10 dB SNR) and 144 everyday non-digit
sounds (tests/audio_fixtures.py: typing, knocks, claps, breath, coughs, whistles, beeps,
hum, creaks) through `listen --threshold 0` and counts what each threshold would print.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from audio_fixtures import (  # noqa: E402
    align,
    build_digit_stream,
    build_noise_file,
    build_not_digit_stream,
    build_string_stream,
    listen_command,
    missing_pulse_tools,
    play,
    play_in_background,
    stop,
    virtual_microphone,
)

from tinydigits.datasets import load_fsdd  # noqa: E402

TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux: /proc/<pid>/stat counts CPU time in these


def cpu_seconds(pid) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


class Listener:
    """`tinydigits listen --json ...` in a subprocess; each line stamped on arrival."""

    def __init__(self, args, env=None):
        self.lines = []
        self.process = subprocess.Popen(listen_command("--json", *args), env=env, cwd=REPO,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
        status = self.process.stderr.readline()  # "tinydigits: listening to ..."
        if "listening" not in status:
            stop(self.process)
            sys.exit(f"listen did not start: {status}{self.process.stderr.read()}")
        self.started = time.monotonic()
        self.cpu_started = cpu_seconds(self.process.pid)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), json.loads(line)))

    def cpu_share(self) -> float:
        return (cpu_seconds(self.process.pid) - self.cpu_started) / (
            time.monotonic() - self.started)

    def finish(self, timeout=30):
        self.process.wait(timeout)
        self.reader.join(5)
        return self.process.returncode


def row(name, stream, lines, latencies, cpu):
    said = "".join(stream.digits)
    counts = align(said, "".join(record["digits"] for _, record in lines))
    latencies = np.array(latencies) * 1000
    return (f"| {name} | {len(said)} | {counts['correct'] / len(said):.1%} "
            f"| {counts['insertions']} | {np.median(latencies):.0f} "
            f"| {np.percentile(latencies, 95):.0f} | {cpu:.1%} |")


def nearest_end(stream, record):
    """The true end of the word a detection overlaps most (its own start/end are estimates)."""
    overlaps = [min(e, record["end"]) - max(s, record["start"]) for s, e in stream.spans]
    return stream.spans[int(np.argmax(overlaps))][1]


def measure_file(stream, model_args, name="file, --realtime"):
    listener = Listener(["--input", stream.path, "--realtime", *model_args])
    time.sleep(stream.seconds - 1.0)
    cpu = listener.cpu_share()
    if listener.finish() != 0:
        sys.exit(listener.process.stderr.read())
    # listen measured from the end of its own estimate of the word; move it to the truth.
    latencies = [r["latency"] + r["end"] - nearest_end(stream, r) for _, r in listener.lines]
    return row(name, stream, listener.lines, latencies, cpu)


def measure_mic(stream, model_args, workdir):
    build_noise_file(workdir / "room.wav", seconds=stream.seconds + 30, slopes=(1.0,))
    with virtual_microphone(workdir) as env:
        room = play_in_background(workdir / "room.wav", env)  # the room, before and after
        listener = Listener(model_args, env=env)
        try:
            time.sleep(1.0)
            played = time.monotonic()
            play(stream.path, env)
            time.sleep(0.5)
            cpu = listener.cpu_share()
            listener.process.send_signal(2)  # Ctrl-C
            code = listener.finish()
        finally:
            stop(listener.process)
            stop(room)
    if code != 0:
        sys.exit(listener.process.stderr.read())
    outside, inside = [], []
    for arrived, record in listener.lines:
        played_start = played - listener.started  # the file's time 0 on listen's clock
        shifted = dict(record, start=record["start"] - played_start,
                       end=record["end"] - played_start)
        true_end = nearest_end(stream, shifted)
        # From outside: paplay's start-up counts against listen (an overestimate).
        outside.append(arrived - (played + true_end))
        # listen's own clock: from the callback that delivered the word's end (PulseAudio's
        # capture buffering before the callback is not seen: an underestimate).
        inside.append(record["latency"] + shifted["end"] - true_end)
    return [row("virtual mic, play start -> line read", stream, listener.lines, outside, cpu),
            row("virtual mic, listen's clock", stream, listener.lines, inside, cpu)]


REJECTED = re.compile(r"^rejected (\S+)  ([0-9.]+)  ([0-9.]+) s: (.*)$")


def confidences(path, model_args):
    """[(start, label, confidence)] of every sound listen heard, printed or not."""
    out = subprocess.run(listen_command("--input", path, "--threshold", "0", "--json",
                                        "--show-rejected", *model_args),
                         capture_output=True, text=True, cwd=REPO, check=True)
    heard = [(r["start"], r["digit"], r["confidence"])
             for r in map(json.loads, out.stdout.splitlines())]
    for line in out.stderr.splitlines():
        if m := REJECTED.match(line):
            heard.append((float(m[3]), m[1], 0.0))  # "none" or no speech: never printed
    return heard


def measure_thresholds(fsdd, model_args, workdir, thresholds=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95)):
    """Words printed right / wrong and non-digit sounds printed, for each threshold."""
    words = {}
    for snr in (20, 10):
        stream = build_digit_stream(workdir / f"words{snr}.wav", fsdd, count=300, seed=7,
                                    snr_db=snr)
        heard = confidences(stream.path, model_args)
        best = []  # each word: the (label, confidence) heard during it
        for digit, (start, end) in zip(stream.digits, stream.spans):
            during = [(lab, c) for t, lab, c in heard if start - 0.3 <= t <= end]
            best.append((digit, *(during[0] if during else ("-", 0.0))))
        words[snr] = best
    sounds = []
    for seed in range(4):
        events = build_not_digit_stream(workdir / "sounds.wav", repeats=3, seed=seed)
        heard = confidences(workdir / "sounds.wav", model_args)
        sounds.append((len(events), [c for _, lab, c in heard if lab not in ("none", "-")]))
    n_sounds = sum(n for n, _ in sounds)
    lines = ["| threshold | words right, 20 dB SNR | wrong | words right, 10 dB | wrong "
             f"| non-digit sounds printed (of {n_sounds}) |", "|---|---|---|---|---|---|"]
    for t in thresholds:
        cells = []
        for snr in (20, 10):
            right = sum(d == lab and c >= t for d, lab, c in words[snr])
            wrong = sum(d != lab and lab not in ("none", "-") and c >= t
                        for d, lab, c in words[snr])
            cells += [f"{right / len(words[snr]):.1%}", str(wrong)]
        printed = sum(sum(c >= t for c in cs) for _, cs in sounds)
        lines.append(f"| {t:g} | {' | '.join(cells)} | {printed} ({printed / n_sounds:.0%}) |")
    return lines


def measure_pauses(fsdd, workdir, pauses=(0.15, 0.2, 0.25, 0.3)):
    """60 fluent strings (two streams of 30, seeds 11 and 12) read as fast as possible with
    each --pause: lines printed, strings printed whole on one line, digits right."""
    from tinydigits import listen

    streams = [build_string_stream(workdir / f"pauses{seed}.wav", fsdd, count=30, seed=seed)
               for seed in (11, 12)]
    classifier, strings = listen.load_models(None)
    said = "".join(d for stream in streams for d in stream.digits)
    total = sum(len(stream.digits) for stream in streams)
    lines = ["| --pause | lines | strings on one line | digits right |", "|---|---|---|---|"]
    for pause in pauses:
        printed, whole = [], 0
        for stream in streams:
            got = [d.digit for d, _ in listen.detections(
                listen.FileSource(stream.path), classifier, listen.DEFAULT_THRESHOLD,
                strings=strings, pause=pause) if d.accepted]
            printed += got
            whole += sum((Counter(stream.digits) & Counter(got)).values())  # repeats count
        counts = align(said, "".join(printed))
        lines.append(f"| {pause:g} | {len(printed)} | {whole} of {total} "
                     f"| {counts['correct'] / len(said):.1%} |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("parts", nargs="*", default=["file"],
                        choices=["file", "strings", "mic", "thresholds", "pauses"],
                        help="what to measure (default: file)")
    parser.add_argument("--digits", type=int, default=40, help="words in the latency stream")
    parser.add_argument("--strings", type=int, default=20, help="strings in the strings part")
    parser.add_argument("--seed", type=int, default=3, help="stream order and pauses")
    parser.add_argument("--model", help="passed to listen --model (default: shipped int8)")
    parser.add_argument("--threshold", help="passed to listen --threshold (latency parts)")
    parser.add_argument("--pause", help="passed to listen --pause (latency parts)")
    args = parser.parse_args()
    model_args = ["--model", args.model] if args.model else []
    latency_args = model_args + (["--threshold", args.threshold] if args.threshold else [])
    latency_args += ["--pause", args.pause] if args.pause else []
    if "mic" in args.parts and missing_pulse_tools():
        sys.exit(f"mic needs {', '.join(missing_pulse_tools())}: "
                 "sudo apt install pulseaudio pulseaudio-utils libportaudio2 libasound2-plugins")

    fsdd = load_fsdd()
    with tempfile.TemporaryDirectory(prefix="listen-latency-") as tmp:
        workdir = Path(tmp)
        rows = []
        if "file" in args.parts:
            stream = build_digit_stream(workdir / "stream.wav", fsdd, count=args.digits,
                                        seed=args.seed)
            rows.append(measure_file(stream, latency_args, "file, --realtime: paused words"))
            print(rows[-1], flush=True)
        if "strings" in args.parts:
            strings = build_string_stream(workdir / "strings.wav", fsdd, count=args.strings,
                                          seed=args.seed)
            rows.append(measure_file(strings, latency_args,
                                     f"file, --realtime: {args.strings} strings said in one "
                                     "breath, 3-8 digits"))
            print(rows[-1], flush=True)
        if "mic" in args.parts:
            clean = build_digit_stream(workdir / "clean.wav", fsdd, count=args.digits,
                                       seed=args.seed, snr_db=None)
            rows += measure_mic(clean, latency_args, workdir)
            print("\n".join(rows[-2:]), flush=True)
        if rows:
            print(f"\nFSDD test words (paused: {args.digits}; strings: {args.strings}), pink "
                  f"noise at 20 dB SNR in the files (mic: a room noise played beside), 48 kHz; "
                  f"{platform.machine()}, {os.cpu_count()} cores, load average "
                  f"{os.getloadavg()[0]:.1f}\n")
            print("| source | digits | right | inserted | latency ms median | p95 "
                  "| CPU (one core) |")
            print("|---|---|---|---|---|---|---|")
            print("\n".join(rows))
        if "pauses" in args.parts:
            print()
            print("\n".join(measure_pauses(fsdd, workdir)))
        if "thresholds" in args.parts:
            print()
            print("\n".join(measure_thresholds(fsdd, model_args, workdir)))


if __name__ == "__main__":
    main()
