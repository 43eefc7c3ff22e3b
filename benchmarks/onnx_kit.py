"""The ONNX import and the VNN-COMP kit on the real benchmark files of ../shared/vnncomp.

    python benchmarks/onnx_kit.py import            # every network: loads? matches its graph?
    python benchmarks/onnx_kit.py run [CATEGORY…]   # a sample of instances per category

``import`` imports every network (float64) and checks it against ``onnx.reference`` on
random inputs (:func:`nobound.io.onnx_check.check_import`), recording the largest
difference as a fraction of the tolerance. ``run`` runs ``nobound vnncomp`` on every
``STEP``-th instance of a category with the CSV's timeouts × ``SCALE`` (CPU is scarce:
a sample at a fraction of the competition's timeouts) and compares with the published
consensus. Results: benchmarks/results/onnx_kit_import.json, onnx_kit_runs.json, and the
per-category ledgers under runs/onnx_kit/ (outside the repository's results).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VNNCOMP = ROOT.parent / "shared" / "vnncomp"
RESULTS = ROOT / "benchmarks" / "results"
# category: (instances CSV, select slice, timeout scale)
CATEGORIES = {
    "2022/acasxu": ("instances.csv", "0::31", 0.1),
    "2022/oval21": ("instances.csv", "0::6", 0.05),
    "2021/eran": ("eran_instances.csv", "0::12", 0.05),
    "2021/verivital": ("verivital_instances.csv", "0::10", 0.05),
    "2021/marabou-cifar10": ("marabou-cifar10_instances.csv", "0::12", 0.05),
}


def networks(category: str) -> list[Path]:
    folder = VNNCOMP / category
    return sorted({p for pattern in ("*.onnx", "*.onnx.gz", "*/*.onnx", "*/*.onnx.gz")
                   for p in folder.glob(pattern)})


def import_all() -> dict:
    import numpy as np

    from nobound.io.onnx_check import check_import
    from nobound.io.onnx_import import import_onnx

    report = {}
    for category in CATEGORIES:
        rows = []
        for path in networks(category):
            start = time.perf_counter()
            try:
                network = import_onnx(path, dtype=np.float64, check=False)
                worst = check_import(network, count=3)
                rows.append({"network": path.name, "loaded": True, "matched": True,
                             "worst_over_tolerance": round(float(worst), 5),
                             "layers": [type(a).__name__ for a in network.model.layers],
                             "seconds": round(time.perf_counter() - start, 2)})
            except Exception as error:  # noqa: BLE001 - the reason is the measurement
                rows.append({"network": path.name, "loaded": False, "matched": False,
                             "error": str(error).splitlines()[0]})
        report[category] = {"networks": len(rows),
                            "loaded_and_matched": sum(r["matched"] for r in rows),
                            "rows": rows}
        print(f"{category}: {report[category]['loaded_and_matched']}/{len(rows)} load and "
              f"match", flush=True)
    return report


def run_sample(category: str, out_root: Path) -> dict:
    csv_name, selection, scale = CATEGORIES[category]
    folder = VNNCOMP / category
    out = out_root / category.replace("/", "_")
    command = [sys.executable, "-m", "nobound", "vnncomp", str(folder / csv_name), "--out",
               str(out), "--timeout-scale", str(scale), "--select", selection,
               "--consensus", str(folder / "results.csv")]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    print(completed.stdout, flush=True)
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    verdicts: dict[str, int] = {}
    for row in rows:
        verdicts[row["verdict"]] = verdicts.get(row["verdict"], 0) + 1
    return {"selection": selection, "timeout_scale": scale, "instances": len(rows),
            "verdicts": verdicts,
            "agree": sum(r["agreement"] == "agree" for r in rows),
            "contradictions": [r for r in rows if r["agreement"] == "CONTRADICTION"],
            "wall_seconds": round(time.perf_counter() - start, 1), "exit": completed.returncode,
            "rows": rows}


def main(argv: list[str]) -> int:
    if not VNNCOMP.is_dir():
        print(f"{VNNCOMP} is not on this machine", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    if argv[:1] == ["import"]:
        report = import_all()
        (RESULTS / "onnx_kit_import.json").write_text(json.dumps(report, indent=1) + "\n")
        return 0
    if argv[:1] == ["run"]:
        chosen = argv[1:] or list(CATEGORIES)
        path = RESULTS / "onnx_kit_runs.json"
        report = json.loads(path.read_text()) if path.is_file() else {}
        for category in chosen:
            report[category] = run_sample(category, ROOT / "runs" / "onnx_kit")
            path.write_text(json.dumps(report, indent=1) + "\n")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
