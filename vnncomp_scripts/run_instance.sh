#!/usr/bin/env bash
# VNN-COMP: verify one instance and write the result file.
#   run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT
# The verdict (sat + counterexample / unsat / timeout / unknown / error) goes to
# RESULTS_FILE; the timeout counts from the start of the verifier process.
# $NOBOUND_PYTHON picks the interpreter; $NOBOUND_VERIFY_ARGS adds verify flags.
set -uo pipefail
if [ "$#" -ne 6 ] || [ "$1" != "v1" ]; then
    echo "run_instance.sh: usage: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS TIMEOUT" >&2
    exit 1
fi
PYTHON="${NOBOUND_PYTHON:-python3}"
PIDFILE="${TMPDIR:-/tmp}/nobound_vnncomp_${USER:-$(id -u)}.pid"
echo $$ > "$PIDFILE"
# shellcheck disable=SC2086  # the extra flags are meant to split
exec "$PYTHON" -m nobound verify "$3" "$4" --timeout "$6" --results-file "$5" \
    ${NOBOUND_VERIFY_ARGS:-}
