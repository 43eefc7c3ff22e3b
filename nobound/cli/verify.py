"""``nobound verify``: decide a VNNLIB property of a network, VNN-COMP style.

    nobound verify net.onnx spec.vnnlib --timeout 120 [--counterexample cex.txt]
    nobound verify net.onnx.gz spec.vnnlib.gz --timeout 60 --results-file out.txt

The network is an ONNX file (``.onnx``/``.onnx.gz``, checked against its graph on the
property's box before anything is decided) or a nobound checkpoint (``.h5``). The property
file describes the *unsafe* set; the first line printed is the result:

=========  ===========================================================  =========
printed    meaning                                                      exit code
=========  ===========================================================  =========
unsat      the unsafe set is empty: the property holds                  0
sat        a counterexample was found; it follows on stdout (and goes   10
           to --counterexample) as ((X_0 v) … (Y_0 v) …), X in the
           file's input order, Y the file's own outputs at X
unknown    undecided within the node limit                              20
timeout    undecided within --timeout seconds                           30
=========  ===========================================================  =========

Errors in the files or flags (unsupported ONNX operators, malformed VNNLIB with its line
number, mismatched sizes) print one line on stderr and exit with status 2.

``--results-file F`` is the competition mode: the verdict (``sat`` with the counterexample,
``unsat``, ``timeout``, ``unknown`` or ``error`` with the reason) is written to F, atomically,
and the exit status is 0 whenever a verdict was written; any F from an earlier run is
removed first. ``--timeout`` then counts from the start of the process (start-up and the
import included) when the process was started as ``nobound verify``, else from the call;
the work runs in a child process which is stopped at the deadline, whatever it is doing,
and ``timeout`` is written.

A counterexample is reported only after it replays in the file's own arithmetic
(``onnx.reference`` on the graph, in the file's dtype): inside the box and every row of
its disjunct ≤ 0. One that holds only in nobound's float64 is reported as ``unknown``.
A network whose trailing Softmax was dropped (see :mod:`nobound.io.onnx_import`) only
takes properties whose output rows compare two outputs (c·(Y_i − Y_j) with no constant).
Branch and bound splits ReLUs only: on a network with Sigmoid, Tanh or MaxPool layers the
answer comes from the attacks and the bounds alone (the summary line says so). Every proof
is confirmed by the rigorous checker (:mod:`nobound.certify.checker`); for layers it does
not know, only counterexamples are searched and the answer is ``sat`` or ``unknown``.
``--certificate PATH`` saves the split trees of an ``unsat`` answer for
``nobound.certify.checker`` (proofs by DeepPoly and branch and bound only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from nobound.cli import UsageError
from nobound.cli.certify import add_certifier_flags, certifier_config

EXIT_CODES = {"unsat": 0, "sat": 10, "unknown": 20, "timeout": 30}
# Layers branch and bound cannot represent (it splits ReLUs of an affine/ReLU chain): on
# such networks verification stops after the attacks and the bounds, and says so.
NOT_SPLIT_BY_BAB = ("Sigmoid", "Tanh", "MaxPool2d")

# Seconds kept back from --timeout in competition mode: the verifier stops this much
# before the deadline so that its own verdict, not the watchdog's, is written.
_SAFETY_MARGIN = 0.4
# Seconds before the deadline at which the child is stopped, left for writing and exiting.
_EXIT_MARGIN = 0.1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "verify", help="decide a VNNLIB property of a network (unsat/sat/unknown)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """verify's arguments: the one definition, also read by ``nobound vnncomp``."""
    parser.add_argument("onnx", help="the network (.onnx, .onnx.gz or a .h5 checkpoint)")
    parser.add_argument("vnnlib", help="the property (.vnnlib or .vnnlib.gz, the unsafe set)")
    add_certifier_flags(parser, timeout=120.0)
    parser.add_argument("--counterexample", help="write a counterexample here when sat")
    parser.add_argument("--certificate", help="write a certificate here when unsat "
                                              "(.json or .json.gz)")
    parser.add_argument("--results-file", help="VNN-COMP mode: write the verdict here, exit "
                                               "0 whenever one was written")


