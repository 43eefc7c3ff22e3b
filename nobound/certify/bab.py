"""Branch and bound for one :class:`VerificationProblem`: ReLU splits, or input splits.

How a sub-domain is bounded is ``BabConfig.method``: DeepPoly or alpha-CROWN through
:mod:`nobound.bounds` (:mod:`nobound.certify.subproblems`), or beta-CROWN on the dense
network (:mod:`nobound.certify.beta_crown`: split constraints as multipliers β inside the
bound, α and β optimised, children warm-started from their parent). Which neuron to split
is ``branching`` (:mod:`nobound.certify.branching`, or FSB in :mod:`nobound.certify.fsb`).
For networks with few inputs ``domain="input"`` (or ``"auto"``) hands the problem to
:mod:`nobound.certify.input_split` instead. What follows is the ReLU-split search.

The box is the root sub-domain. A sub-domain whose best row has a positive lower bound
is proved. Otherwise an unstable neuron z (l < 0 < u) is split into z ≥ 0 and z ≤ 0
(:mod:`nobound.certify.branching`); the children cover the parent, and each is bounded
with its splits and its parent's pre-activation bounds (valid on it), so its intermediate
bounds only tighten. Sub-domains are processed best-first — lowest bound first, the ones
most likely to hide a counterexample and the ones that decide the final bound — popping
up to ``batch_size`` at a time (the number that bounds fastest per sub-problem, measured
as the search runs) and bounding all their children in one batched relaxation call
(:mod:`nobound.certify.subproblems`).

A sub-domain with no unstable neuron left is affine: its LP (:mod:`nobound.certify.leaf_lp`)
either proves it with dual multipliers or yields a candidate. Candidates — each child's
linear-bound minimiser, LP minimisers, and a PGD run from the worst sub-domains' minimisers
every ``attack_every`` rounds (skipped while these runs have taken more than
``attack_share`` of the search's time) — are replayed in float64; a replayed violation
ends the search as ``falsified``. The search ends ``unknown`` at the deadline (a round only pops
as many sub-domains as the last measured time per sub-problem lets it bound before the
deadline) or after ``max_nodes`` bounded sub-problems, ``certified`` when no open
sub-domain is left. Every bounded sub-domain becomes a node of the split tree that
certificates store.
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from nobound.backend import random_stream
from nobound.certify.beta_crown import (
    Multipliers,
    SplitDomains,
    input_coefficients,
    optimise,
)
from nobound.certify.beta_crown_intermediate import tighten_intermediate
from nobound.certify.branching import choose_neurons, clamp_to_splits, unstable_mask
from nobound.certify.certificate import LeafProof, NeuronBound, TreeNode
from nobound.certify.falsify import attack_problem
from nobound.certify.fsb import choose_by_children
from nobound.certify.input_split import (
    DIMENSION_RULES,
    MAX_SPLIT_INPUTS,
    input_split_search,
    repair_refused_leaves,
)
from nobound.certify.leaf_confirm import ConfirmerFactory
from nobound.certify.leaf_lp import MAX_LP_INPUTS, solve_leaf
from nobound.certify.problem import PROOF_TOLERANCE, Counterexample, VerificationProblem
from nobound.certify.subproblems import BoundedSubproblems, Interval, bound_subproblems
from nobound.exact.dense import DenseNetwork

BAB_METHODS = ("deeppoly", "alpha-crown", "beta-crown")
BRANCHING_RULES = ("babsr", "intercept", "fsb")


@dataclass
class BabConfig:
    method: str = "deeppoly"    # or "alpha-crown", "beta-crown" (split constraints, β)
    batch_size: int = 32        # at most this many sub-domains split per round (adaptive)
    max_nodes: int = 20_000     # bounded sub-problems before giving up
    branching: str = "babsr"    # or "intercept", "fsb" (filtered smart branching)
    attack_every: int = 5       # rounds between PGD runs on the worst sub-domains
    attack_steps: int = 20
    # those runs take at most this share of the search's time so far (a round due for an
    # attack skips it while they are over): on properties that hold they find nothing
    attack_share: float = 0.05
    seed: int = 0
    # beta-CROWN: "inherit" keeps the parent's intermediate bounds (clamped by the new
    # split: cheap), "recompute" re-runs DeepPoly on each child first (tighter, and what
    # the certificate checker re-derives)
    intermediate: str = "inherit"
    optimise_alpha: bool = True  # False: DeepPoly's slopes, β only (checkable proofs)
    beta_steps: int = 20         # projected-gradient steps per round (children warm-started)
    root_steps: int = 50
    tighten_steps: int = 10      # "inherit": optimise the root's intermediate bounds too
    # beta-CROWN's root (tightening, then its rows' α/β) stops optimising after this share
    # of the time left (the rest is for branching); 1.0 lets it use all of it
    root_share: float = 0.5
    fsb_candidates: int = 3      # FSB: children bounded for the top-k scored neurons
    # with a rigorous checker (``confirm``): "tree" checks the proved leaves once, in one
    # stacked check of the finished tree, reopening the leaves it refuses (then confirming
    # every later leaf alone); "leaf" confirms each leaf as it is closed
    leaf_checks: str = "tree"
    # what to split: "relu", "input" (nobound.certify.input_split), or "auto" = the input
    # for networks with at most MAX_SPLIT_INPUTS inputs (no certificate: ReLU splits only)
    domain: str = "relu"
    # input splitting's dimension choice (nobound.certify.input_split): "bounds" bounds the
    # halves along every input and keeps the best pair, "gradient" estimates by |a_i| width
    input_branching: str = "bounds"

    def __post_init__(self) -> None:
        if self.method not in BAB_METHODS:
            raise ValueError(f"unknown branch-and-bound method {self.method!r}; "
                             f"choose from {', '.join(BAB_METHODS)}")
        if self.branching not in BRANCHING_RULES:
            raise ValueError(f"unknown branching rule {self.branching!r}; "
                             f"choose from {', '.join(BRANCHING_RULES)}")
        if self.input_branching not in DIMENSION_RULES:
            raise ValueError(f"unknown input branching {self.input_branching!r}; "
                             f"choose from {', '.join(DIMENSION_RULES)}")
        if self.domain not in ("auto", "relu", "input"):
            raise ValueError("domain must be 'auto', 'relu' or 'input'")
        if self.intermediate not in ("inherit", "recompute"):
            raise ValueError("intermediate must be 'inherit' or 'recompute'")
        if self.leaf_checks not in ("tree", "leaf"):
            raise ValueError("leaf_checks must be 'tree' or 'leaf'")


@dataclass
class BabResult:
    status: str                            # "certified" | "falsified" | "unknown"
    nodes: list[TreeNode]
    bounded: int
    counterexample: Counterexample | None = None
    lower_bound: float = -np.inf           # the lowest open bound when stopped
    reason: str = ""
    seconds: float = 0.0
    rounds: int = 0
    rejected: int = 0  # leaves the search proved and the rigorous checker did not
    # True when the rigorous checker accepted exactly these nodes as the proof (the
    # confirmer's check of the finished tree, under the certifier's deadline)
    checked: bool = False


@dataclass(order=True)
class _Open:
    value: float
    order: int
    tree_index: int = field(compare=False)
    signs: list[np.ndarray] = field(compare=False)
    bounds: list[Interval] = field(compare=False)
    lower: np.ndarray = field(compare=False)
    minimiser: np.ndarray | None = field(compare=False)
    multipliers: Multipliers | None = field(compare=False, default=None)  # α, β (K, n_j)


def _neuron_bound(record: tuple) -> NeuronBound:
    """A certificate entry from a tighten_intermediate record (β kept where nonzero)."""
    _, layer, neuron, side, alphas, betas, value = record
    return NeuronBound(layer, neuron, side, [a.tolist() for a in alphas],
                       [(j, int(i), float(b[i])) for j, b in enumerate(betas)
                        for i in np.flatnonzero(b)], value)


class _BatchSizer:
    """How many sub-domains to split per round: the cheapest per sub-problem, measured.

    Batching amortises Python overhead but enlarges the back-substitution tensors; which
    wins depends on the network and the machine (docs/benchmarks.md: batching helps the
    FC net, hurts cnn3 on a CPU). Sizes 1, 2, 4, … up to the maximum are tried in turn
    while the time per sub-problem keeps falling; then the best one measured is kept, its
    time tracked by an exponential average so a slower phase can move the choice.
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self.times: dict[int, float] = {}
        self.current = 1
        self.exploring = True

    def record(self, size: int, seconds_per_subproblem: float) -> None:
        if size != self.current:  # a partial round (few open sub-domains) says little
            return
        old = self.times.get(size)
        self.times[size] = seconds_per_subproblem if old is None else \
            0.7 * old + 0.3 * seconds_per_subproblem
        best = min(self.times, key=self.times.get)
        if self.exploring and best == size and size < self.maximum:
            self.current = min(2 * size, self.maximum)
        else:
            self.exploring = False
            self.current = best


