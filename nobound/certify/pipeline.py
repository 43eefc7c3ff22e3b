"""The certifier: cheap answers first, branch and bound last.

Per (input, specification) — a list of :class:`VerificationProblem`, all of which must be
proved —

1. natural prediction (robustness only): is the clean input itself a counterexample?
2. falsification: PGD with restarts (:mod:`nobound.certify.falsify`), replayed in float64;
3. bounds on the whole box, cheapest first: IBP, CROWN-IBP, DeepPoly, alpha-CROWN — all
   open problems in one batched call per method; a problem is proved when one of its
   rows has a positive lower bound;
4. on boxes of few inputs, the falsifier's search of the box (samples, islands,
   multi-scale PGD: :func:`nobound.certify.falsify.search_problems`) for the problems the
   bounds left open — thin counterexample sets PGD misses;
5. branch and bound (:mod:`nobound.certify.bab`) on what is left, most violated first,
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
from typing import TYPE_CHECKING, Any

import numpy as np

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.backend import to_device, to_numpy
from nobound.certify.bab import BabConfig, branch_and_bound, repair
from nobound.certify.certificate import (
    Certificate,
    LeafProof,
    NeuronBound,
    TreeNode,
    model_fingerprint,
    problem_certificate,
)
from nobound.certify.checker import check_proofs, checked_network
from nobound.certify.falsify import (
    SEARCH_ROUNDS,
    SEARCH_SHARE,
    attack_problems,
    robustness_attack,
    search_problems,
)
from nobound.certify.leaf_confirm import ConfirmerFactory, LeafConfirmer
from nobound.certify.problem import (
    PROOF_TOLERANCE,
    VerificationProblem,
    float64_model,
    group_by_box,
    robustness_problems,
)
from nobound.certify.replay import ModelReplay, Replay
from nobound.certify.stored_network import StoredNetwork
from nobound.certify.verdicts import CERTIFIED, FALSIFIED, UNKNOWN, Verdict
from nobound.exact.dense import DenseNetwork, dense_network
from nobound.nn import MaxPool2d, ReLU, Sigmoid, Tanh

if TYPE_CHECKING:
    from nobound.bounds.alpha_crown_intermediate import TightenedLayer

# A padding row never proves anything: its lower bound is this offset.
_PADDING_OFFSET = -1e300
# Rounds of "split the leaves the rigorous check refused, check again" per problem.
_REPAIRS = 4


@dataclass(frozen=True)
class CertifierConfig:
    """How the certifier decides: the time per instance, the whole-box bounds in order, the
    attacks, and branch and bound (``max_nodes``: sub-problems bounded before it gives up,
    its memory budget; the rest as :class:`nobound.certify.bab.BabConfig`)."""

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
    # the falsifier's search of small boxes (≤ 64 inputs) on the problems the whole-box
    # bounds leave open: rounds, and the share of the time left they may take
    search_rounds: int = SEARCH_ROUNDS
    search_share: float = SEARCH_SHARE
    robustness_attack_steps: int = 50
    robustness_attack_restarts: int = 3
    certificate: bool = False
    seed: int = 0
    # where the whole-box bounds (IBP ... alpha-CROWN) run: "cpu" or "cuda". The attacks,
    # branch and bound with its LPs, and the rigorous proof check stay on the host.
    device: str = "cpu"
    # skip the rigorous re-check of proofs: faster, but round-off can make it wrong
    allow_roundoff_errors: bool = False
    # alpha-CROWN on a network with Sigmoid/Tanh layers (no branch and bound splits them):
    # sign steps per layer that tighten every activation's input bounds before the output
    # pass (0: DeepPoly's stay), in at most half the time left (docs/certifier.md)
    intermediate_steps: int = 20


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
                                  deadline=deadline, search_rounds=0)
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
            stage = self._stage_bounds([problems[i] for i in open_], method, deadline)
            still_open = []
            for index, (rows, slopes, tightened) in zip(open_, zip(*stage, strict=True),
                                                        strict=True):
                row = int(np.argmax(rows))
                values[index] = max(values[index], float(rows[row]))
                if rows[row] > PROOF_TOLERANCE:
                    weights = np.zeros(problems[index].num_rows)
                    weights[row] = 1.0
                    nodes = [TreeNode(proof=LeafProof(weights.tolist(), [], float(rows[row]),
                                                      method, self._recorded(slopes, row)),
                                      tightened=tightened)]
                    rejected = self.rejection(problems[index], nodes, deadline)
                    if not rejected:
                        proofs[index] = nodes
                        decided_by = method
                        continue
                    rejections[index] = f"{method}: {rejected}"
                still_open.append(index)
            open_ = still_open
        if attack and open_ and config.search_rounds and time.perf_counter() < deadline:
            # the search of small boxes (falsify.search_problems) only for the problems the
            # whole-box bounds leave open: the ones they prove pay nothing for it
            now = time.perf_counter()
            hit = search_problems([problems[i] for i in open_], rounds=config.search_rounds,
                                  seed=config.seed,
                                  deadline=now + config.search_share * (deadline - now))
            if hit is not None:
                return Verdict(FALSIFIED, "search", time.perf_counter() - start, hit[1],
                               details={"problem": open_[hit[0]]})
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

    @property
    def _hidden_activations(self) -> list[int] | None:
        """The model's activation layers, one per hidden layer of the checked network (so
        a recorded α list is indexed by hidden layer), or None when the two do not match
        (hidden layers that chain several operations record nothing)."""
        activations = [i for i, layer in enumerate(getattr(self.model, "layers", []))
                       if isinstance(layer, (ReLU, Sigmoid, Tanh, MaxPool2d))]
        return activations if len(activations) == self.stored.num_hidden_layers else None

    def _recorded(self, slopes: dict[int, Any], row: int) -> list[list[float]]:
        """A proof's α entries (:class:`LeafProof`, :class:`NeuronBound`): per hidden layer,
        row ``row`` of alpha-CROWN's lines there — a ReLU's lower slopes (an array
        (rows, *n)), a Sigmoid/Tanh's lower- then upper-line slopes (a pair of them), for
        which the checker derives rigorous intercepts — [] where nothing is recorded."""
        activations = self._hidden_activations
        if not slopes or activations is None:
            return []

        def line(value: Any) -> list[float]:
            if isinstance(value, tuple):
                return np.concatenate([value[0][row].ravel(), value[1][row].ravel()]).tolist()
            return value[row].ravel().tolist()

        return [line(slopes[i]) if i in slopes else [] for i in activations]

    def _optimises_intermediate(self, method: str) -> bool:
        """Whether alpha-CROWN tightens the intermediate bounds here: on a network with a
        Sigmoid/Tanh layer whose proofs can record the slopes behind them."""
        if method != "alpha-crown" or self.config.intermediate_steps <= 0 or \
                not any(isinstance(layer, (Sigmoid, Tanh))
                        for layer in getattr(self.model, "layers", [])):
            return False
        try:
            return self._hidden_activations is not None or self.config.allow_roundoff_errors
        except TypeError:  # the checker cannot read the network: nothing would be confirmed
            return self.config.allow_roundoff_errors

    def _stage_bounds(self, problems: list[VerificationProblem], method: str,
                      deadline: float = np.inf
                      ) -> tuple[list[np.ndarray], list[dict[int, Any]], list[list[NeuronBound]]]:
        """Lower bounds of every row of every problem, one batched call: the problems that
        share a box share one batch element, their rows stacked (a box's intermediate
        bounds are computed once, not once per problem; groups padded to the same rows).
        Also, per problem, alpha-CROWN's lines behind its rows (:meth:`_recorded`; else
        {}), and the intermediate bounds it tightened on the problem's box with the slopes
        that proved them (one list shared by the problems of a box; else [])."""
        from nobound.bounds import Box, compute_bounds
        from nobound.bounds.alpha_crown import optimised_model_bounds

        members = group_by_box(problems)
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
        tightened: list[list[NeuronBound]] = [[] for _ in members]
        with no_grad():
            if self._optimises_intermediate(method):
                now = time.perf_counter()
                optimised = optimised_model_bounds(
                    self.bound_model, box, to_device(spec, device),
                    intermediate_steps=self.config.intermediate_steps,
                    deadline=now + (deadline - now) / 2)  # the rest: the proof's check
                result = optimised.bounds
                lines = {i: (tuple(to_numpy(v)[0] for v in value) if isinstance(value, tuple)
                             else to_numpy(value)[0])
                         for i, value in optimised.output_slopes.items()}
                tightened = [self._neuron_bounds(optimised.tightened, g)
                             for g in range(len(members))]
            else:
                result = compute_bounds(self.bound_model, box, method=method,
                                        spec=to_device(spec, device))
                lines = {index: (to_numpy(low.data), to_numpy(high.data))
                         for index, (low, high) in result.tangent_slopes.items()}
        lower = to_numpy(result.lower.data).reshape(len(members), rows) + offset

        def own(array: Any, n: int) -> np.ndarray:  # problem n's rows of (groups, rows, …)
            g, first = places[n]
            return array[g, first:first + problems[n].num_rows]

        def own_lines(value: Any, n: int) -> Any:
            return tuple(own(v, n) for v in value) if isinstance(value, tuple) else own(value, n)

        return ([own(lower, n) for n in range(len(problems))],
                [{i: own_lines(value, n) for i, value in lines.items()}
                 for n in range(len(problems))],
                [tightened[places[n][0]] for n in range(len(problems))])

    def _neuron_bounds(self, layers: list[TightenedLayer], element: int) -> list[NeuronBound]:
        """The tightened intermediate bounds of batch element ``element`` as certificate
        entries: per applied bound, its neuron, side and value and the lines of every
        hidden layer below that proved it (:meth:`_recorded`)."""
        activations = self._hidden_activations
        if activations is None:
            return []
        entries = []
        for layer in layers:
            k = activations.index(layer.index)
            neurons = to_numpy(layer.neurons)
            for side, sign, values in (("lower", 1, layer.lower), ("upper", -1, layer.upper)):
                lines = {i: (tuple(to_numpy(v)[0, element] for v in value)
                             if isinstance(value, tuple) else to_numpy(value)[0, element])
                         for i, value in layer.slopes[side].items()}
                values = to_numpy(values)[0, element]
                for r in np.flatnonzero(to_numpy(layer.applied[side])[0, element]):
                    entries.append(NeuronBound(k, int(neurons[r]), sign,
                                               self._recorded(lines, int(r))[:k], [],
                                               float(sign * values[r])))
        return entries


def predict(model: Any, x: Any) -> np.ndarray:
    """Predicted classes of a batch (float64 forward)."""
    with no_grad():
        return np.argmax(to_numpy(model(Tensor(np.asarray(x, np.float64))).data), axis=-1)
