"""Confirm a branch-and-bound leaf with the rigorous checker's arithmetic while searching.

The search bounds sub-domains in plain float64 (:mod:`nobound.certify.bab`,
:mod:`nobound.certify.input_split`); the certifier accepts its tree only after
:mod:`nobound.certify.checker` re-derives every leaf with outward rounding on the stored
weights. The two can disagree on a leaf — round-off near 0, or the checker's own
intermediate bounds (the intersection of its back-substitution with the parent's bounds)
choosing other relaxations, which is not monotone — and a proof found by the search would
then end ``unknown`` although splitting that leaf further would settle it.

So the search asks this module before it closes a leaf: the leaf's bounds are derived the
way :func:`~nobound.certify.checker.check_proofs` derives them — down the path from the
root (the root's bounds from the box, a child's by
:func:`~nobound.certify.checker.node_bounds` with its parent's, or inherited and clamped
by its splits, then the node's recorded tightened bounds; an input split halves the box,
and each half is bounded on its own box alone, as the input-split search does) —
and the leaf counts as proved only if the checker's
:func:`~nobound.certify.checker.leaf_value` of the recorded proof is > 0; otherwise it stays
open and is split again. Nothing here is trusted for the verdict: the whole tree still goes
through ``check_proofs``. The bounds of every node on a path are cached, so the nodes of a
tree are derived once each. After ``deadline`` no node is derived and no leaf confirmed (it
stays open, and the search stops at its next deadline check), so that confirming cannot
carry the search past its deadline by more than one node.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from nobound.certify.certificate import LeafProof, TreeNode, problem_certificate
from nobound.certify.checker import (
    OUT_OF_TIME,
    check_proofs,
    derive_node_bounds,
    input_halves,
    leaf_value,
    recorded_alphas,
    split_betas,
)
from nobound.certify.stored_network import StoredNetwork

Interval = tuple[np.ndarray, np.ndarray]


class LeafConfirmer:
    """The checker's verdict on the leaves of one split tree (one problem's search).

    ``parents`` maps a node index to its parent's (kept by the search as it splits);
    ``root_cache`` is the certifier's cache of the checker's root bounds per box;
    ``deadline`` a ``time.perf_counter`` reading after which no leaf is confirmed."""

    def __init__(self, stored: StoredNetwork, problem: Any, nodes: list[TreeNode],
                 parents: dict[int, int], root_cache: dict[bytes, list[Interval]]
                 | None = None, deadline: float = np.inf) -> None:
        self.stored = stored
        self.deadline = deadline
        self.problem = problem
        self.box = (np.asarray(problem.lower, float).reshape(-1),
                    np.asarray(problem.upper, float).reshape(-1))
        self.spec = np.atleast_2d(np.asarray(problem.spec, float))
        self.offset = np.asarray(problem.offset, float).reshape(-1)
        self.nodes, self.parents = nodes, parents
        self.root_cache = {} if root_cache is None else root_cache
        # node index -> (its bounds or None when malformed, its split signs, its box)
        self._derived: dict[int, tuple[list[Interval] | None, list[np.ndarray], Interval]] = {}

    def _derive(self, index: int, deadline: float = np.inf
                ) -> tuple[list[Interval] | None, list[np.ndarray], Interval] | None:
        """Node ``index``'s (bounds, signs, box), deriving its uncached ancestors first;
        None when ``deadline`` passes before that is done."""
        path = [index]
        while path[-1] not in self._derived and path[-1] in self.parents:
            path.append(self.parents[path[-1]])
        for node_index in reversed(path):
            if node_index in self._derived:
                continue
            if time.perf_counter() > deadline:
                return None
            derived = self._node(node_index, deadline)
            if derived is None:  # out of time inside the node: nothing cached
                return None
            self._derived[node_index] = derived
        return self._derived[index]

    def _node(self, index: int, deadline: float = np.inf
              ) -> tuple[list[Interval] | None, list[np.ndarray], Interval] | None:
        node, sizes = self.nodes[index], self.stored.hidden_sizes
        parent: list[Interval] | None = None
        box_half = False
        if index not in self.parents:  # the root
            signs, box = [np.zeros(n, np.int8) for n in sizes], self.box
        else:
            parent_index = self.parents[index]
            parent, signs, box = self._derived[parent_index]
            above = self.nodes[parent_index]
            if parent is None:
                return None, signs, box
            if above.input_split is not None:
                halves = input_halves(box, above.input_split)
                if halves is None:
                    return None, signs, box
                box = halves[list(above.children).index(index)]
                box_half = True
            elif above.split is not None:
                k, neuron = int(above.split[0]), int(above.split[1])
                signs = [s.copy() for s in signs]
                signs[k][neuron] = 1 if above.children[0] == index else -1
        if node.proof is None and node.input_split is not None:
            return [], signs, box  # its halves derive their bounds on their own boxes
        bounds = derive_node_bounds(self.stored, box, signs, parent, node, self.root_cache,
                                    deadline, box_half)
        if bounds is OUT_OF_TIME:
            return None
        return (None if isinstance(bounds, str) else bounds), signs, box

    def box_of(self, index: int) -> Interval:
        """Node ``index``'s input box (the problem's, halved by the input splits above it)."""
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            return self._derive(index)[2]

    def refused(self) -> list[int]:
        """The leaves whose proofs the checker would not accept: the whole tree's check
        (:func:`~nobound.certify.checker.check_proofs`, its leaves in stacks) names them.
        After ``deadline`` every leaf counts as refused (the check did not finish)."""
        report = check_proofs(self.stored, [problem_certificate(self.problem, self.nodes)],
                              reproduce=False, root_cache=self.root_cache,
                              deadline=self.deadline)
        if report.out_of_time:
            return [index for index, node in enumerate(self.nodes) if node.proof is not None]
        return sorted(index for _, index in report.refused)

    def proves(self, index: int, proof: LeafProof) -> bool:
        """Would the checker accept ``proof`` as the proof of leaf ``index``?"""
        sizes = self.stored.hidden_sizes
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            derived = self._derive(index, self.deadline)
            if derived is None:  # out of time: the leaf stays open
                return False
            bounds, signs, box = derived
            if bounds is None:
                return False
            if any(np.any(lo > hi) for lo, hi in bounds):
                return True  # the checker accepts a leaf whose domain is empty
            alphas = recorded_alphas(proof.alphas, sizes)
            betas = split_betas(proof.betas, signs, sizes)
            if alphas is None or betas is None:
                return False
            value = leaf_value(self.stored, box, bounds, self.spec, self.offset,
                               np.asarray(proof.row_weights, float), betas, alphas)
        return bool(value > 0)


# What the certifier hands to a search: (problem, the tree's nodes, child -> parent) to a
# confirmer for that tree.
ConfirmerFactory = Callable[[Any, list[TreeNode], dict[int, int]], LeafConfirmer]
