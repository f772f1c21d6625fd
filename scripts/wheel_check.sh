#!/usr/bin/env bash
# What `pip install .`, `pip install git+URL` and a wheel give a user, not the checkout:
# build the wheel, install it (no -e) with the device's pins into a fresh virtual
# environment, and from another folder list the models and classify every sample.
# Each sample's name starts with its digit. Run by .ci/run; ~1 min with a warm pip cache.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
die() { echo "wheel check: $*" >&2; exit 1; }

"$PYTHON" -m pip wheel --no-deps -q -w "$work/dist" . >"$work/build.log" 2>&1 \
    || { cat "$work/build.log" >&2; die "the wheel did not build"; }
wheel=$(ls "$work"/dist/tinydigits-*.whl) || die "no wheel was built"
"$PYTHON" -m zipfile -l "$wheel" >"$work/contents.txt"
grep -q "tinydigits/models/manifest.json" "$work/contents.txt" || die "the wheel has no manifest"
grep -q "\.keras" "$work/contents.txt" && die "the wheel carries .keras training files"
echo "built $(basename "$wheel"): $(grep -c '\.tflite' "$work/contents.txt") model files," \
     "$(( $(stat -c %s "$wheel") / 1024 )) KB"

"$PYTHON" -m venv "$work/venv"
grep -v '^-e' requirements-pi.txt >"$work/pins.txt"
"$work/venv/bin/pip" install -q -r "$work/pins.txt" "$wheel" >"$work/install.log" 2>&1 \
    || { cat "$work/install.log" >&2; die "the wheel did not install"; }
"$work/venv/bin/python" -c "import tensorflow" 2>/dev/null && die "tensorflow is installed"

mkdir "$work/elsewhere" && cd "$work/elsewhere"  # nothing of the checkout on sys.path
"$work/venv/bin/tinydigits" models || die "tinydigits models: the installed files differ"
samples=("$repo"/samples/images/* "$repo"/samples/audio/[0-9]*.wav)
"$work/venv/bin/tinydigits" classify "${samples[@]}" >"$work/answers.txt" \
    || die "classify failed: $(cat "$work/answers.txt")"
wrong=0
while read -r file digit _; do
    expected=$(basename "$file" | grep -o '^[0-9]*')
    [ "$digit" = "$expected" ] || { echo "  $file: $digit, expected $expected" >&2; wrong=1; }
done <"$work/answers.txt"
[ "$wrong" = 0 ] || die "wrong answers from the installed wheel"
echo "wheel check: ${#samples[@]} samples classified right from $(pwd) by an installed wheel"
