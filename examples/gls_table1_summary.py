"""Collect the runs of ``examples/gls_table1_mnist.sh`` into a Markdown table.

    python examples/gls_table1_summary.py runs/gls-table1 > runs/gls-table1/table1.md

One row per run directory ``<arch>-<relaxation>-<method>``: natural, certified and
adversarial accuracy (%) from ``certify-mnist-eps0.1.json``, the last logged training
loss and certified batch accuracy, and the training time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def last_epoch(log: Path) -> dict:
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    epochs = [r for r in records if r.get("event") == "epoch"]
    return {"loss": epochs[-1].get("train_loss") if epochs else None,
            "batch_certified": epochs[-1].get("train_certified_accuracy") if epochs else None,
            "seconds": sum(r.get("epoch_seconds", 0.0) for r in epochs)}


def main(out: Path) -> None:
    rows = []
    for run in sorted(p for p in out.iterdir() if p.is_dir()):
        result = run / "certify-mnist-eps0.1.json"
        if not result.is_file():
            continue
        summary = json.loads(result.read_text())["summary"]
        training = last_epoch(run / "log.jsonl")
        arch, relaxation, method = run.name.split("-", 1)[0], *run.name.rsplit("-", 1)
        relaxation = relaxation[len(arch) + 1:] or "–"  # the PGD warm start has none
        rows.append((arch, relaxation, method.upper(), summary, training))
    print("| network | relaxation | method | n | nat. % | cert. % | adv. % | "
          "final train loss | train batch cert. | train time s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for arch, relaxation, method, s, t in rows:
        loss = f"{t['loss']:.3f}" if t["loss"] is not None else "–"
        batch = f"{100 * t['batch_certified']:.1f}" if t["batch_certified"] is not None \
            else "–"
        print(f"| {arch} | {relaxation} | {method} | {s['n']} | {s['natural_accuracy']:.1f} | "
              f"{s['certified_accuracy']:.1f} | {s['adversarial_accuracy']:.1f} | {loss} | "
              f"{batch} | {t['seconds']:.0f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/gls-table1"))
