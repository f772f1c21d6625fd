#!/usr/bin/env bash
# A virtual microphone for trying `tinydigits listen` without one (Debian, Ubuntu, Pi OS).
#
#   sudo apt install pulseaudio pulseaudio-utils libportaudio2 libasound2-plugins
#   eval "$(scripts/virtual_mic.sh start)"   # a private PulseAudio; exports PULSE_SERVER
#   tinydigits listen &                       # PortAudio -> ALSA "pulse" -> the virtual mic
#   scripts/virtual_mic.sh play digits.wav    # "say" a file into it
#   scripts/virtual_mic.sh stop
#
# The server's null sink "virt" is the default output and its monitor the default input,
# so whatever is played is heard. Everything lives in one temporary directory
# ($TINYDIGITS_VMIC): the user's own PulseAudio, cookie and ~/.asoundrc are not touched.
# tests/audio_fixtures.py (virtual_microphone) does the same for the tests.
set -euo pipefail

start() {
    local dir
    dir=$(mktemp -d /tmp/tdvm-XXXXXX)
    mkdir -p "$dir/home/.config/pulse"
    echo "autospawn = no" > "$dir/home/.config/pulse/client.conf"
    export HOME="$dir/home" XDG_RUNTIME_DIR="$dir" PULSE_SERVER="unix:$dir/native"
    pulseaudio -n --daemonize=no --system=false --exit-idle-time=-1 --use-pid-file=no \
        --disallow-exit --log-target=stderr \
        -L "module-native-protocol-unix socket=$dir/native auth-anonymous=1" \
        -L "module-null-sink sink_name=virt rate=48000" -L module-always-sink \
        </dev/null >"$dir/pulseaudio.log" 2>&1 &
    echo $! > "$dir/pulseaudio.pid"
    for _ in $(seq 100); do
        pactl info >/dev/null 2>&1 && break
        sleep 0.1
    done
    if ! pactl info >/dev/null 2>&1; then
        echo "pulseaudio did not start; see $dir/pulseaudio.log" >&2
        exit 1
    fi
    pactl set-default-sink virt
    pactl set-default-source virt.monitor
    # A low-latency reader kept on the monitor: without it each new recording client
    # loses its first 0.4-2 s while PulseAudio resizes the monitor's buffers.
    pacat -r --latency-msec=10 --device=virt.monitor --raw /dev/null </dev/null \
        >/dev/null 2>>"$dir/pulseaudio.log" &
    echo $! > "$dir/pacat.pid"
    sleep 2.5
    echo "export TINYDIGITS_VMIC=$dir PULSE_SERVER=unix:$dir/native"
}

stop() {
    local dir=${TINYDIGITS_VMIC:?run: eval \"\$(scripts/virtual_mic.sh start)\" first}
    for name in pacat pulseaudio; do
        if [[ -f "$dir/$name.pid" ]]; then
            kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
        fi
    done
    sleep 0.5
    rm -rf "$dir"
    echo "unset TINYDIGITS_VMIC PULSE_SERVER"
}

play() {
    : "${TINYDIGITS_VMIC:?run: eval \"\$(scripts/virtual_mic.sh start)\" first}"
    paplay --device=virt "$1"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    play) play "${2:?usage: $0 play FILE.wav}" ;;
    *) echo "usage: $0 start | play FILE.wav | stop" >&2; exit 2 ;;
esac