def competition_command(onnx: str, vnnlib: str, timeout: float, results_file: str,
                        extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The arguments of ``nobound verify`` in competition mode (``extra``: more of its
    flags, as :func:`check_extra_flags` accepts them)."""
    return ["verify", onnx, vnnlib, "--timeout", f"{timeout:g}", "--results-file",
            results_file, *extra]


def check_extra_flags(extra: list[str] | tuple[str, ...]) -> None:
    """Raise UsageError (one line) unless ``extra`` are flags verify accepts, with valid
    values, and leave the ones a runner sets per instance to it."""
    reserved = {"--timeout", "--results-file", "--counterexample", "--certificate"}
    for flag in extra:
        if flag.split("=")[0] in reserved:
            raise UsageError(f"--verify-args: {flag.split('=')[0]} is set per instance by "
                             f"the runner")
    parser = argparse.ArgumentParser(prog="nobound verify", add_help=False,
                                     exit_on_error=False)
    add_arguments(parser)
    try:
        args, unknown = parser.parse_known_args(["NET", "SPEC", *extra])
    except argparse.ArgumentError as error:
        raise UsageError(f"--verify-args: {error}") from None
    if unknown:
        raise UsageError(f"--verify-args: verify does not take {' '.join(unknown)!r}")
    certifier_config(args)


def _softmax_invariant(prop: Any) -> bool:
    """Every output row compares two outputs, c·(y_i − y_j) + 0 (Softmax keeps its sign)."""
    for disjunct in prop.disjuncts:
        for row, offset in zip(disjunct.spec, disjunct.offset, strict=True):
            nonzero = row[row != 0]
            if offset != 0 or nonzero.size != 2 or nonzero.sum() != 0:
                return False
    return True


def load_problems(model_path: str, vnnlib_path: str) -> tuple[Any, Any, list[Any]]:
    """(imported network, property, one VerificationProblem per disjunct)."""
    import numpy as np

    from nobound.certify.problem import VerificationProblem, float64_model
    from nobound.io.models import load_network
    from nobound.io.vnnlib import read_vnnlib

    for path in (model_path, vnnlib_path):
        if not Path(path).is_file():
            raise UsageError(f"{path}: no such file")
    prop = read_vnnlib(vnnlib_path)
    lower = np.min([d.input_lower for d in prop.disjuncts], axis=0)
    upper = np.max([d.input_upper for d in prop.disjuncts], axis=0)
    network = load_network(model_path, check_box=(lower, upper))
    size = int(np.prod(network.input_shape))
    if prop.num_inputs != size or prop.num_outputs != network.num_outputs:
        raise UsageError(f"the property has {prop.num_inputs} inputs and {prop.num_outputs} "
                         f"outputs, the network {size} and {network.num_outputs}")
    if network.dropped_softmax and not _softmax_invariant(prop):
        raise UsageError("the network's trailing Softmax was dropped for verification, but "
                         "the property does not only compare outputs pairwise")
    model = float64_model(network.model)
    problems = [VerificationProblem(model, network.to_model_input(d.input_lower),
                                    network.to_model_input(d.input_upper), d.spec, d.offset,
                                    name=f"disjunct {i}")
                for i, d in enumerate(prop.disjuncts)]
    return network, prop, problems


def replay_counterexample(network: Any, prop: Any, problem_index: int,
                          model_input: Any) -> tuple[Any, Any] | None:
    """(x in file order, the file's outputs at x) when x violates its disjunct in the
    file's arithmetic, else None (see the module doc)."""
    import numpy as np

    x = network.to_file_input(model_input)
    disjunct = prop.disjuncts[problem_index]
    if not (np.all(x >= disjunct.input_lower) and np.all(x <= disjunct.input_upper)):
        return None
    if network.onnx_model is None:
        from nobound.autodiff.tensor import Tensor, no_grad
        from nobound.backend import to_numpy

        with no_grad():
            y = to_numpy(network.model(Tensor(np.asarray(model_input)[None])).data)[0]
    else:
        from nobound.io.onnx_check import graph_input, reference_values

        shape = [d.dim_value for d in graph_input(network.onnx_model).type.tensor_type.shape.dim]
        output = network.onnx_model.graph.output[0].name
        y = reference_values(network.onnx_model, x.reshape(shape))[output]
    y = np.asarray(y, np.float64).reshape(-1)
    if np.all(disjunct.spec @ y + disjunct.offset <= 0):
        return x, y
    return None


def unconfirmable_layers(model: Any, input_shape: tuple[int, ...]) -> str:
    """'' when the rigorous checker (which confirms every proof) reads the model, else the
    reason it cannot (it names the layer)."""
    from nobound.certify.checker import checked_network
    from nobound.certify.problem import float64_model

    try:
        checked_network(float64_model(model), input_shape)
    except TypeError as error:
        return str(error).split(" is not")[0]
    return ""


def decide(args: argparse.Namespace, config: Any, start: float) -> tuple[str, str, str]:
    """(verdict, counterexample text or reason, one-line summary)."""
    from nobound.certify.certificate import save_certificate
    from nobound.certify.pipeline import Certifier
    from nobound.certify.replay import network_replay
    from nobound.io.vnnlib import format_counterexample

    network, prop, problems = load_problems(args.onnx, args.vnnlib)
    remaining = config.timeout - (time.time() - start)
    if remaining <= 0:
        return "timeout", "", "timeout while loading the network and the property"
    config = replace(config, timeout=remaining)
    not_split = sorted({type(layer).__name__ for layer in network.model.layers
                        if type(layer).__name__ in NOT_SPLIT_BY_BAB})
    if not_split and config.bab:
        config = replace(config, bab=False)
        network.notes.append(f"branch and bound splits ReLUs only and this network has "
                             f"{', '.join(not_split)} layers: decided by attacks and bounds "
                             f"alone")
    unchecked = unconfirmable_layers(network.model, network.input_shape)
    if unchecked and not config.allow_roundoff_errors:
        config = replace(config, methods=(), bab=False)
        network.notes.append(f"the rigorous proof checker does not know {unchecked}, so no "
                             f"proof could be confirmed: only counterexamples are searched")
    verdict = Certifier(network.model, network.input_shape, config,
                        replay=network_replay(network)).verify(problems)
    body, reason = "", verdict.reason
    if verdict.status == "certified":
        result = "unsat"
        if args.certificate:
            save_certificate(verdict.certificate, args.certificate)
    elif verdict.status == "falsified":
        index = int(verdict.details.get("problem", 0))
        replayed = replay_counterexample(network, prop, index, verdict.counterexample.input)
        if replayed is None:
            result, reason = "unknown", ("a counterexample in float64 does not replay in the "
                                         "file's arithmetic")
        else:
            result, body = "sat", format_counterexample(*replayed)
    else:
        result = "timeout" if verdict.reason == "timeout" else "unknown"
    notes = "; ".join(network.notes)
    summary = (f"{result} by {verdict.method} in {time.time() - start:.2f} s (since start), "
               f"{verdict.bounded} sub-problems{'; ' + reason if reason else ''}"
               f"{'; ' + notes if notes else ''}")
    return result, body if result == "sat" else reason, summary


def run(args: argparse.Namespace) -> int:
    from nobound.vnncomp.deadline import process_start_time

    # the process's own start-up counts when the process was started for this command
    # (``nobound verify …``); a caller that runs ``main`` in a long-lived process (tests,
    # a notebook) has no start-up of this verification to count
    started_for_verify = sys.argv[1:2] == ["verify"]
    start = process_start_time() if args.results_file and started_for_verify else time.time()
    config = certifier_config(args, certificate=args.certificate is not None)
    if args.results_file:
        return run_competition(args, config, start)
    result, text, summary = decide(args, config, start)
    report(args, result, text, summary)
    return EXIT_CODES[result]


def report(args: argparse.Namespace, result: str, text: str, summary: str) -> None:
    """The verdict on stdout (with the counterexample of a sat, also to --counterexample)
    and the summary line on stderr."""
    print(result)
    if result == "sat":
        print(text, end="")
        if args.counterexample:
            Path(args.counterexample).write_text(f"{result}\n{text}", encoding="utf-8")
    print(summary, file=sys.stderr)


def run_competition(args: argparse.Namespace, config: Any, start: float) -> int:
    """--results-file mode (see the module doc): the work runs in a child process that
    the deadline can stop (:func:`nobound.vnncomp.deadline.run_until`)."""
    from nobound.vnncomp.deadline import TimedOut, run_until
    from nobound.vnncomp.result_file import ResultFile

    results = ResultFile(args.results_file)
    config = replace(config, timeout=max(0.0, args.timeout - _SAFETY_MARGIN))
    try:
        result, text, summary = run_until(lambda: list(decide(args, config, start)),
                                          start + args.timeout - _EXIT_MARGIN)
    except TimedOut:
        result, text = "timeout", ""
        summary = f"timeout: stopped at the {args.timeout:g} s deadline (since start)"
    except RuntimeError as error:
        result, text, summary = "error", str(error), f"error: {error}"
    results.write(result, text)
    report(args, result, text, summary)
    if sys.argv[1:2] == ["verify"]:  # a process of its own: everything is written, so skip
        sys.stdout.flush()           # the interpreter's teardown (seconds on a starved CPU)
        sys.stderr.flush()
        os._exit(0)
    return 0
