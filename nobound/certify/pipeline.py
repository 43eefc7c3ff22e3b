"""The certifier: cheap answers first, branch and bound last.

Per (input, specification) — a list of :class:`VerificationProblem`, all of which must be
proved —

1. natural prediction (robustness only): is the clean input itself a counterexample?
2. falsification: PGD with restarts (:mod:`nobound.certify.falsify`), replayed in float64;
3. bounds on the whole box, cheapest first: IBP, CROWN-IBP, DeepPoly, alpha-CROWN — all
   open problems in one batched call per method; a problem is proved when one of its
   rows has a positive lower bound;
4. branch and bound (:mod:`nobound.certify.bab`) on what is left, most violated first,
   sharing one deadline and one node budget.

The verdict (:mod:`nobound.certify.verdicts`) names the stage that decided. The search is
computed in float64 on a CPU copy of the model, without outward rounding; no verdict is
taken from it unchecked:

* a proof (a whole-box bound or a branch-and-bound tree) counts only after the
  independent checker (:mod:`nobound.certify.checker`) re-derives it with outward
  rounding on the stored weights in real arithmetic. A whole-box proof it rejects leaves
  the problem open for the next stage; a rejected tree makes the verdict ``unknown`` with
  the checker's reason. ``allow_roundoff_errors=True`` skips the check (and risks a wrong
  ``certified`` from round-off);
* a counterexample counts only after it replays in the model's own arithmetic (its dtype,
  or ``replay``, e.g. ONNX's reference evaluator) inside the box.

The deadline covers the check: the check stops at the deadline (an unfinished check is a
rejection: the verdict is ``unknown``, reason "timeout"), and so does the confirmation of
branch-and-bound leaves. Branch and bound is not stopped early to leave time for the check:
it may still find a counterexample, and an estimate of the check's cost that is too high
loses proofs that would have been checked in time (docs/certifier.md).

With ``certificate=True`` only DeepPoly (and branch and bound over DeepPoly or beta-CROWN,
whose multipliers the certificate records) may prove, so that the stored bounds are the
ones the checker reproduces; the certificate of every
problem is its split tree (one leaf when the box was proved at once).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.backend import to_device, to_numpy
from nobound.certify.bab import BabConfig, branch_and_bound, repair
from nobound.certify.certificate import (
    Certificate,
    LeafProof,
    TreeNode,
    model_fingerprint,
    problem_certificate,
)
from nobound.certify.checker import check_proofs, checked_network
from nobound.certify.falsify import attack_problems, robustness_attack
from nobound.certify.leaf_confirm import ConfirmerFactory, LeafConfirmer
from nobound.certify.problem import (
    PROOF_TOLERANCE,
    VerificationProblem,
    float64_model,
    robustness_problems,
)
from nobound.certify.replay import ModelReplay, Replay
from nobound.certify.stored_network import StoredNetwork
from nobound.certify.verdicts import CERTIFIED, FALSIFIED, UNKNOWN, Verdict
from nobound.exact.dense import DenseNetwork, dense_network
from nobound.nn import MaxPool2d, ReLU, Sigmoid, Tanh

# A padding row never proves anything: its lower bound is this offset.
_PADDING_OFFSET = -1e300
# Rounds of "split the leaves the rigorous check refused, check again" per problem.
_REPAIRS = 4


@dataclass(frozen=True)
class CertifierConfig:
    timeout: float = 60.0
    max_nodes: int = 20_000
    batch_size: int = 32
    methods: tuple[str, ...] = ("ibp", "crown-ibp", "deeppoly", "alpha-crown")
    bab: bool = True
    bab_method: str = "deeppoly"
    branching: str = "babsr"
    bab_domain: str = "relu"   # "input" splits the box, "auto" does for few inputs (ACAS)
    input_branching: str = "bounds"  # input splitting's dimension rule (BabConfig)
    attack_steps: int = 50
    attack_restarts: int = 3
    robustness_attack_steps: int = 50
    robustness_attack_restarts: int = 3
    certificate: bool = False
    seed: int = 0
    # where the whole-box bounds (IBP ... alpha-CROWN) run: "cpu" or "cuda". The attacks,
    # branch and bound with its LPs, and the rigorous proof check stay on the host.
    device: str = "cpu"
    # skip the rigorous re-check of proofs: faster, but round-off can make it wrong
    allow_roundoff_errors: bool = False


class Certifier:
    """Decides problems about one model (copied to float64 once)."""

    def __init__(self, model: Any, input_shape: tuple[int, ...],
                 config: CertifierConfig | None = None, replay: Replay | None = None) -> None:
        """``replay`` runs the model in its own arithmetic (default: ``model``'s forward
        pass in its own dtype)."""
        self.model = float64_model(model)
        self.input_shape = tuple(int(n) for n in input_shape)
        self.config = config or CertifierConfig()
        if self.config.certificate:
            # beta-CROWN proofs record their α, β and tightened bounds: the checker
            # re-derives them; alpha-CROWN's slopes per sub-problem are not recorded
            self.config = replace(self.config, methods=("deeppoly",), bab_method=(
                "deeppoly" if self.config.bab_method == "alpha-crown"
                else self.config.bab_method))
        self.replay = replay if replay is not None else ModelReplay(model)
        # the bounding stages' copy on the device (the float64 host model itself on "cpu")
        self.bound_model = self.model if self.config.device == "cpu" else \
            copy.deepcopy(self.model).to(self.config.device)
        self._dense: DenseNetwork | None = None
        self._stored: StoredNetwork | None = None
        self._root_bounds: dict[bytes, Any] = {}  # the checker's, per box of one verify()

    @property
    def dense(self) -> DenseNetwork:
        if self._dense is None:
            self._dense = dense_network(self.model, self.input_shape)
        return self._dense

    @property
    def stored(self) -> StoredNetwork:
        """The stored weights as the rigorous checker reads them."""
        if self._stored is None:
            self._stored = checked_network(self.model, self.input_shape)
        return self._stored

    def rejection(self, problem: VerificationProblem, nodes: list[TreeNode],
                  deadline: float = np.inf) -> str:
        """'' when the rigorous checker accepts ``nodes`` as a proof of ``problem`` before
        ``deadline``, else its first reason (the check is skipped with
        ``allow_roundoff_errors``)."""
        if self.config.allow_roundoff_errors:
            return ""
        try:
            stored = self.stored
        except TypeError as error:  # e.g. Sigmoid, MaxPool: no sound check, so no proof
            return f"no rigorous check for this network ({error})"
        report = check_proofs(stored, [problem_certificate(problem, nodes)],
                              reproduce=False, root_cache=self._root_bounds,
                              deadline=deadline)
        return "" if report.valid else report.errors[0]

    def _leaf_confirmer(self, deadline: float = np.inf) -> ConfirmerFactory | None:
        """The checker's view of single leaves, so that branch and bound splits a leaf the
        checker would not prove instead of ending ``unknown`` (None when proofs are not
        checked or the checker cannot read the network); it confirms none after
        ``deadline``."""
        if self.config.allow_roundoff_errors:
            return None
        try:
            stored = self.stored
        except TypeError:
            return None
        return lambda problem, nodes, parents: LeafConfirmer(stored, problem, nodes, parents,
                                                             self._root_bounds, deadline)

    # ---------------------------------------------------------------- robustness
    def certify_sample(self, x: Any, label: int, eps: float, low: float | None = 0.0,
                       high: float | None = 1.0) -> Verdict:
        """Is (x, label) robust on B_ε(x) ∩ [low, high]? Adds natural/adversarial flags."""
        start = time.perf_counter()
        x = np.asarray(to_numpy(x), np.float64).reshape(self.input_shape)
        problems = [replace(p, replay=self.replay)
                    for p in robustness_problems(self.model, x, int(label), eps, low, high)]
        flags = {"natural_correct": True, "adversarial_robust": True}
        for problem in problems:
            found = problem.find_counterexample(x[None])
            if found is not None:
                flags.update(natural_correct=False, adversarial_robust=False)
                return Verdict(FALSIFIED, "natural", time.perf_counter() - start, found,
                               details=flags)
        ran_pgd = eps > 0 and low is not None and high is not None
        if ran_pgd:
            found = robustness_attack(self.model, x, int(label), eps, problems,
                                      self.config.robustness_attack_steps,
                                      self.config.robustness_attack_restarts,
                                      self.config.seed)
            if found is not None:
                flags["adversarial_robust"] = False
                return Verdict(FALSIFIED, "pgd", time.perf_counter() - start, found,
                               details=flags)
        verdict = self.verify(problems, attack=eps > 0 and not ran_pgd, start=start)
        verdict.details.update(flags)
        return verdict

    # ---------------------------------------------------------------- any problems
    def verify(self, problems: list[VerificationProblem], attack: bool = True,
               start: float | None = None) -> Verdict:
        """Prove every problem, or find a counterexample to one (see the module doc)."""
        config = self.config
        start = time.perf_counter() if start is None else start
        problems = [p if p.replay is not None else replace(p, replay=self.replay)
                    for p in problems]
        self._root_bounds = {}
        deadline = start + config.timeout
        proofs: dict[int, list[TreeNode]] = {}
        open_ = []
        for index, problem in enumerate(problems):
            if problem.is_empty:
                proofs[index] = [TreeNode(proof=LeafProof([0.0] * problem.num_rows, [], 0.0,
                                                          "empty"))]
            else:
                open_.append(index)
        if attack and open_:  # the problems of one box in one batched attack
            hit = attack_problems([problems[i] for i in open_], steps=config.attack_steps,
                                  restarts=config.attack_restarts, seed=config.seed,
                                  deadline=deadline)
            if hit is not None:
                return Verdict(FALSIFIED, "pgd", time.perf_counter() - start, hit[1],
                               details={"problem": open_[hit[0]]})
        decided_by = "empty"
        values = {index: -np.inf for index in open_}
        rejections: dict[int, str] = {}  # proofs the rigorous check refused, by problem
        for method in config.methods:
            if not open_:
                break
            if time.perf_counter() > deadline:
                return self._unknown(start, "timeout", values)
            lower, tangents = self._stage_bounds([problems[i] for i in open_], method)
            still_open = []
            for index, rows, slopes in zip(open_, lower, tangents, strict=True):
                row = int(np.argmax(rows))
                values[index] = max(values[index], float(rows[row]))
                if rows[row] > PROOF_TOLERANCE:
                    weights = np.zeros(problems[index].num_rows)
                    weights[row] = 1.0
                    nodes = [TreeNode(proof=LeafProof(weights.tolist(), [], float(rows[row]),
                                                      method, self._recorded(slopes, row)))]
                    rejected = self.rejection(problems[index], nodes, deadline)
                    if not rejected:
                        proofs[index] = nodes
                        decided_by = method
                        continue
                    rejections[index] = f"{method}: {rejected}"
                still_open.append(index)
            open_ = still_open
        bounded = 0
        if open_ and not config.bab:
            reason = "not proved by bounds (branch and bound off)"
            if rejections:
                reason += "; the rigorous check rejected " + "; ".join(
                    f"problem {i} ({why})" for i, why in sorted(rejections.items()))
            return self._unknown(start, reason, values)
        try:
            if open_:  # (every problem proved: no dense form needed, e.g. Sigmoid nets)
                self.dense  # noqa: B018 - branch and bound works on the dense ReLU form
        except TypeError as error:
            return self._unknown(start, f"branch and bound splits ReLUs only ({error})",
                                 values)
        except ValueError as error:  # e.g. a conv net whose dense form is too large
            return self._unknown(start, f"branch and bound cannot run ({error})", values)
        unknown_reason = ""
        shared: dict = {}  # branch and bound's per-box work, shared by the problems
        confirm = self._leaf_confirmer(deadline)
        for index in sorted(open_, key=lambda i: values[i]):
            if time.perf_counter() > deadline:
                return self._unknown(start, "timeout", values, bounded)
            bab_config = BabConfig(method=config.bab_method, batch_size=config.batch_size,
                                   max_nodes=max(1, config.max_nodes - bounded),
                                   branching=config.branching, seed=config.seed,
                                   domain=config.bab_domain,
                                   input_branching=config.input_branching)
            result = branch_and_bound(problems[index], self.dense, bab_config, deadline,
                                      shared, confirm)
            bounded += result.bounded
            if result.status == FALSIFIED:
                return Verdict(FALSIFIED, "bab", time.perf_counter() - start,
                               result.counterexample, bounded=bounded,
                               details={"problem": index})
            if result.status == UNKNOWN:
                values[index] = result.lower_bound
                unknown_reason = unknown_reason or result.reason
                if result.reason == "timeout":
                    break
                continue
            # a tree the search's confirmer already checked whole (the same check_proofs
            # on the same nodes, network, root cache and deadline) is not checked twice
            rejected = "" if result.checked else \
                self.rejection(problems[index], result.nodes, deadline)
            for _ in range(_REPAIRS):  # split the leaves the check refused, check again
                if not rejected or confirm is None or time.perf_counter() > deadline:
                    break
                before = result.bounded
                result = repair(problems[index], self.dense, bab_config, result, confirm,
                                deadline)
                bounded += result.bounded - before
                if result.status != CERTIFIED:
                    break
                rejected = self.rejection(problems[index], result.nodes, deadline)
            if result.status == FALSIFIED:
                return Verdict(FALSIFIED, "bab", time.perf_counter() - start,
                               result.counterexample, bounded=bounded,
                               details={"problem": index})
            if result.status == UNKNOWN:  # the repair ran out of time or nodes
                values[index] = result.lower_bound
                unknown_reason = unknown_reason or result.reason
                if result.reason == "timeout":
                    break
                continue
            if rejected and time.perf_counter() > deadline:  # the check ran out of time
                unknown_reason = "timeout"
                break
            if rejected:
                rejections[index] = f"bab: {rejected}"
                unknown_reason = unknown_reason or (
                    f"the rigorous check rejected the proof of problem {index} ({rejected})")
                continue
            proofs[index] = result.nodes
            decided_by = "bab"
            # proved: its whole-box bound is no longer the lowest open bound of the verdict
            values[index] = np.inf
        if len(proofs) < len(problems):
            if not unknown_reason and not config.bab and rejections:
                unknown_reason = "the rigorous check rejected " + "; ".join(
                    f"problem {i} ({why})" for i, why in sorted(rejections.items()))
            return self._unknown(start, unknown_reason or "timeout", values, bounded)
        certificate = None
        if config.certificate:
            certificate = Certificate(
                model_fingerprint(self.model), self.input_shape,
                [problem_certificate(p, proofs[i]) for i, p in enumerate(problems)],
                {"method": decided_by})
        return Verdict(CERTIFIED, decided_by, time.perf_counter() - start,
                       certificate=certificate, bounded=bounded,
                       details={"proof_check": "skipped" if config.allow_roundoff_errors
                                else "passed"})

    def _unknown(self, start: float, reason: str, values: dict[int, float],
                 bounded: int = 0) -> Verdict:
        lowest = min(values.values()) if values else -np.inf
        return Verdict(UNKNOWN, "none", time.perf_counter() - start, bounded=bounded,
                       reason=reason, lower_bound=lowest)

    def _recorded(self, slopes: dict[int, tuple[np.ndarray, np.ndarray]], row: int
                  ) -> list[list[float]]:
        """A whole-box proof's α entries (:class:`LeafProof`): alpha-CROWN's line slopes of
        row ``row`` on every hidden layer that is one Sigmoid/Tanh — the checker derives
        rigorous intercepts for them ([] where nothing is recorded)."""
        activations = [i for i, layer in enumerate(getattr(self.model, "layers", []))
                       if isinstance(layer, (ReLU, Sigmoid, Tanh, MaxPool2d))]
        if not slopes or len(activations) != self.stored.num_hidden_layers:
            return []  # (hidden layers that chain several operations record nothing)
        return [np.concatenate([slopes[i][0][row].ravel(), slopes[i][1][row].ravel()]).tolist()
                if i in slopes else [] for i in activations]

    def _stage_bounds(self, problems: list[VerificationProblem], method: str
                      ) -> tuple[list[np.ndarray], list[dict[int, tuple[np.ndarray, np.ndarray]]]]:
        """Lower bounds of every row of every problem, one batched call: the problems that
        share a box share one batch element, their rows stacked (a box's intermediate
        bounds are computed once, not once per problem; groups padded to the same rows).
        Also, per problem, alpha-CROWN's S-shape line slopes of its rows (else {})."""
        from nobound.bounds import Box, compute_bounds

        groups: dict[bytes, list[int]] = {}
        for n, problem in enumerate(problems):
            groups.setdefault(problem.lower.tobytes() + problem.upper.tobytes(), []).append(n)
        members = list(groups.values())
        rows = max(sum(problems[n].num_rows for n in group) for group in members)
        outputs = problems[0].spec.shape[1]
        spec = np.zeros((len(members), rows, outputs))
        offset = np.full((len(members), rows), _PADDING_OFFSET)
        places = {}  # problem → (batch element, first row)
        for g, group in enumerate(members):
            row = 0
            for n in group:
                count = problems[n].num_rows
                spec[g, row:row + count] = problems[n].spec
                offset[g, row:row + count] = problems[n].offset
                places[n] = (g, row)
                row += count
        device = self.config.device  # explicit transfers there and back
        box = Box(Tensor(to_device(np.stack([problems[g[0]].lower for g in members]), device)),
                  Tensor(to_device(np.stack([problems[g[0]].upper for g in members]), device)))
        with no_grad():
            result = compute_bounds(self.bound_model, box, method=method,
                                    spec=to_device(spec, device))
        lower = to_numpy(result.lower.data).reshape(len(members), rows) + offset

        def own(array: Any, n: int) -> np.ndarray:  # problem n's rows of (groups, rows, …)
            g, first = places[n]
            return to_numpy(array)[g, first:first + problems[n].num_rows]

        return ([own(lower, n) for n in range(len(problems))],
                [{index: (own(low.data, n), own(high.data, n))
                  for index, (low, high) in result.tangent_slopes.items()}
                 for n in range(len(problems))])


def predict(model: Any, x: Any) -> np.ndarray:
    """Predicted classes of a batch (float64 forward)."""
    with no_grad():
        return np.argmax(to_numpy(model(Tensor(np.asarray(x, np.float64))).data), axis=-1)