# A sub-domain is closed as empty only when some lower bound exceeds its upper bound by more
# than round-off could explain: the rigorous checker re-derives the bounds with outward
# rounding, and a domain empty by a hair in float64 is not empty to it (its "empty" proof
# would be refused, and the search, seeing the same bounds, would close it as empty again).
EMPTY_MARGIN = 1e-9


def _clearly_empty(bounds: list[Interval]) -> bool:
    return any(np.any(lo - hi > EMPTY_MARGIN * (1.0 + np.abs(lo) + np.abs(hi)))
               for lo, hi in bounds)


def _fully_fixed(bounds: list[Interval], signs: list[np.ndarray]) -> bool:
    return not any(unstable_mask(b, s).any() for b, s in zip(bounds, signs, strict=True))


class _Search:
    def __init__(self, problem: VerificationProblem, dense: DenseNetwork, config: BabConfig,
                 deadline: float, shared: dict | None = None,
                 confirm: ConfirmerFactory | None = None) -> None:
        self.problem, self.dense, self.config, self.deadline = problem, dense, config, deadline
        self.rejected = 0  # leaves the search proved and the checker did not
        self.shared = {} if shared is None else shared
        self.nodes: list[TreeNode] = []
        self.parents: dict[int, int] = {}
        self.confirm = None if confirm is None else confirm(problem, self.nodes, self.parents)
        # leaves proved but not yet checked ("tree" leaf checks), kept to reopen if refused
        self.deferred = self.confirm is not None and config.leaf_checks == "tree"
        self.unchecked: dict[int, _Open] = {}
        self.tree_checked = False
        self.heap: list[_Open] = []
        self.order = itertools.count()
        self.bounded = 0
        self.bounding_seconds = 0.0  # of the last expand's choice and bounding call
        self.unresolved = 0
        self.root_tightened: list[NeuronBound] = []
        # seconds of the root's one-time work (its intermediate bounds, DeepPoly then
        # tightened): not what a child costs, so not in the first round's time estimate
        self.root_setup_seconds = 0.0
        # beta-CROWN that keeps the parents' bounds: children say so to the checker
        self.inherit = config.method == "beta-crown" and config.intermediate == "inherit"

    def new_node(self, inherit: bool = False) -> int:
        self.nodes.append(TreeNode(inherit=inherit))
        return len(self.nodes) - 1

    def confirmed(self, index: int) -> bool:
        """Does the rigorous checker prove node ``index``'s leaf proof (no confirmer: the
        search's own bound decides)? A leaf it does not prove is split again."""
        return self.confirm is None or self.confirm.proves(index, self.nodes[index].proof)

    def prove(self, index: int, lower: np.ndarray, multipliers: Multipliers | None) -> None:
        row = int(np.argmax(lower))
        weights = np.zeros(self.problem.num_rows)
        weights[row] = 1.0
        betas = [] if multipliers is None else [
            (k, int(neuron), float(beta[row, neuron]))
            for k, beta in enumerate(multipliers.beta) for neuron in np.flatnonzero(beta[row])]
        # arrays, not lists: a tree of thousands of proved leaves is held until it is checked
        alphas = [] if multipliers is None else [np.array(a[row], np.float64)
                                                 for a in multipliers.alpha]
        self.nodes[index].proof = LeafProof(weights.tolist(), betas, float(lower[row]),
                                            self.config.method, alphas)

    def settle(self, index: int, signs: list[np.ndarray], bounds: list[Interval],
               lower: np.ndarray, minimiser: np.ndarray | None,
               multipliers: Multipliers | None = None) -> Counterexample | None:
        """Prove, solve or queue one freshly bounded sub-domain."""
        if lower.max() > PROOF_TOLERANCE:
            self.prove(index, lower, multipliers)
            if self.deferred:  # checked with the finished tree (check_tree); a reopened
                # leaf restarts from DeepPoly's slopes (the multipliers are only a warm
                # start, and thousands of them would be held until then)
                self.unchecked[index] = self.open_entry(index, signs, bounds, lower,
                                                        minimiser, None)
                return None
            if self.confirmed(index):
                return None
            self.nodes[index].proof = None  # the checker disagrees: split it further
            self.rejected += 1
        return self.queue(index, signs, bounds, lower, minimiser, multipliers)

    def queue(self, index: int, signs: list[np.ndarray], bounds: list[Interval],
              lower: np.ndarray, minimiser: np.ndarray | None,
              multipliers: Multipliers | None) -> Counterexample | None:
        """Close an unproved sub-domain (empty, or affine: its LP) or queue it."""
        if _clearly_empty(bounds):
            weights = [0.0] * self.problem.num_rows
            self.nodes[index].proof = LeafProof(weights, [], 0.0, "empty")
            return None
        if _fully_fixed(bounds, signs):
            return self.solve_fixed(index, signs, bounds)
        heapq.heappush(self.heap, self.open_entry(index, signs, bounds, lower, minimiser,
                                                  multipliers))
        return None

    def open_entry(self, index: int, signs: list[np.ndarray], bounds: list[Interval],
                   lower: np.ndarray, minimiser: np.ndarray | None,
                   multipliers: Multipliers | None) -> _Open:
        if multipliers is not None:  # only a warm start: float32 halves an open domain
            multipliers = Multipliers([a.astype(np.float32) for a in multipliers.alpha],
                                      [b.astype(np.float32) for b in multipliers.beta])
        return _Open(float(lower.max()), next(self.order), index, signs, bounds, lower,
                     minimiser, multipliers)

    def check_tree(self) -> tuple[bool, Counterexample | None]:
        """The rigorous check of the finished tree (its leaves in stacks): the leaves it
        refuses go back to the queue to be split further (or to their LP when affine), and
        every leaf closed after that is confirmed alone. (False, None) when the check ran
        out of time (the search must stop); a counterexample from a reopened leaf's LP."""
        refused = self.confirm.refused()
        if time.perf_counter() > self.deadline:  # an unfinished check refuses everything
            return False, None
        reopened = [index for index in refused if index in self.unchecked]
        self.rejected += len(reopened)
        self.deferred = self.deferred and not reopened
        for index in reopened:
            self.nodes[index].proof = None
            entry = self.unchecked.pop(index)
            found = self.queue(index, entry.signs, entry.bounds, entry.lower,
                               entry.minimiser, entry.multipliers)
            if found is not None:
                return True, found
        # the tree is accepted as it stands only if nothing was refused (a refused leaf
        # the search cannot reopen — an LP leaf — leaves it to the certifier's check)
        self.tree_checked = not refused
        self.unchecked.clear()
        return True, None

    def solve_fixed(self, index: int, signs: list[np.ndarray],
                    bounds: list[Interval]) -> Counterexample | None:
        if self.dense.input_size > MAX_LP_INPUTS:
            self.unresolved += 1
            return None
        active = [lo >= 0 for lo, _ in bounds]
        solution = solve_leaf(self.dense, self.problem.lower.reshape(-1),
                              self.problem.upper.reshape(-1), self.problem.spec,
                              self.problem.offset, active, signs)
        if solution.bound > PROOF_TOLERANCE:
            self.nodes[index].proof = LeafProof(
                solution.row_weights.tolist(),
                [(k, i, b) for (k, i), b in solution.betas.items()],
                float(solution.bound), "lp")
            if self.confirmed(index):
                return None
            self.nodes[index].proof = None
            self.rejected += 1
        if solution.point is not None:
            found = self.problem.find_counterexample(solution.point)
            if found is not None:
                return found
        self.unresolved += 1  # the LP, the replay and the checker disagree: undecided
        return None

    def expand(self, parents: list[_Open]) -> Counterexample | None:
        """Split each parent on one neuron and bound all children in one batched call.
        ``bounding_seconds``: the time of the choice and the bounding call (the part the
        batch size amortises; settling the children — leaf LPs, the checker — is not)."""
        bounding_start = time.perf_counter()
        objectives = np.stack([self.problem.spec[int(np.argmax(p.lower))] for p in parents])
        stacked_bounds = [(np.stack([p.bounds[k][0] for p in parents]),
                           np.stack([p.bounds[k][1] for p in parents]))
                          for k in range(len(parents[0].bounds))]
        stacked_signs = [np.stack([p.signs[k] for p in parents])
                         for k in range(len(parents[0].signs))]
        if self.config.branching == "fsb":
            choices = choose_by_children(self.problem, self.dense, stacked_bounds,
                                         stacked_signs, self._stacked_multipliers(parents),
                                         objectives, self.config.fsb_candidates)
        else:
            choices = choose_neurons(self.dense, stacked_bounds, stacked_signs, objectives,
                                     self.config.branching)
        child_signs, child_known, child_nodes, child_start = [], [], [], []
        for parent, choice in zip(parents, choices, strict=True):
            if choice is None:  # cannot happen: fully fixed domains are never queued
                raise RuntimeError("a queued sub-domain has no unstable neuron")
            k, neuron = choice
            children = []
            for sign in (1, -1):
                signs = [s.copy() for s in parent.signs]
                signs[k][neuron] = sign
                child_signs.append(signs)
                child_known.append(parent.bounds)
                child_start.append(parent.multipliers)
                children.append(self.new_node(self.inherit))
                self.parents[children[-1]] = parent.tree_index
            self.nodes[parent.tree_index].split = (k, neuron)
            self.nodes[parent.tree_index].children = (children[0], children[1])
            child_nodes += children
        layers = range(len(parents[0].signs))
        signs = [np.stack([s[k] for s in child_signs]) for k in layers]
        known = [(np.stack([b[k][0] for b in child_known]),
                  np.stack([b[k][1] for b in child_known])) for k in layers]
        if self.config.method == "beta-crown":
            result, multipliers = self.bound_with_beta(signs, known, child_start,
                                                       self.config.beta_steps)
        else:
            result = bound_subproblems(self.problem, self.dense, signs, known,
                                       self.config.method)
            multipliers = None
        self.bounding_seconds = time.perf_counter() - bounding_start
        self.bounded += len(child_nodes)
        if result.minimisers is not None:
            found = self.problem.find_counterexample(result.minimisers)
            if found is not None:
                return found
        for n, index in enumerate(child_nodes):
            bounds = [(lo[n], hi[n]) for lo, hi in result.bounds]
            minimiser = None if result.minimisers is None else result.minimisers[n]
            found = self.settle(index, child_signs[n], bounds, result.lower[n], minimiser,
                                None if multipliers is None else multipliers.take(n))
            if found is not None:
                return found
        return None

    @staticmethod
    def _stacked_multipliers(parents: list[_Open]) -> Multipliers | None:
        if any(p.multipliers is None for p in parents):
            return None
        layers = range(len(parents[0].multipliers.alpha))
        return Multipliers([np.stack([p.multipliers.alpha[k] for p in parents]) for k in layers],
                           [np.stack([p.multipliers.beta[k] for p in parents]) for k in layers])

    def bound_with_beta(self, signs: list[np.ndarray], known: list[Interval] | None,
                        starts: list[Multipliers | None], steps: int
                        ) -> tuple[BoundedSubproblems, Multipliers]:
        """beta-CROWN bounds of N sub-domains (signs (N, n_j)), warm-started from ``starts``
        (the parents' multipliers, or None: DeepPoly's slopes and β = 0)."""
        problem, count = self.problem, signs[0].shape[0]
        setup_start = time.perf_counter()
        tighten = known is None and self.config.intermediate == "inherit" and \
            self.config.tighten_steps > 0
        # the root's bounds depend on the box only: problems sharing a box share them
        key = (problem.box_key, self.config.tighten_steps)
        if tighten and key in self.shared:
            bounds, self.root_tightened = self.shared[key]
        elif known is None or self.config.intermediate == "recompute":
            bounds = bound_subproblems(problem, self.dense, signs, known, "deeppoly").bounds
        else:
            bounds = clamp_to_splits(known, signs)
        domains = SplitDomains([lo for lo, _ in bounds], [hi for _, hi in bounds], signs,
                               problem.lower.reshape(-1), problem.upper.reshape(-1))
        # the root's optimisation ends at its share of the time left: tightening the
        # intermediate bounds (the dearer part) gets three quarters of it, the rows the rest
        root_end = tighten_end = np.inf
        if known is None and np.isfinite(self.deadline):
            now = time.perf_counter()
            root_end = now + self.config.root_share * max(0.0, self.deadline - now)
            tighten_end = now + 0.75 * (root_end - now)
        if tighten and key not in self.shared:
            records: list = []
            domains = tighten_intermediate(self.dense, domains, self.config.tighten_steps,
                                           records=records, deadline=tighten_end)
            bounds = list(zip(domains.lower, domains.upper, strict=True))
            self.root_tightened = [_neuron_bound(r) for r in records]
            self.shared[key] = (bounds, self.root_tightened)
        if known is None:
            self.root_setup_seconds = time.perf_counter() - setup_start
        objective = np.broadcast_to(problem.spec, (count, *problem.spec.shape))
        offset = np.broadcast_to(problem.offset, (count, problem.num_rows))
        start = None
        if all(s is not None for s in starts):
            layers = range(len(signs))
            start = Multipliers([np.stack([s.alpha[k] for s in starts]).astype(np.float64)
                                 for k in layers],
                                [np.stack([s.beta[k] for s in starts]).astype(np.float64)
                                 for k in layers])
        # a sub-domain proved (its bound above the tolerance) stops there; the checker
        # confirms its leaf with the multipliers of that iterate
        lower, best = optimise(self.dense, domains, objective, offset, start, steps,
                               optimise_alpha=self.config.optimise_alpha, deadline=root_end,
                               settled_above=PROOF_TOLERANCE)
        coefficients = input_coefficients(self.dense, domains, objective, offset, best)
        chosen = coefficients[np.arange(count), np.argmax(lower, axis=1)]
        minimisers = np.where(chosen < 0, problem.upper.reshape(1, -1),
                              problem.lower.reshape(1, -1)).reshape(count, *problem.input_shape)
        return BoundedSubproblems(lower, bounds, minimisers), best

    def attack_worst(self, round_index: int) -> Counterexample | None:
        """PGD from the bound-minimising inputs of the most violated sub-domains, and from
        random points near them (restarts seeded where the bound says a violation hides)."""
        worst = heapq.nsmallest(8, self.heap)
        starts = np.stack([w.minimiser for w in worst if w.minimiser is not None] or
                          [(self.problem.lower + self.problem.upper) / 2])
        rng = random_stream(self.config.seed, round_index, name="bab-attack")
        width = self.problem.upper - self.problem.lower
        nearby = starts + 0.25 * width * rng.uniform(-1, 1, starts.shape)
        return attack_problem(self.problem, np.concatenate([starts, nearby]),
                              steps=self.config.attack_steps, restarts=0,
                              seed=self.config.seed + round_index, deadline=self.deadline)


