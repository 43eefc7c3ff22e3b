"""Rerun the paper's MNIST eps = 0.1 table (Table 7 / Table 1 / Table 2) with nobound alone.

    python examples/reproduce_paper.py --data-dir ../shared/data --out runs/reproduction
    python examples/reproduce_paper.py --smoke --out /tmp/repro-smoke    # minutes, not hours
    python examples/reproduce_paper.py --rows tiny-deeppoly-rgs --stage train   # one row

Every row is one ``nobound train`` run (App. F schedule via the ``paper-*`` presets, the
relaxation always named on the command line) followed by one ``nobound certify`` run on the
MNIST test set with the complete certifier: PGD with the paper's evaluation attack (200
steps, 5 restarts), then IBP → CROWN-IBP → DeepPoly → alpha-CROWN → branch and bound with a
per-sample timeout. Both commands resume: rerunning this script after an interruption
continues every unfinished run from its newest checkpoint and every certification from its
JSONL. ``--print-commands`` shows the exact commands without running anything.

The results of every row (training time, the certify table, unknowns, standard error) are
collected into ``<out>/results.json`` and ``<out>/results.md``; ``--publish DIR`` copies
each row's small JSON files (config, certify summary, epoch log) there for committing.

PGPE rows start from the ``tiny-pgd`` row's network (App. F.2's warm start); their budget
(population, epochs, images) is CPU-sized by default and stated in the table — the paper's
256 members × 150 epochs is GPU work (see docs/reproduction.md for the fitted cost).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Row:
    name: str
    arch: str
    method: str
    relaxation: str | None
    preset: str
    extra: tuple[str, ...] = ()
    warm_start: str | None = None  # the row whose model.h5 this one starts from
    lr: float | None = None  # overrides --lr (the App. F.1 lr check)
    certify_n: int | None = None  # fewer test images for a budget row (stated in the table)
    certify: bool = True  # False: a warm start, not a row of the table
    # Rows too long for this CPU run the full 70-epoch schedule (same lr and eps schedules)
    # but stop after this many epochs (--cpu-epochs overrides; stated in the table).
    cpu_epochs: int | None = None
    seed: int | None = None  # overrides --seed
    pgpe_budget: dict | None = None  # a PGPE row's own CPU budget (default PGPE_CPU)
    setting: str = "paper"  # "paper", or what this row changes (an ablation, a new setting)
    paper: dict = field(default_factory=dict)  # the paper's (nat, cert) where it has them


# Paper numbers: Table 7 (cnn3_tiny) and Table 1 (cnn3), MNIST eps = 0.1, natural / certified.
ROWS = [
    Row("tiny-ibp-grad", "cnn3_tiny", "grad", "ibp", "paper-mnist-0.1",
        paper={"table7": (89.76, 82.46)}),
    Row("tiny-ibp-grad-lr5e-5", "cnn3_tiny", "grad", "ibp", "paper-mnist-0.1", lr=5e-5,
        paper={"table7": (89.76, 82.46)}, setting="App. F.1's printed lr 5e-5"),
    # Ablation of the setup fixes: Normalize(0.1307, 0.3081) in front again, Shi et al.'s
    # initialisation kept, so the cost of training on raw pixels is measured on its own.
    Row("tiny-ibp-grad-normalized", "cnn3_tiny", "grad", "ibp", "paper-mnist-0.1",
        extra=("--normalize", "dataset"), paper={"table7": (89.76, 82.46)},
        setting="ablation: input normalised (mean 0.1307, std 0.3081)"),
    # The same row with another seed: how far single-seed differences of a point can be noise.
    Row("tiny-ibp-grad-seed1", "cnn3_tiny", "grad", "ibp", "paper-mnist-0.1",
        seed=1, paper={"table7": (89.76, 82.46)}, setting="seed 1"),
    Row("tiny-crown-ibp-grad", "cnn3_tiny", "grad", "crown-ibp", "paper-mnist-0.1"),
    Row("tiny-deeppoly-grad", "cnn3_tiny", "grad", "deeppoly", "paper-mnist-0.1",
        paper={"table7": (89.24, 68.47), "table2": (91.27, 82.04)}),
    Row("tiny-ibp-rgs", "cnn3_tiny", "rgs", "ibp", "paper-mnist-0.1"),
    Row("tiny-crown-ibp-rgs", "cnn3_tiny", "rgs", "crown-ibp", "paper-mnist-0.1"),
    Row("tiny-deeppoly-rgs", "cnn3_tiny", "rgs", "deeppoly", "paper-mnist-0.1",
        paper={"table7": (91.33, 82.66)}),
    # The warm start's settings are not in the paper; on this CPU it gets 10 epochs (the
    # preset's 70 PGD epochs cost 11 passes per step), ramp and milestones scaled to fit.
    Row("tiny-pgd", "cnn3_tiny", "pgd", None, "paper-pgd-mnist-0.1",
        extra=("--epochs", "10", "--eps-ramp-epochs", "3", "--lr-milestones", "7", "9"),
        certify=False),
    Row("tiny-deeppoly-pgpe", "cnn3_tiny", "pgpe", "deeppoly", "paper-pgpe-mnist-0.1",
        warm_start="tiny-pgd", certify_n=500, paper={"table7": (91.94, 85.00)}),
    # The longest DeepPoly-PGPE budget that fits a session on this CPU: every training
    # image, 5 epochs (590 steps instead of 40), still 32 members.
    Row("tiny-deeppoly-pgpe-60k", "cnn3_tiny", "pgpe", "deeppoly", "paper-pgpe-mnist-0.1",
        warm_start="tiny-pgd", certify_n=500, paper={"table7": (91.94, 85.00)},
        pgpe_budget={"population": 32, "epochs": 5, "limit": 60000},
        setting="PGPE CPU budget: 32 members, 5 epochs of 60,000 images"),
    Row("tiny-alpha-crown-pgpe", "cnn3_tiny", "pgpe", "alpha-crown",
        "paper-alpha-crown-pgpe-mnist-0.1", warm_start="tiny-pgd", certify_n=500,
        paper={"table2": (92.15, 85.15)}),
    Row("cnn3-ibp-grad", "cnn3", "grad", "ibp", "paper-mnist-0.1",
        paper={"table7": (96.02, 91.23)}),
    # the batch of 256 as two micro-batches on two threads: the same gradient up to the
    # order of a sum, both cores busy (docs/benchmarks.md, "Training step, fourth round")
    Row("cnn3-deeppoly-grad", "cnn3", "grad", "deeppoly", "paper-mnist-0.1",
        paper={"table7": (95.95, 90.04)}, cpu_epochs=1,
        extra=("--micro-batch", "128", "--micro-batch-workers", "2")),
    Row("cnn3-deeppoly-rgs", "cnn3", "rgs", "deeppoly", "paper-mnist-0.1",
        paper={"table7": (97.37, 91.88)}, cpu_epochs=1),
]
BY_NAME = {row.name: row for row in ROWS}

#: Smoke budget: every row, end to end, in minutes on two cores.
SMOKE = {"limit": 512, "epochs": 2, "pgpe_epochs": 1, "population": 8, "certify_n": 40,
         "timeout": 1.0, "attack_steps": 20, "attack_restarts": 1}
#: The CPU budget of the PGPE rows when not --smoke (the paper: 256 members, 150 epochs,
#: 60,000 images; a GPU budget).
PGPE_CPU = {"population": 32, "epochs": 2, "limit": 10000}


def cpu_epochs(row: Row, args: argparse.Namespace) -> int | None:
    """Epochs this row runs here: None for the full schedule (the smoke budget ignores the
    rows' own CPU budgets)."""
    if args.cpu_epochs is not None:
        return args.cpu_epochs
    return None if args.smoke else row.cpu_epochs


def train_command(row: Row, args: argparse.Namespace, out: Path) -> list[str]:
    run = out / row.name
    stop = cpu_epochs(row, args)
    stop_flags = ["--stop-after-epochs", str(stop)] if stop is not None else []
    if run.is_dir() and any(run.glob("checkpoint-*.h5")):
        return ["nobound", "train", "--out", str(run), "--resume", "--quiet",
                "--data-dir", args.data_dir, *stop_flags]
    command = ["nobound", "train", "--preset", row.preset, "--arch", row.arch,
               "--method", row.method, "--data-dir", args.data_dir, "--out", str(run),
               "--quiet", "--seed", str(args.seed if row.seed is None else row.seed), *row.extra]
    if row.method in ("grad", "rgs"):  # PGD and PGPE keep their presets' lr
        command += ["--lr", str(row.lr if row.lr is not None else args.lr)]
    if row.relaxation:
        command += ["--relaxation", row.relaxation]
    if row.warm_start:
        command += ["--init-from", str(out / row.warm_start / "model.h5")]
    if row.method == "pgpe":
        budget = SMOKE if args.smoke else (row.pgpe_budget or PGPE_CPU)
        command += ["--population-size", str(budget["population"]),
                    "--epochs", str(budget["pgpe_epochs" if args.smoke else "epochs"]),
                    "--limit", str(budget["limit"])]
    elif args.smoke:
        command += ["--epochs", str(SMOKE["epochs"]), "--limit", str(SMOKE["limit"]),
                    "--lr-milestones", "1", "--eps-ramp-epochs", "1"]
    return command + stop_flags


def epochs_done(run: Path) -> int:
    """Epochs finished in a run directory, from its log."""
    log = run / "log.jsonl"
    if not log.is_file():
        return 0
    return sum(1 for line in log.read_text().splitlines() if '"event": "epoch"' in line)


def trained_model(row: Row, args: argparse.Namespace, out: Path) -> Path | None:
    """The network to certify: model.h5 of a finished run, or the newest checkpoint of a
    run that stopped where this row's CPU budget ends; None while training is unfinished."""
    run = out / row.name
    if (run / "model.h5").is_file():
        return run / "model.h5"
    stop = cpu_epochs(row, args)
    checkpoints = sorted(run.glob("checkpoint-*.h5"))
    if stop is not None and checkpoints and epochs_done(run) >= stop:
        return checkpoints[-1]
    return None


def certify_dir(row: Row, args: argparse.Namespace, out: Path) -> Path:
    """Where a row's certification is written: the run directory for a finished run; a
    folder named after the epoch for a stopped one (a later, longer run certifies anew)."""
    run = out / row.name
    model = trained_model(row, args, out)
    if model is None or model.name == "model.h5":
        return run
    return run / f"certify-epoch{epochs_done(run)}"


def certify_command(row: Row, args: argparse.Namespace, out: Path) -> list[str]:
    model = trained_model(row, args, out) or out / row.name / "model.h5"
    smoke = args.smoke
    return ["nobound", "certify", "--model", str(model), "--dataset", "mnist",
            "--data-dir", args.data_dir, "--eps", "0.1",
            "--n", str(SMOKE["certify_n"] if smoke else row.certify_n or args.certify_n),
            "--timeout", str(SMOKE["timeout"] if smoke else args.timeout),
            "--attack-steps", str(SMOKE["attack_steps"] if smoke else 200),
            "--attack-restarts", str(SMOKE["attack_restarts"] if smoke else 5),
            "--methods", "ibp,crown-ibp,deeppoly,alpha-crown", "--bab-method", "alpha-crown",
            "--out", str(certify_dir(row, args, out)), "--quiet"]


def run(command: list[str], log: Path) -> None:
    print("$ " + " ".join(command), flush=True)
    with log.open("a") as stream:
        subprocess.run(command, check=True, stdout=stream, stderr=subprocess.STDOUT)


def collect(row: Row, args: argparse.Namespace, out: Path) -> dict | None:
    run = out / row.name
    where = certify_dir(row, args, out)
    certified = where / "certify-mnist-eps0.1.json"
    if not certified.is_file():
        return None
    summary = json.loads(certified.read_text())["summary"]
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()
               if line.strip()]
    epochs = [record for record in records if record.get("event") == "epoch"]
    config = json.loads((run / "config.json").read_text())
    return {"row": row.name, "arch": row.arch, "method": row.method,
            "relaxation": row.relaxation, "paper": row.paper, "setting": row.setting,
            "epochs": len(epochs), "schedule_epochs": config["trainer"]["epochs"],
            "model": "model.h5" if where == run else "newest checkpoint",
            "train_seconds": sum(e.get("epoch_seconds", 0.0) for e in epochs),
            "limit": config["run"].get("limit"), "lr": config["trainer"]["lr"],
            "normalize": config["run"].get("normalize", "dataset"),
            "population": config["run"]["method_options"].get("population_size"),
            "certify": summary}


