"""``nobound certify``: certified, natural and adversarial accuracy of a checkpoint.

    nobound certify --model runs/cnn3/model.h5 --dataset mnist --eps 0.1 --n 1000 --timeout 60

Each test sample goes through the certifier (natural prediction → PGD → IBP, CROWN-IBP,
DeepPoly, alpha-CROWN → branch and bound; see docs/certifier.md). Per-sample verdicts
(certified / falsified / unknown), times, sub-problems and the deciding method are
appended to ``certify-<dataset>-eps<eps>.jsonl`` in --out (default: the checkpoint's
directory); a rerun with the same settings skips the samples already there. The table —
natural, certified and adversarial accuracy (%) — and every sample are written as
``.json`` and ``.md`` and the table is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nobound.cli import UsageError
from nobound.cli.common import (
    add_checkpoint_arguments,
    check_device,
    check_finite,
    check_model_fits_data,
    check_non_negative,
    check_output_directory,
    check_positive,
    load_split,
    write_json,
    write_text_atomically,
)

DEFAULT_METHODS = "ibp,crown-ibp,deeppoly,alpha-crown"


def add_certifier_flags(parser: argparse.ArgumentParser, timeout: float) -> None:
    """Flags shared by ``certify`` and ``verify``."""
    parser.add_argument("--timeout", type=float, default=timeout,
                        help="seconds per instance (default %(default)s)")
    parser.add_argument("--max-nodes", type=int, default=20_000,
                        help="sub-problems bounded per instance (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="sub-domains split per branch-and-bound round (default "
                             "%(default)s)")
    parser.add_argument("--methods", default=DEFAULT_METHODS,
                        help="bounds tried on the whole box, in order (default %(default)s)")
    parser.add_argument("--no-bab", action="store_true", help="no branch and bound")
    parser.add_argument("--bab-method", default="deeppoly",
                        choices=("deeppoly", "alpha-crown", "beta-crown"),
                        help="relaxation of the branch-and-bound sub-problems (alpha-crown "
                             "optimises slopes per sub-problem, beta-crown adds the split "
                             "constraints' multipliers; default %(default)s)")
    parser.add_argument("--branching", default="babsr", choices=("babsr", "intercept", "fsb"),
                        help="neuron choice (fsb bounds the children of the best-scored "
                             "candidates; default %(default)s)")
    parser.add_argument("--bab-domain", default="auto", choices=("auto", "relu", "input"),
                        help="split ReLUs or the input box (auto: the input box for "
                             "networks with at most 16 inputs; default %(default)s)")
    parser.add_argument("--input-branching", default="bounds", choices=("bounds", "gradient"),
                        help="input splitting's dimension: bounds bounds the halves along "
                             "every input and keeps the best pair, gradient picks the "
                             "largest |bound coefficient| x width (default %(default)s)")
    parser.add_argument("--intermediate-steps", type=int, default=20,
                        help="alpha-CROWN on Sigmoid/Tanh networks: optimisation steps per "
                             "layer for the intermediate bounds (0: DeepPoly's; default "
                             "%(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the attacks")
    parser.add_argument("--device", default="cpu",
                        help="where the whole-box bounds run: cpu or cuda (attacks, branch "
                             "and bound with its LPs and the proof check stay on the host)")


def certifier_config(args: argparse.Namespace, **extra: Any) -> Any:
    from nobound.bounds import resolve_method
    from nobound.certify.pipeline import CertifierConfig

    check_positive("--timeout", args.timeout)
    check_positive("--max-nodes", args.max_nodes)
    check_positive("--batch-size", args.batch_size)
    check_non_negative("--seed", args.seed)
    check_non_negative("--intermediate-steps", args.intermediate_steps)
    check_device(args.device)
    try:
        methods = tuple(resolve_method(m) for m in args.methods.split(",") if m.strip())
    except ValueError as error:
        raise UsageError(str(error)) from None
    if not methods:
        raise UsageError(f"--methods is empty; name at least one bound (e.g. "
                         f"{DEFAULT_METHODS})")
    return CertifierConfig(timeout=args.timeout, max_nodes=args.max_nodes,
                           batch_size=args.batch_size, methods=methods, bab=not args.no_bab,
                           bab_method=args.bab_method, branching=args.branching,
                           bab_domain=args.bab_domain,
                           input_branching=args.input_branching,
                           intermediate_steps=args.intermediate_steps,
                           seed=args.seed, device=args.device, **extra)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "certify", help="certified / natural / adversarial accuracy by complete verification",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_arguments(parser, "checkpoint (.h5)")
    parser.add_argument("--eps", type=float, required=True, help="l_inf radius (pixels)")
    parser.add_argument("--n", type=int, default=1000,
                        help="certify the first N samples (default %(default)s)")
    add_certifier_flags(parser, timeout=60.0)
    parser.add_argument("--attack-steps", type=int, default=50,
                        help="PGD steps before bounding (default %(default)s; the paper's "
                             "evaluation attack uses 200)")
    parser.add_argument("--attack-restarts", type=int, default=3,
                        help="PGD restarts (default %(default)s; the paper uses 5)")
    parser.add_argument("--certificates", action="store_true",
                        help="save a checkable certificate per certified sample (proofs "
                             "by DeepPoly and branch and bound only)")
    parser.add_argument("--out", help="output directory (default: the checkpoint's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or table")
    parser.add_argument("--shard", metavar="I/K",
                        help="certify only samples I, I+K, I+2K, ... (0 <= I < K) into their "
                             "own results file; combine the K files with --merge")
    parser.add_argument("--merge", action="store_true",
                        help="merge the --shard results files in --out into the results "
                             "and table of the whole run")
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help="certify the samples as tasks on Ray: a local cluster, or the "
                             "one at ADDRESS (default $NOBOUND_RAY_ADDRESS)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from nobound.certify.certificate import model_fingerprint
    from nobound.certify.evaluation import (
        SettingsMismatch,
        markdown_report,
        summarize,
    )
    from nobound.certify.pipeline import Certifier
    from nobound.certify.shards import MergeError, Split, certify_split, shard_path
    from nobound.io.models import load_model_checkpoint as load_checkpoint  # .h5 or .onnx
    from nobound.training.progress import ProgressBar

    check_non_negative("--eps", args.eps)
    check_finite("--eps", args.eps)
    check_positive("--n", args.n)
    check_non_negative("--attack-steps", args.attack_steps)
    check_positive("--attack-restarts", args.attack_restarts)
    try:
        split = Split.from_flags(args.shard, args.merge, args.ray)
    except ValueError as error:
        raise UsageError(str(error)) from None
    config = certifier_config(args, certificate=args.certificates,
                              robustness_attack_steps=args.attack_steps,
                              robustness_attack_restarts=args.attack_restarts)
    checkpoint = load_checkpoint(args.model)
    dataset_name = args.dataset or checkpoint.config.get("run", {}).get("dataset")
    if dataset_name is None:
        raise UsageError(f"{args.model} does not record its dataset; pass --dataset")
    data = load_split(dataset_name, args.split, args.data_dir, args.n)
    if len(data) < args.n:
        raise UsageError(f"--n {args.n} is more than the {len(data)} samples of "
                         f"{data.name} ({data.split})")
    check_model_fits_data(checkpoint.model, checkpoint.architecture, data, args.model)
    out = Path(args.out) if args.out else checkpoint.path.parent
    check_output_directory(out)
    out.mkdir(parents=True, exist_ok=True)
    certifier = Certifier(checkpoint.model, data.input_shape, config)
    stem = f"certify-{data.name}-eps{args.eps:g}"
    header = {"model": model_fingerprint(certifier.model), "dataset": data.name,
              "split": data.split, "eps": args.eps, "timeout": config.timeout,
              "max_nodes": config.max_nodes, "methods": list(config.methods),
              "bab": config.bab, "attack": [args.attack_steps, args.attack_restarts],
              "certificates": args.certificates, "seed": args.seed}
    bar = ProgressBar(len(data), description="certify", enabled=False if args.quiet else None)
    counts = {"certified": 0, "falsified": 0, "unknown": 0}

    def progress(record: dict[str, Any]) -> None:
        counts[record["status"]] += 1
        bar.update(1, **counts)

    try:
        records = certify_split(split, certifier, np.asarray(data.images, np.float64),
                                data.labels, args.eps, out, stem, header, progress,
                                out / f"{stem}-certificates" if args.certificates else None)
    except (SettingsMismatch, MergeError) as error:
        raise UsageError(str(error)) from None
    finally:
        bar.close()
    if split.shard is not None:  # the table is the merge's
        print(f"wrote {shard_path(out, stem, split.shard)} ({len(records)} samples)",
              file=sys.stderr)
        return 0
    summary = summarize(records)
    title = f"{checkpoint.path.name} on {data.name} ({data.split}), eps = {args.eps:g}"
    report = markdown_report(summary, records, title)
    write_json(out / f"{stem}.json", {"settings": header, "summary": summary,
                                      "samples": records})
    write_text_atomically(out / f"{stem}.md", report)
    if not args.quiet:
        print(report.split("\n\n| sample")[0])
    print(f"wrote {out / stem}.json, .md and .jsonl", file=sys.stderr)
    return 0
