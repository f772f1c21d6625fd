#!/usr/bin/env bash
# The Raspberry Pi path, proven. 64-bit Raspberry Pi OS (Bookworm) is Debian 12 arm64 with
# Python 3.11: this builds that root filesystem with debootstrap, runs it under qemu-user in
# a chroot, runs the README's Pi guide in it line for line (the ```bash block between
# <!-- pi-guide:start --> and <!-- pi-guide:end -->), then checks the device side there:
# no TensorFlow installed, and every answer (CLI on samples/, every shipped model variant,
# `listen --input` on a sample stream) equal to the x86 answer.
#
#   scripts/pi_check.sh [--fallback] [--rebuild] [--keep]
#
#   --fallback  also: which shipped models tflite-runtime 2.14 (numpy<2) loads, in a second
#               venv in the emulated Pi, and which device wheels exist for 32-bit Pi OS
#   --rebuild   ignore the cached root filesystem
#   --keep      keep the emulated root filesystem (its path is printed) for a look inside
#   --print-guide  print the guide's commands as they will run, and stop
#
# Needs root, apt (installs qemu-user-static binfmt-support debootstrap zstd if missing) and
# the network (Debian mirror, PyPI), also with the cache: the guide's apt and pip lines run.
# Measured on 2 shared cores: from scratch 11 min (6 min of CPU), from the cache 2 min;
# --fallback adds 1.5 min.
# The root filesystem after the guide is cached (outside the repo) as
# $TINYDIGITS_CACHE/pi-rootfs-KEY.tar.zst, KEY = hash of requirements-pi.txt and the guide.
#
# Environment: TINYDIGITS_CACHE (default ~/.cache/tinydigits), X86_PYTHON (the reference
# interpreter, default .venv/bin/python, else python3), PI_MIRROR (default: the Debian
# mirror the host's apt uses), PI_README (default README.md).
#
# In the guide, `sudo CMD` runs CMD (the chroot is root; setuid sudo cannot work under
# qemu-user) and `git clone URL [DIR]` copies the working tree to DIR instead: the checks
# are about this tree, not what is on the remote. On a cached root filesystem the copy
# replaces the previous checkout but keeps its .venv, so pip finds everything installed.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$REPO/scripts/pi
RECIPE=1  # bump when the way the root filesystem is built changes: invalidates the cache
SUITE=bookworm
BASE_PACKAGES=python3,ca-certificates  # what Raspberry Pi OS Lite has; the guide adds the rest
FALLBACK_PACKAGES=("tflite-runtime==2.14.0" "numpy<2" pillow soundfile soxr)
MARK_START='<!-- pi-guide:start -->'
MARK_END='<!-- pi-guide:end -->'

fallback=0 rebuild=0 keep=0 print_guide=0
for arg in "$@"; do
    case $arg in
        --fallback) fallback=1 ;;
        --rebuild) rebuild=1 ;;
        --keep) keep=1 ;;
        --print-guide) print_guide=1 ;;
        -h|--help) sed -n '2,/^set -Eeuo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "pi_check: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

# ---- bookkeeping: steps with times, mounts undone on any exit --------------------------
t0=${EPOCHREALTIME/./}
step_name="" step_start=0 STEP_TIMES=()
now_us() { echo "${EPOCHREALTIME/./}"; }
seconds() { printf '%d.%d' $(($1 / 1000000)) $(($1 % 1000000 / 100000)); }
end_step() {
    [ -n "$step_name" ] || return 0
    local took=$(($(now_us) - step_start))
    STEP_TIMES+=("$(printf '%7s s  %s' "$(seconds $took)" "$step_name")")
    step_name=""
}
step() {
    end_step
    step_name=$1 step_start=$(now_us)
    echo
    echo "== pi_check: $1 ($(seconds $((step_start - t0))) s)"
}
die() { echo "pi_check: error: $*" >&2; exit 1; }

