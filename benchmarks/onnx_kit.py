"""The ONNX import and the VNN-COMP kit on the real benchmark files of ../shared/vnncomp.

    python benchmarks/onnx_kit.py import            # every network: loads? matches its graph?
    python benchmarks/onnx_kit.py run [CATEGORY[@START:STOP:STEP@SCALE]…]   # samples

``import`` imports every network (float64) and checks it against ``onnx.reference`` on
random inputs (:func:`nobound.io.onnx_check.check_import`), recording the largest
difference as a fraction of the tolerance. ``run`` runs ``nobound vnncomp`` on every
``STEP``-th instance of a category with the CSV's timeouts × ``SCALE`` (CPU is scarce:
a sample at a fraction of the competition's timeouts) and compares with the published
consensus. The load average before and after each category is recorded: on a shared
machine the wall-clock timeouts measure the share of the CPU the run got as much as the
verifier. Results: benchmarks/results/onnx_kit_import.json, onnx_kit_runs.json, and the
per-category ledgers under runs/onnx_kit/ (outside the repository's results).
"""

from __future__ import annotations

import csv
import json
import os
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


def run_sample(category: str, out_root: Path, selection: str | None = None,
               scale: float | None = None) -> dict:
    csv_name, default_selection, default_scale = CATEGORIES[category]
    selection = selection or default_selection
    scale = scale or default_scale
    folder = VNNCOMP / category
    out = out_root / f"{category.replace('/', '_')}_{selection.replace(':', '-')}_{scale:g}"
    command = [sys.executable, "-m", "nobound", "vnncomp", str(folder / csv_name), "--out",
               str(out), "--timeout-scale", str(scale), "--select", selection,
               "--consensus", str(folder / "results.csv")]
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
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
            "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
            "cpu_count": os.cpu_count(),
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
        for item in chosen:  # CATEGORY or CATEGORY@START:STOP:STEP@SCALE
            category, *rest = item.split("@")
            selection = rest[0] if rest else None
            scale = float(rest[1]) if len(rest) > 1 else None
            result = run_sample(category, ROOT / "runs" / "onnx_kit", selection, scale)
            report[f"{category}@{result['selection']}@{result['timeout_scale']:g}"] = result
            path.write_text(json.dumps(report, indent=1) + "\n")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