def standard_error(percent: float, n: int) -> float:
    """Binomial standard error (in points) of an accuracy of ``percent`` on ``n`` images."""
    p = percent / 100.0
    return 100.0 * (p * (1.0 - p) / max(1, n)) ** 0.5


def markdown(results: list[dict]) -> str:
    lines = ["| row | epochs | nat % | cert % (± s.e.) | adv % | unknown | n | train min "
             "| paper nat / cert |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["certify"]
        n = s.get("n", 0)
        unknown = s.get("verdicts", {}).get("unknown", 0)
        paper = "; ".join(f"{k}: {v[0]} / {v[1]}" for k, v in r["paper"].items()) or "–"
        cert = s.get("certified_accuracy", 0.0)
        epochs = str(r["epochs"])
        if r.get("schedule_epochs", r["epochs"]) != r["epochs"]:
            epochs += f" of {r['schedule_epochs']}"
        lines.append(f"| {r['row']} | {epochs} | {s.get('natural_accuracy', 0):.2f} | "
                     f"{cert:.2f} ± {standard_error(cert, n):.2f} | "
                     f"{s.get('adversarial_accuracy', 0):.2f} | {unknown} | {n} | "
                     f"{r['train_seconds'] / 60:.1f} | {paper} |")
    return "\n".join(lines) + "\n"


def plot_rows(out: Path, names: list[str], path: Path) -> Path:
    """Training curves of several rows in one figure: certified loss, certified batch
    accuracy, eps and RGS's sigma against the epoch (step lines averaged per epoch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nobound.analysis.training_curves import read_training_log

    panels = (("train_robust_loss", "certified loss (eq. 1)"),
              ("train_certified_accuracy", "certified batch accuracy"),
              ("train_eps", "eps"), ("train_sigma", "RGS sigma"))
    figure, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    for index, name in enumerate(names):
        log = out / name / "log.jsonl"
        if not log.is_file():
            continue
        epochs = read_training_log(log)["epoch"]
        for axis, (key, _) in zip(axes, panels, strict=True):
            if key in epochs:  # one colour per row in every panel, also where rows lack one
                axis.plot(epochs["epoch"], epochs[key], label=name, color=f"C{index % 10}")
    for axis, (_, label) in zip(axes, panels, strict=True):
        axis.set_xlabel("epoch")
        axis.set_title(label, fontsize=10)
    axes[1].legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/reproduction", help="runs folder")
    parser.add_argument("--data-dir", default="../shared/data", help="MNIST root")
    parser.add_argument("--rows", default=",".join(BY_NAME),
                        help=f"comma-separated rows (default all): {', '.join(BY_NAME)}")
    parser.add_argument("--stage", choices=("train", "certify", "all"), default="all")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny budget (512 images, 2 epochs, 40 certified) to check "
                             "the pipeline end to end")
    parser.add_argument("--lr", type=float, default=5e-4,
                        help="Adam lr of the GRAD/RGS rows (docs/reproduction.md: 5e-4 "
                             "matches Table 7's IBP-GRAD row, App. F.1 prints 5e-5)")
    parser.add_argument("--certify-n", type=int, default=10000, help="test images")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="certifier seconds per test image (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu-epochs", type=int,
                        help="stop every selected row after this many epochs of its full "
                             "schedule (default: the CNN3 DeepPoly rows' CPU budget, full "
                             "schedule for the others)")
    parser.add_argument("--publish", help="copy every row's small JSON results here")
    parser.add_argument("--print-commands", action="store_true")
    parser.add_argument("--plot", help="write the rows' training curves to this image")
    args = parser.parse_args(argv)
    names = [name for name in args.rows.split(",") if name]
    unknown = sorted(set(names) - set(BY_NAME))
    if unknown or not names:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(BY_NAME)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        row = BY_NAME[name]
        # Built when they run: the certify command names the network training left.
        commands = []
        if args.stage in ("train", "all") and trained_model(row, args, out) is None:
            commands.append(train_command)
        if args.stage in ("certify", "all") and row.certify:
            commands.append(certify_command)
        for build in commands:
            command = build(row, args, out)
            if args.print_commands:
                print(" ".join(command))
                continue
            started = time.time()
            try:
                run(command, out / f"{name}.log")
            except subprocess.CalledProcessError as error:  # the next rows still run
                print(f"  {name}: failed with status {error.returncode}; see "
                      f"{out / name}.log", flush=True)
                break
            print(f"  {name}: {time.time() - started:.0f} s", flush=True)
    results = [r for r in (collect(BY_NAME[name], args, out) for name in BY_NAME) if r]
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown(results))
    if args.publish:
        publish = Path(args.publish)
        for result in results:
            target = publish / result["row"]
            target.mkdir(parents=True, exist_ok=True)
            run_dir = out / result["row"]
            shutil.copy(run_dir / "config.json", target / "config.json")
            certify_json = certify_dir(BY_NAME[result["row"]], args, out)
            certified = json.loads((certify_json / "certify-mnist-eps0.1.json").read_text())
            (target / "certify-summary.json").write_text(json.dumps(
                {key: certified[key] for key in ("settings", "summary")}, indent=1))
            epochs = [line for line in (run_dir / "log.jsonl").read_text().splitlines()
                      if '"event": "epoch"' in line]
            (target / "log-epochs.jsonl").write_text("\n".join(epochs) + "\n")
        # Rows published earlier (perhaps from another machine's runs folder) stay unless
        # this run has them too.
        published = publish / "results.json"
        earlier = json.loads(published.read_text()) if published.is_file() else []
        fresh = {r["row"] for r in results}
        merged = [r for r in earlier if r["row"] not in fresh] + results
        merged.sort(key=lambda r: list(BY_NAME).index(r["row"]) if r["row"] in BY_NAME else 99)
        published.write_text(json.dumps(merged, indent=1))
    if args.plot:
        plot_rows(out, names, Path(args.plot))
    sys.stdout.write(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