def _splits_input(config: BabConfig, dense: DenseNetwork) -> bool:
    return config.domain == "input" or (config.domain == "auto"
                                        and dense.input_size <= MAX_SPLIT_INPUTS)


def branch_and_bound(problem: VerificationProblem, dense: DenseNetwork,
                     config: BabConfig | None = None, deadline: float | None = None,
                     shared: dict | None = None,
                     confirm: ConfirmerFactory | None = None) -> BabResult:
    """Decide ``problem`` by branch and bound (see the module docstring). ``shared``: a
    dict kept across the problems of one property (same network), where beta-CROWN keeps
    the root's tightened bounds of each box. ``confirm``: the rigorous checker's view of
    single leaves (:mod:`nobound.certify.leaf_confirm`); a leaf it does not prove is split
    further instead of closed."""
    config = config or BabConfig()
    start = time.perf_counter()
    deadline = np.inf if deadline is None else deadline
    if _splits_input(config, dense):
        found = input_split_search(problem, dense, deadline, config.max_nodes,
                                   attack_every=config.attack_every,
                                   attack_steps=config.attack_steps, seed=config.seed,
                                   dimension_rule=config.input_branching)
        return BabResult(found["status"], found["nodes"], found["bounded"],
                         found["counterexample"],
                         found["lower_bound"], found["reason"], found["seconds"],
                         found["rounds"])
    search = _Search(problem, dense, config, deadline, shared, confirm)

    def finish(status: str, reason: str = "", counterexample: Counterexample | None = None,
               rounds: int = 0) -> BabResult:
        lowest = search.heap[0].value if search.heap else np.inf
        return BabResult(status, search.nodes, search.bounded, counterexample, lowest, reason,
                         time.perf_counter() - start, rounds, search.rejected,
                         checked=status == "certified" and search.tree_checked)

    signs = [np.zeros((1, w.shape[0]), np.int8) for w in dense.weights[:-1]]
    root_start = time.perf_counter()
    root_multipliers = None
    if config.method == "beta-crown":
        root, best = search.bound_with_beta(signs, None, [None], config.root_steps)
        root_multipliers = best.take(0)
    else:
        root = bound_subproblems(problem, dense, signs, None, config.method)
    # refined after every round
    per_subproblem = time.perf_counter() - root_start - search.root_setup_seconds
    sizes = _BatchSizer(config.batch_size)
    attack_seconds = 0.0  # spent in the search's attacks (attack_share)
    search.bounded = 1
    index = search.new_node()
    search.nodes[index].tightened = search.root_tightened
    found = problem.find_counterexample(root.minimisers) if root.minimisers is not None \
        else None
    if found is None:
        found = search.settle(index, [s[0] for s in signs],
                              [(lo[0], hi[0]) for lo, hi in root.bounds], root.lower[0],
                              None if root.minimisers is None else root.minimisers[0],
                              root_multipliers)
    if found is not None:
        return finish("falsified", "counterexample", found)
    for round_index in itertools.count(1):
        if not search.heap and search.unchecked:  # finished: check the deferred leaves
            in_time, found = search.check_tree()
            if found is not None:
                return finish("falsified", "counterexample", found, round_index)
            if not in_time:
                return finish("unknown", "timeout", rounds=round_index)
        if not search.heap:
            break
        search.tree_checked = False  # the tree grows again
        if time.perf_counter() > deadline:
            return finish("unknown", "timeout", rounds=round_index)
        if search.bounded >= config.max_nodes:
            return finish("unknown", "node limit", rounds=round_index)
        room = max(1, (config.max_nodes - search.bounded) // 2)
        if per_subproblem > 0 and np.isfinite(deadline):  # keep each call inside the time
            affordable = int((deadline - time.perf_counter()) / (2 * per_subproblem))
            if affordable < 1:
                return finish("unknown", "timeout", rounds=round_index)
            room = min(room, affordable)
        parents = [heapq.heappop(search.heap)
                   for _ in range(min(sizes.current, len(search.heap), room))]
        round_start = time.perf_counter()
        found = search.expand(parents)
        per_subproblem = (time.perf_counter() - round_start) / (2 * len(parents))
        # the batch size is chosen by the bounding alone: settling the children costs the
        # same per child at any batch size, and its noise (leaves the checker confirms)
        # would stop the search for the best size early
        sizes.record(len(parents), search.bounding_seconds / (2 * len(parents)))
        if found is None and config.attack_every and round_index % config.attack_every == 0 \
                and search.heap and \
                attack_seconds <= config.attack_share * (time.perf_counter() - start):
            attack_start = time.perf_counter()
            found = search.attack_worst(round_index)
            attack_seconds += time.perf_counter() - attack_start
        if found is not None:
            return finish("falsified", "counterexample", found, round_index)
    if search.unresolved:
        return finish("unknown", f"{search.unresolved} sub-domains undecided by round-off")
    return finish("certified")


def repair(problem: VerificationProblem, dense: DenseNetwork, config: BabConfig,
           result: BabResult, confirm: ConfirmerFactory, deadline: float) -> BabResult:
    """A certified split tree that the rigorous check refused, with every refused leaf
    split again (input-split trees: :func:`nobound.certify.input_split.repair_refused_leaves`;
    a ReLU-split search already confirms its leaves as it closes them, so its tree is
    returned unchanged). The result is ``certified`` only when every refused leaf was
    re-proved by the search; it must be checked again."""
    parents = {int(c): i for i, node in enumerate(result.nodes) if node.children
               for c in node.children}
    confirmer = confirm(problem, result.nodes, parents)
    refused = confirmer.refused()
    if not refused or not _splits_input(config, dense):
        return result
    boxes = {i: confirmer.box_of(i) for i in refused}
    found = repair_refused_leaves(problem, dense, result.nodes, boxes, deadline,
                                  max(1, config.max_nodes - len(result.nodes)),
                                  attack_every=config.attack_every,
                                  attack_steps=config.attack_steps, seed=config.seed,
                                  dimension_rule=config.input_branching)
    return BabResult(found["status"], found["nodes"], result.bounded + found["bounded"],
                     found["counterexample"], found["lower_bound"], found["reason"],
                     result.seconds + found["seconds"], result.rounds, len(refused))
