#!/usr/bin/env bash
# VNN-COMP: install nobound (CPU, NumPy) with its ONNX extra, from this repository.
#   install_tool.sh v1
# $NOBOUND_PYTHON picks the interpreter (default python3). When nobound already imports
# with ONNX support, nothing is installed.
set -euo pipefail
if [ "${1:-}" != "v1" ]; then
    echo "install_tool.sh: expected version string v1, got '${1:-}'" >&2
    exit 1
fi
PYTHON="${NOBOUND_PYTHON:-python3}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if "$PYTHON" -c "import nobound, onnx" 2>/dev/null; then
    echo "install_tool.sh: nobound and onnx already importable with $PYTHON"
    exit 0
fi
"$PYTHON" -m pip install --quiet -e "$REPO[onnx]"
"$PYTHON" -c "import nobound, onnx"
