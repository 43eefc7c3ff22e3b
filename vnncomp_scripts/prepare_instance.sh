#!/usr/bin/env bash
# VNN-COMP: prepare one instance.
#   prepare_instance.sh v1 CATEGORY ONNX VNNLIB
# Nothing is cached between instances; this checks the arguments and the files, and stops
# leftover verifier processes of this user (started by run_instance.sh, by their pid file).
set -uo pipefail
if [ "$#" -ne 4 ] || [ "$1" != "v1" ]; then
    echo "prepare_instance.sh: usage: prepare_instance.sh v1 CATEGORY ONNX VNNLIB" >&2
    exit 1
fi
for file in "$3" "$4"; do
    if [ ! -f "$file" ]; then
        echo "prepare_instance.sh: $file: no such file" >&2
        exit 1
    fi
done
PIDFILE="${TMPDIR:-/tmp}/nobound_vnncomp_${USER:-$(id -u)}.pid"
if [ -f "$PIDFILE" ]; then
    pid="$(cat "$PIDFILE")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
fi
exit 0