WORK="" ROOT="" MOUNTS=() BINFMT_MOUNTED=0 CHILD="" CACHE_TMP=""
descendants() {  # the process ids under $1, children before their parent's listing ends
    local pid
    for pid in $(ps -o pid= --ppid "$1"); do descendants "$pid"; echo "$pid"; done
}
long() {  # a long command in the background, so that INT / TERM interrupt `wait` at once
    "$@" &
    CHILD=$!
    local rc=0
    wait "$CHILD" || rc=$?
    CHILD=""
    return $rc
}
cleanup() {
    local rc=$? i target
    set +e
    trap - ERR
    if [ -n "$CHILD" ]; then  # interrupted: stop what we started (chroot, dpkg, pip), by id
        # shellcheck disable=SC2046  # one word per process id
        kill -TERM $(descendants "$CHILD") "$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
    fi
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}"
    done
    if [ -n "$WORK" ]; then
        # what debootstrap mounted, if it was interrupted
        awk -v w="$WORK/" 'index($2 "/", w) == 1 { print $2 }' /proc/mounts | sort -r |
            while read -r target; do umount "$target" 2>/dev/null || umount -l "$target"; done
        if awk -v w="$WORK/" 'index($2 "/", w) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
            echo "pi_check: something is still mounted under $WORK: not removing it" >&2
        elif [ $keep = 1 ]; then
            echo "pi_check: kept the emulated Pi: chroot $ROOT /bin/bash"
        else
            rm -rf --one-file-system "$WORK"
        fi
    fi
    if [ -n "$CACHE_TMP" ]; then rm -f "$CACHE_TMP"; fi
    if [ $BINFMT_MOUNTED = 1 ]; then umount /proc/sys/fs/binfmt_misc; fi
    exit $rc
}
trap cleanup EXIT
exec 8>&2  # the console's stderr, for the ERR trap when a command's stderr goes to a log
trap 'echo "pi_check: error: line $LINENO: $BASH_COMMAND (exit $?)" >&8' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the guide: the README's commands, exactly --------------------------------------------
README=${PI_README:-$REPO/README.md}
[ -f "$README" ] || die "$README: no such file (the Pi guide lives there)"
mapfile -t GUIDE < <(awk -v s="$MARK_START" -v e="$MARK_END" '
    index($0, s) { inside = 1; next }
    index($0, e) { exit }
    inside && /^[ \t]*```/ { if (fence) exit; fence = 1; next }
    inside && fence' "$README" |
    awk '{ line = line $0 } /\\$/ { sub(/\\$/, "", line); next } { print line; line = "" }' |
    grep -Ev '^[[:space:]]*(#|$)' || true)
[ ${#GUIDE[@]} -gt 0 ] || die "$README: no \`\`\`bash block between $MARK_START and $MARK_END"
for line in "${GUIDE[@]}"; do
    case $line in '$ '*|'pi$ '*) die "the Pi guide must be pasteable, without prompts: $line" ;; esac
done

if [ $print_guide = 1 ]; then printf '%s\n' "${GUIDE[@]}"; exit 0; fi

# ---- the host: tools, binfmt, reference interpreter ---------------------------------------
step "host tools"
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mount)"
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
[ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
command -v update-binfmts >/dev/null || missing+=(binfmt-support)
command -v zstd >/dev/null || missing+=(zstd)
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "install ${missing[*]}"
    echo "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
        "${missing[@]}" >/dev/null
fi
if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    BINFMT_MOUNTED=1
fi
update-binfmts --enable qemu-aarch64 2>/dev/null || true
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null ||
    die "qemu-aarch64 is not registered with binfmt_misc (update-binfmts --enable qemu-aarch64)"

X86=${X86_PYTHON:-}
if [ -z "$X86" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then X86=$REPO/.venv/bin/python; else X86=python3; fi
fi
x86() { (cd "$REPO" && PYTHONPATH=$REPO OPENBLAS_NUM_THREADS=1 "$X86" "$@"); }
x86 -c 'import ai_edge_litert, tinydigits' 2>/dev/null ||
    die "$X86 cannot import ai_edge_litert and tinydigits: set X86_PYTHON to the project's venv"

mirror=${PI_MIRROR:-}
if [ -z "$mirror" ]; then  # the first Debian $SUITE source the host's apt uses
    mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v suite="$SUITE" '
        BEGIN { RS = ""; FS = "\n" }
        {   types = uris = suites = ""; enabled = 1
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^Types:/) types = $i
                else if ($i ~ /^URIs:/) uris = $i
                else if ($i ~ /^Suites:/) suites = $i
                else if ($i ~ /^Enabled:[ \t]*no/) enabled = 0
            }
            if (enabled && types ~ /[ \t]deb([ \t]|$)/ && suites ~ ("[ \t]" suite "([ \t]|$)")) {
                sub(/^URIs:[ \t]*/, "", uris); split(uris, u, /[ \t]+/); print u[1]; exit
            }
        }')
fi
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v suite="$SUITE" '
        $1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                      if ($(i + 1) == suite) { print $i; exit } }')
fi
mirror=${mirror:-http://deb.debian.org/debian}
ca_bundle=""
for f in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$f" ] && [ -f "$f" ]; then ca_bundle=$f; break; fi
done
echo "mirror $mirror; x86 reference $X86; CA bundle ${ca_bundle:-none}"

CACHE=${TINYDIGITS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tinydigits}
mkdir -p "$CACHE"
exec 9>"$CACHE/pi-check.lock"
flock -w 1800 9 || die "another pi_check holds $CACHE/pi-check.lock"
key=$( { cat "$REPO/requirements-pi.txt"; printf '%s\n' "${GUIDE[@]}"; \
         echo "$RECIPE $SUITE $BASE_PACKAGES"; } | sha256sum | cut -c1-16)
CACHED=$CACHE/pi-rootfs-$key.tar.zst
LOGS=$CACHE/pi-check-logs
rm -rf "$LOGS" && mkdir -p "$LOGS"
WORK=$(mktemp -d /var/tmp/pi_check.XXXXXX)
ROOT=$WORK/root
mkdir "$ROOT"

# ---- the x86 answers, what the Pi must reproduce -----------------------------------------
step "x86 reference answers"
mapfile -t SAMPLES < <(cd "$REPO" && find samples -type f ! -name 'stream*' 2>/dev/null |
    grep -iE '\.(png|jpe?g|gif|bmp|webp|tiff?|pgm|ppm|wav|wave|flac|ogg|oga|aiff?|au)$' | sort)
mapfile -t STREAMS < <(cd "$REPO" && ls samples/audio/stream*.wav 2>/dev/null || true)
[ ${#SAMPLES[@]} -gt 0 ] || die "no sample images or WAVs under samples/"
ls "$REPO"/tinydigits/models/*.tflite >/dev/null 2>&1 || die "no models/*.tflite to check"
x86_cli_rc=0
x86 -m tinydigits.cli classify --json "${SAMPLES[@]}" >"$LOGS/x86-cli.jsonl" 2>"$LOGS/x86-cli.err" ||
    x86_cli_rc=$?
x86 scripts/pi/probe.py answers tinydigits/models "${SAMPLES[@]}" >"$LOGS/x86-variants.jsonl"
listen=0
if x86 -m tinydigits.cli listen --help >/dev/null 2>&1; then listen=1; fi
for s in "${STREAMS[@]}"; do
    [ $listen = 1 ] || break
    x86 -m tinydigits.cli listen --input "$s" >"$LOGS/x86-listen-${s##*/}.txt" 2>&1 || true
done
echo "${#SAMPLES[@]} sample files (classify exit $x86_cli_rc), $(ls "$REPO"/tinydigits/models/*.tflite | wc -l)" \
     "models, $([ $listen = 1 ] && echo "${#STREAMS[@]} stream(s) for listen" || echo "no listen command")"

# ---- the root filesystem: cached, or debootstrap ------------------------------------------
built=0
if [ -f "$CACHED" ] && [ $rebuild = 0 ]; then
    step "root filesystem from cache ($(du -h "$CACHED" | cut -f1) $CACHED)"
    long tar -x -C "$ROOT" --numeric-owner -p -I zstd -f "$CACHED"
else
    step "debootstrap Debian 12 arm64 (${mirror})"
    if ! long debootstrap --arch=arm64 --variant=minbase --include="$BASE_PACKAGES" \
            "$SUITE" "$ROOT" "$mirror" >"$LOGS/debootstrap.log" 2>&1; then
        tail -20 "$LOGS/debootstrap.log" >&2
        die "debootstrap failed (log: $LOGS/debootstrap.log)"
    fi
    built=1
fi

# ---- into the emulated Pi ----------------------------------------------------------------
step "chroot set-up"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
if [ -n "$ca_bundle" ]; then  # TLS may be intercepted: pip must trust what the host trusts
    mkdir -p "$ROOT/etc/ssl" && cp "$ca_bundle" "$ROOT/etc/ssl/pi-check-ca.pem"
fi
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"  # start no services in a chroot
chmod +x "$ROOT/usr/sbin/policy-rc.d"
rm -rf "$ROOT/opt/pi-check"
mkdir -p "$ROOT/opt/pi-check/src"
tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./venv --exclude=./data \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache --exclude=.ruff_cache \
    --exclude=./build -cf - . | tar -C "$ROOT/opt/pi-check/src" -xf -
cp "$HERE/probe.py" "$ROOT/opt/pi-check/probe.py"
cat >"$ROOT/opt/pi-check/shims.sh" <<'EOF'
# Sourced before the guide runs: the chroot is already root, and the clone is a copy.
sudo() { while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done; "$@"; }
git() {
    if [ "${1:-}" != clone ]; then
        echo "pi_check: only 'git clone' is emulated in the guide" >&2; return 2
    fi
    shift
    local positional=()
    while [ $# -gt 0 ]; do
        case $1 in
            -b|--branch|--depth|-o|--origin|-c|--config|--reference|-j|--jobs) shift 2 ;;
            -*) shift ;;
            *) positional+=("$1"); shift ;;
        esac
    done
    local url=${positional[0]:-} dir=${positional[1]:-}
    [ -n "$url" ] || { echo "git clone: no repository" >&2; return 2; }
    if [ -z "$dir" ]; then dir=${url%/}; dir=${dir##*/}; dir=${dir%.git}; fi
    echo "(pi_check: git clone $url -> a copy of the working tree in $dir)"
    if [ -d "$dir" ]; then  # cached root filesystem: a fresh checkout, the old venv kept
        find "$dir" -mindepth 1 -maxdepth 1 ! -name .venv ! -name venv -exec rm -rf {} +
    fi
    mkdir -p "$dir" && cp -a /opt/pi-check/src/. "$dir/"
}
__pi_line() {
    __pi_text=$1 __pi_t=${EPOCHREALTIME/./} __pi_n=$((${__pi_n:-0} + 1))
    printf 'pi$ %s\n' "$1"
}
__pi_done() {
    local rc=$1 us=$((${EPOCHREALTIME/./} - __pi_t)) out=/opt/pi-check/guide.$__pi_n.out
    local n; n=$(wc -l <"$out")
    if [ "$n" -le 25 ]; then sed 's/^/    /' "$out"
    else
        sed -n '1,3s/^/    /p' "$out"; echo "    ... ($n lines)"; tail -n 8 "$out" | sed 's/^/    /'
    fi
    printf '    [%d.%d s]\n' $((us / 1000000)) $((us % 1000000 / 100000))
    printf '%d.%d\t%s\n' $((us / 1000000)) $((us % 1000000 / 100000)) "$__pi_text" \
        >>/opt/pi-check/guide-times.tsv
    if [ "$rc" != 0 ]; then echo "pi_check: this guide line failed (exit $rc)" >&2; exit "$rc"; fi
}
EOF
{
    echo 'source /opt/pi-check/shims.sh'
    echo 'set -o pipefail'
    echo 'cd "$HOME"'
    for line in "${GUIDE[@]}"; do
        printf '__pi_line %q\n{\n%s\n} >/opt/pi-check/guide.$__pi_n.out 2>&1 </dev/null\n__pi_done $?\n' \
            "$line" "$line"
    done
    echo 'printf "%s\n%s\n" "$PWD" "${VIRTUAL_ENV:-}" >/opt/pi-check/state'
} >"$ROOT/opt/pi-check/guide.sh"

mount -t proc proc "$ROOT/proc" && MOUNTS+=("$ROOT/proc")
# No /sys: with it, XNNPACK sizes its kernels from the host's CPUs and, under qemu-user,
# every int8 variant gives wrong answers (measured: 36 of 100, all "4" or "none"); others
# measured a segfault in cpuinfo's init. And a Pi 4's /proc/cpuinfo over the host's x86 one.
mount --bind "$HERE/cpuinfo-pi4" "$ROOT/proc/cpuinfo" && MOUNTS+=("$ROOT/proc/cpuinfo")

CHROOT_ENV=(HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
    PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-60}")
if [ -n "$ca_bundle" ]; then CHROOT_ENV+=(PIP_CERT=/etc/ssl/pi-check-ca.pem); fi
case ${PIP_INDEX_URL:-} in http*) CHROOT_ENV+=(PIP_INDEX_URL="$PIP_INDEX_URL") ;; esac
pi_root() { chroot "$ROOT" /usr/bin/env -i "${CHROOT_ENV[@]}" "$@"; }
echo "$(pi_root uname -m), $(pi_root python3 --version), Debian $(cat "$ROOT/etc/debian_version")"

step "the README's Pi guide, line by line (${#GUIDE[@]} lines)"
guide_rc=0
long pi_root /bin/bash /opt/pi-check/guide.sh > >(tee "$LOGS/guide.log") 2>&1 || guide_rc=$?
cp "$ROOT"/opt/pi-check/guide.*.out "$LOGS/" 2>/dev/null || true  # each line's whole output
if [ "$guide_rc" != 0 ] || [ ! -f "$ROOT/opt/pi-check/state" ]; then
    tail -n 30 "$(ls -t "$ROOT"/opt/pi-check/guide.*.out | head -1)" >&2 || true
    die "the Pi guide failed in the emulated Pi (log: $LOGS/guide.log)"
fi
{ read -r PI_CWD; read -r PI_VENV; } <"$ROOT/opt/pi-check/state"
[ -n "$PI_VENV" ] || die "the Pi guide must end inside an activated virtual environment"
echo "guide ended in $PI_CWD with $PI_VENV active"
size_of() { { du -sxh "$@" 2>/dev/null || echo "none"; } | tail -1 | cut -f1; }
rootfs_size=$(size_of --exclude="$ROOT/opt/pi-check" "$ROOT")
venv_size=$(size_of "$ROOT$PI_VENV")
size_detail="pip cache $(size_of "$ROOT/root/.cache/pip"), apt lists and caches"
size_detail+=" $(size_of -c "$ROOT/var/lib/apt/lists" "$ROOT/var/cache/apt"), /usr $(size_of "$ROOT/usr")"
pi() {  # a command in the emulated Pi, where the guide left the user
    pi_root /bin/bash -c 'cd "$1" && export VIRTUAL_ENV=$2 PATH=$2/bin:$PATH && shift 2 && "$@"' \
        pi "$PI_CWD" "$PI_VENV" "$@"
}

if [ $built = 1 ]; then
    step "cache the root filesystem"
    rm -f "$ROOT"/var/cache/apt/archives/*.deb
    CACHE_TMP=$CACHED.tmp.$$  # written aside, renamed into place: never a half cache
    long tar -C "$ROOT" --numeric-owner --one-file-system --exclude='./proc/*' \
        --exclude='./sys/*' --exclude=./opt/pi-check --exclude='./tmp/*' \
        -I 'zstd -q -T0 -3' -cf "$CACHE_TMP" .
    mv "$CACHE_TMP" "$CACHED"
    CACHE_TMP=""
    find "$CACHE" -maxdepth 1 -name 'pi-rootfs-*.tar.zst' ! -name "${CACHED##*/}" -delete
    echo "$CACHED: $(du -h "$CACHED" | cut -f1)"
fi

# ---- the checks ---------------------------------------------------------------------------
failures=()
step "no TensorFlow on the Pi"
pi python /opt/pi-check/probe.py no-tensorflow | tee "$LOGS/pi-installed.txt" ||
    failures+=("TensorFlow or Keras is installed on the Pi")

step "classify ${#SAMPLES[@]} sample files on the Pi (default models, CLI)"
pi_cli_rc=0
pi tinydigits classify --json "${SAMPLES[@]}" >"$LOGS/pi-cli.jsonl" 2>"$LOGS/pi-cli.err" ||
    pi_cli_rc=$?
echo "exit status: x86 $x86_cli_rc, pi $pi_cli_rc"
[ "$pi_cli_rc" = "$x86_cli_rc" ] || failures+=("classify exit status $pi_cli_rc, x86 $x86_cli_rc")
python3 "$HERE/probe.py" compare "$LOGS/x86-cli.jsonl" "$LOGS/pi-cli.jsonl" ||
    failures+=("classify answers differ from x86")

step "every shipped model variant on every sample, on the Pi"
pi python /opt/pi-check/probe.py answers tinydigits/models "${SAMPLES[@]}" >"$LOGS/pi-variants.jsonl"
python3 "$HERE/probe.py" compare "$LOGS/x86-variants.jsonl" "$LOGS/pi-variants.jsonl" ||
    failures+=("model variant answers differ from x86")
grep -q '"runtime": "ai-edge-litert"' "$LOGS/pi-variants.jsonl" ||
    failures+=("the Pi did not use ai-edge-litert")

step "listen --input on the sample stream"
if [ $listen = 0 ]; then
    echo "skipped: tinydigits has no listen command yet"
elif [ ${#STREAMS[@]} = 0 ]; then
    echo "skipped: no samples/audio/stream*.wav"
else
    for s in "${STREAMS[@]}"; do
        pi tinydigits listen --input "$s" >"$LOGS/pi-listen-${s##*/}.txt" 2>&1 || true
        echo "$s:"; sed 's/^/    /' "$LOGS/pi-listen-${s##*/}.txt"
        python3 "$HERE/probe.py" compare-text "$LOGS/x86-listen-${s##*/}.txt" \
            "$LOGS/pi-listen-${s##*/}.txt" || failures+=("listen --input $s differs from x86")
    done
fi

step "device tests (pytest -m device)"
if grep -qE '^[[:space:]]*"device:' "$REPO/pyproject.toml"; then
    pi pip install -q pytest >"$LOGS/pi-pytest-install.log" 2>&1 ||
        failures+=("pip install pytest failed on the Pi")
    pi python -m pytest -m device -q -p no:cacheprovider 2>&1 | tee "$LOGS/pi-pytest.log" | tail -15
    [ "${PIPESTATUS[0]}" = 0 ] || failures+=("device tests failed on the Pi")
else
    echo "skipped: pyproject.toml declares no 'device' pytest marker"
fi

step "latency and sizes (emulated: qemu-user on x86, NOT a Raspberry Pi figure)"
echo "x86 ($(uname -m), native):"
x86 scripts/pi/probe.py latency tinydigits/models --seconds 1 | sed 's/^/    /'
echo "emulated arm64 (qemu-user):"
pi python /opt/pi-check/probe.py latency tinydigits/models --seconds 1 | tee "$LOGS/pi-latency.txt" | sed 's/^/    /'
echo "root filesystem $rootfs_size (Debian minbase + the guide), venv $venv_size ($PI_VENV);"
echo "of the root filesystem: $size_detail"
echo "guide line times (emulated):"
sed 's/^/    /; s/\t/ s  /' "$ROOT/opt/pi-check/guide-times.tsv"

# ---- optional: the fallback runtime, and 32-bit Pi OS ------------------------------------
if [ $fallback = 1 ]; then
    step "fallback runtime: tflite-runtime 2.14 + numpy<2 in a second venv on the Pi"
    fb=/opt/pi-check/fallback
    pi_root python3 -m venv "$fb"
    if long pi_root "$fb/bin/pip" install -q "${FALLBACK_PACKAGES[@]}" \
            >"$LOGS/fallback-pip.log" 2>&1; then
        pi_root "$fb/bin/pip" list --format=freeze >"$LOGS/fallback-pip-list.txt"
        grep -iE '^(numpy|tflite-runtime)==' "$LOGS/fallback-pip-list.txt" | tr '\n' ' ' || true
        echo
        fb_run() {  # the fallback venv, with the checkout importable
            pi_root /bin/bash -c 'cd "$1" && shift && PYTHONPATH=$PWD "$@"' pi "$PI_CWD" "$@"
        }
        fb_run "$fb/bin/python" /opt/pi-check/probe.py answers tinydigits/models "${SAMPLES[@]}" \
            >"$LOGS/fallback-variants.jsonl" 2>"$LOGS/fallback-variants.err" ||
            { echo "the probe stopped:"; tail -3 "$LOGS/fallback-variants.err"; }
        python3 "$HERE/probe.py" fallback-table "$LOGS/x86-variants.jsonl" \
            "$LOGS/fallback-variants.jsonl" ||
            failures+=("fallback runtime: a model crashes, or is refused without naming the package")
        rc=0
        fb_run "$fb/bin/python" -m tinydigits.cli classify "${SAMPLES[@]}" \
            >"$LOGS/fallback-cli.out" 2>"$LOGS/fallback-cli.err" || rc=$?
        echo "tinydigits classify (default models) under tflite-runtime: exit $rc," \
             "$(wc -l <"$LOGS/fallback-cli.out") of ${#SAMPLES[@]} files classified"
        grep '^tinydigits' "$LOGS/fallback-cli.err" | sort | uniq -c | sed 's/^/    /' || true
        if grep -q '^Traceback' "$LOGS/fallback-cli.err"; then
            echo "    a traceback: $(tail -1 "$LOGS/fallback-cli.err")"
            failures+=("fallback runtime: tinydigits classify prints a traceback")
        fi
    else
        tail -5 "$LOGS/fallback-pip.log"
        failures+=("could not install ${FALLBACK_PACKAGES[*]} on the Pi")
    fi

    step "32-bit Raspberry Pi OS (armv7l, cp311): which device wheels exist (pip download)"
    platforms=(--platform linux_armv7l --platform manylinux2014_armv7l)
    for v in 17 26 27 28 31 34 35 36; do platforms+=(--platform "manylinux_2_${v}_armv7l"); done
    indexes=(https://pypi.org/simple)
    if curl -fsS -m 10 -o /dev/null https://www.piwheels.org/simple/numpy/ 2>/dev/null; then
        indexes+=(https://www.piwheels.org/simple)
    else
        echo "(piwheels.org, which 32-bit Pi OS uses by default, is not reachable from here)"
    fi
    mapfile -t specs < <(grep -Ev '^[[:space:]]*(#|-|$)' "$REPO/requirements-pi.txt" | sed 's/[[:space:]]*#.*//')
    specs+=("tflite-runtime==2.14.0" "numpy<2")
    for index in "${indexes[@]}"; do
        for spec in "${specs[@]}"; do
            dl=$(mktemp -d "$WORK/dl.XXXXXX")
            if PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS='' "$X86" -m pip download -q --no-deps \
                    --only-binary=:all: "${platforms[@]}" --python-version 3.11 \
                    --implementation cp --abi cp311 --abi abi3 --abi none \
                    ${ca_bundle:+--cert "$ca_bundle"} --index-url "$index" -d "$dl" "$spec" \
                    >/dev/null 2>&1; then
                printf '  %-24s %-32s wheel: %s\n' "$spec" "$index" "$(ls "$dl")"
            else
                printf '  %-24s %-32s no armv7l wheel\n' "$spec" "$index"
            fi
        done
    done
fi

# ---- summary ------------------------------------------------------------------------------
end_step
echo
echo "== pi_check: step times"
printf '%s\n' "${STEP_TIMES[@]}"
printf '%7s s  total\n' "$(seconds $(($(now_us) - t0)))"
# CPU time of everything this ran (emulated dpkg, pip, python): on a busy machine the wall
# time above is this stretched by the other jobs sharing the cores.
read -r -a stat </proc/$$/stat  # utime stime cutime cstime are fields 14-17, in ticks
ticks=$(getconf CLK_TCK)
echo "   CPU time used: $(((stat[13] + stat[15]) / ticks)) s user," \
     "$(((stat[14] + stat[16]) / ticks)) s system"
n_answers=$(grep -c '"digit"\|"error"' "$LOGS/pi-variants.jsonl" || true)
if [ ${#failures[@]} -gt 0 ]; then
    printf 'pi_check: FAILED: %s\n' "${failures[@]}" >&2
    echo "pi_check: logs in $LOGS" >&2
    exit 1
fi
echo "pi_check: ${#SAMPLES[@]} files, answers equal to x86 (CLI, and $n_answers answers of" \
     "$(ls "$REPO"/tinydigits/models/*.tflite | wc -l) model variants); no TensorFlow on the Pi"
