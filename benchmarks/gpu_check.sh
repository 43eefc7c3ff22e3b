#!/usr/bin/env bash
# The one prepared GPU check: run it on the first machine with a GPU, fix what it finds,
# run it again.
#
#     NOBOUND_GPU_OUT=/path/to/results bash benchmarks/gpu_check.sh
#
# From the repository alone (the embedded data; nothing from ../shared), within 8 minutes:
#   1. versions (Python, NumPy, CuPy, CUDA runtime and driver, the GPU), into versions.txt;
#      stops at once, with CuPy's own error, if CuPy cannot allocate, compute and
#      synchronise on the GPU;
#   2. smoke: every training method x relaxation trains two steps on the GPU (smoke.json);
#   3. the CuPy test suite with NOBOUND_REQUIRE_GPU=1 (a missing GPU fails, not skips):
#      every xp-parametrised test on CuPy and the end-to-end device tests (tests.log);
#   4. the GPU rows of the benchmarks: fused vs member loop at batch 32 and 512
#      (engine_population.py), DeepPoly on cnn3/cnn5 at batch 128 (bounds_gpu.json), a
#      DeepPoly-PGPE step of cnn3_tiny with 256 members (pgpe_gpu.json).
# Every part has its own time limit; one that fails or runs out is reported and the
# others still run. Everything, logs included, goes to $NOBOUND_GPU_OUT; the exit status
# is 0 only if every part passed.
set -uo pipefail

OUT="${NOBOUND_GPU_OUT:?set NOBOUND_GPU_OUT to the folder for the results}"
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
export NOBOUND_DATA="$OUT/no-external-data"  # benchmarks fall back to synthetic inputs
export PYTHONUNBUFFERED=1
export NOBOUND_REQUIRE_GPU=1
PYTHON="${PYTHON:-python}"
FAILED=()

log() { echo "[gpu_check $(date +%H:%M:%S) +${SECONDS}s] $*" | tee -a "$OUT/gpu_check.log"; }

part() {  # part NAME SECONDS COMMAND...: run with a time limit, log to NAME.log
    local name=$1 limit=$2
    shift 2
    log "$name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local status=$?
    if [ "$status" -eq 0 ]; then
        log "$name: ok"
    else
        [ "$status" -eq 124 ] && log "$name: TIMED OUT" || log "$name: FAILED (exit $status)"
        tail -n 20 "$OUT/$name.log" | tee -a "$OUT/gpu_check.log"
        FAILED+=("$name")
    fi
}

log "results in $OUT"
if ! "$PYTHON" - > "$OUT/versions.txt" 2>&1 <<'EOF'
import platform, subprocess, sys
import numpy
print("python", platform.python_version(), "numpy", numpy.__version__)
try:
    print("nobound", subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip())
except OSError:
    pass
try:
    import cupy
except Exception as error:  # noqa: BLE001 - any failure to import is fatal here
    sys.exit(f"CuPy cannot run: import cupy failed: {type(error).__name__}: {error}")
try:
    runtime = cupy.cuda.runtime
    device = cupy.cuda.Device()
    name = runtime.getDeviceProperties(device.id)["name"].decode()
    x = cupy.arange(10, dtype=cupy.float64)
    total = float((x * x).sum())
    device.synchronize()
    if total != 285.0:
        sys.exit(f"CuPy cannot run: a sum of squares gave {total}, not 285")
    free, whole = device.mem_info
    print("cupy", cupy.__version__, "cuda runtime", runtime.runtimeGetVersion(),
          "driver", runtime.driverGetVersion())
    print("gpu", name, f"{whole / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free")
except Exception as error:  # noqa: BLE001
    sys.exit(f"CuPy cannot run on the GPU: {type(error).__name__}: {error}")
EOF
then
    cat "$OUT/versions.txt" >&2
    log "stopped: CuPy cannot run (see versions.txt)"
    exit 1
fi
cat "$OUT/versions.txt" | tee -a "$OUT/gpu_check.log"

part smoke 120 "$PYTHON" benchmarks/gpu_rows.py smoke --device cuda --out "$OUT/smoke.json"
part tests 180 "$PYTHON" -m pytest -q -x -p no:cacheprovider -m "not slow" \
    -k "cupy or cuda" tests
part population 90 bash -c "'$PYTHON' benchmarks/engine_population.py --device cuda \
    --batches 32 512 --rounds 2 && cp benchmarks/results/engine_population_cuda.json '$OUT/'"
part bounds 60 "$PYTHON" benchmarks/gpu_rows.py bounds --device cuda --archs cnn3 cnn5 \
    --batch 128 --out "$OUT/bounds_gpu.json"
part pgpe 60 "$PYTHON" benchmarks/gpu_rows.py pgpe --device cuda --population 256 \
    --out "$OUT/pgpe_gpu.json"

if [ "${#FAILED[@]}" -gt 0 ]; then
    log "FAILED: ${FAILED[*]} (logs in $OUT)"
    exit 1
fi
log "all parts passed in ${SECONDS}s"
