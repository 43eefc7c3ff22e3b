"""``nobound verify``: decide a VNNLIB property of an ONNX network, VNN-COMP style.

    nobound verify net.onnx spec.vnnlib --timeout 120 [--counterexample cex.txt]

The property file describes the *unsafe* set; the first line printed is the result:

=========  ===========================================================  =========
printed    meaning                                                      exit code
=========  ===========================================================  =========
unsat      the unsafe set is empty: the property holds                  0
sat        a counterexample was found; it follows on stdout (and goes   10
           to --counterexample) as ((X_0 v) … (Y_0 v) …)
unknown    undecided within the node limit                              20
timeout    undecided within --timeout seconds                           30
=========  ===========================================================  =========

Errors in the files or flags (unsupported ONNX operators, malformed VNNLIB with its line
number, mismatched sizes) print one line on stderr and exit with status 2.
``--certificate PATH`` saves the split trees of an ``unsat`` answer for
``nobound.certify.checker`` (proofs by DeepPoly and branch and bound only).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nobound.cli import UsageError
from nobound.cli.certify import add_certifier_flags, certifier_config

EXIT_CODES = {"unsat": 0, "sat": 10, "unknown": 20, "timeout": 30}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "verify", help="decide a VNNLIB property of an ONNX network (unsat/sat/unknown)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("onnx", help="the network (.onnx)")
    parser.add_argument("vnnlib", help="the property (.vnnlib, the unsafe set)")
    add_certifier_flags(parser, timeout=120.0)
    parser.add_argument("--counterexample", help="write a counterexample here when sat")
    parser.add_argument("--certificate", help="write a certificate here when unsat "
                                              "(.json or .json.gz)")
    parser.set_defaults(func=run)


def load_problems(onnx_path: str, vnnlib_path: str) -> tuple[Any, list[Any]]:
    """(imported network, one VerificationProblem per disjunct of the property)."""
    import numpy as np

    from nobound.certify.problem import VerificationProblem, float64_model
    from nobound.io.onnx_import import import_onnx
    from nobound.io.vnnlib import read_vnnlib

    for path in (onnx_path, vnnlib_path):
        if not Path(path).is_file():
            raise UsageError(f"{path}: no such file")
    network = import_onnx(onnx_path, dtype=np.float64)
    prop = read_vnnlib(vnnlib_path)
    size = int(np.prod(network.input_shape))
    if prop.num_inputs != size or prop.num_outputs != network.num_outputs:
        raise UsageError(f"the property has {prop.num_inputs} inputs and {prop.num_outputs} "
                         f"outputs, the network {size} and {network.num_outputs}")
    model = float64_model(network.model)
    problems = [VerificationProblem(model, d.input_lower.reshape(network.input_shape),
                                    d.input_upper.reshape(network.input_shape), d.spec,
                                    d.offset, name=f"disjunct {i}")
                for i, d in enumerate(prop.disjuncts)]
    return network, problems


def run(args: argparse.Namespace) -> int:
    from nobound.certify.certificate import save_certificate
    from nobound.certify.pipeline import Certifier
    from nobound.io.vnnlib import format_counterexample

    config = certifier_config(args, certificate=args.certificate is not None)
    network, problems = load_problems(args.onnx, args.vnnlib)
    verdict = Certifier(network.model, network.input_shape, config).verify(problems)
    if verdict.status == "certified":
        result = "unsat"
        if args.certificate:
            save_certificate(verdict.certificate, args.certificate)
    elif verdict.status == "falsified":
        result = "sat"
    else:
        result = "timeout" if verdict.reason == "timeout" else "unknown"
    print(result)
    if result == "sat":
        text = format_counterexample(verdict.counterexample.input,
                                     verdict.counterexample.output)
        print(text, end="")
        if args.counterexample:
            Path(args.counterexample).write_text(f"{result}\n{text}", encoding="utf-8")
    print(f"{result} by {verdict.method} in {verdict.seconds:.2f} s, {verdict.bounded} "
          f"sub-problems{'; ' + verdict.reason if verdict.reason else ''}", file=sys.stderr)
    return EXIT_CODES[result]
