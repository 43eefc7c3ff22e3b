"""Certificates: the branch-and-bound split tree of every problem, with each leaf's proof.

For each :class:`~nobound.certify.problem.VerificationProblem` the certificate stores the
box, the rows and a tree. Internal nodes split one hidden neuron (k, i) — k counts the
hidden layers of the dense form, i is the flat neuron index — into the child where its
pre-activation is ≥ 0 (first) and the child where it is ≤ 0 (second): the two children
cover their parent, so the leaves cover the box. Each leaf holds a *proof*: row weights
λ ≥ 0 and split multipliers β ≥ 0 such that the lower bound of

    Σ_i λ_i (spec_i · f(x) + offset_i) − Σ_j β_j s_j z_j(x)

over the leaf, computed by back-substitution, is positive (λ = e_i and β = 0 for a leaf
proved by bounding one row; λ, β from the LP dual on fully split leaves; with beta-CROWN
also the lower slopes α of the leaf's ReLUs). ``bound`` is the value the certifier found.
A node's pre-activation bounds are re-derived by the checker (DeepPoly, intersected with
the parent's), or, for a node marked ``inherit``, are the parent's clamped by the split;
``tightened`` entries then tighten single neurons with recorded multipliers (beta-CROWN's
optimised intermediate bounds), layer by layer.

Files are JSON (``.json`` or gzip-compressed ``.json.gz``); the model is identified by a
SHA-256 fingerprint of its parameters in float64.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nobound.backend import to_numpy
from nobound.nn.module import Module

FORMAT = "nobound-certificate/1"


@dataclass(eq=False)
class LeafProof:
    row_weights: list[float]
    betas: list[tuple[int, int, float]]  # (hidden layer k, neuron i, β)
    bound: float
    method: str
    # lower ReLU slopes α ∈ [0, 1] per hidden layer (n_k numbers — a list, or an array
    # while a search holds the tree — used on unstable neurons); [] (or an empty layer)
    # means DeepPoly's α = [u > −l]
    alphas: list[Any] = field(default_factory=list)

    def __eq__(self, other: object) -> bool:
        """Equal when every number is (α as lists or arrays alike)."""
        if not isinstance(other, LeafProof):
            return NotImplemented
        return (self.row_weights, self.betas, self.bound, self.method) == \
            (other.row_weights, other.betas, other.bound, other.method) and \
            len(self.alphas) == len(other.alphas) and \
            all(np.array_equal(np.asarray(a, float), np.asarray(b, float))
                for a, b in zip(self.alphas, other.alphas, strict=True))


@dataclass
class NeuronBound:
    """A bound on one hidden pre-activation z_k[i] on a node's domain, proved by the
    back-substitution of side·z_k[i] through layers < k with these multipliers:
    side +1 proves z ≥ value, side −1 proves z ≤ −value (value = the certifier's)."""

    layer: int
    neuron: int
    side: int
    alphas: list[list[float]]
    betas: list[tuple[int, int, float]]
    value: float


@dataclass
class TreeNode:
    split: tuple[int, int] | None = None        # (hidden layer k, neuron i)
    children: tuple[int, int] | None = None     # (z ≥ 0 child, z ≤ 0 child)
    proof: LeafProof | None = None
    # True: this node's bounds are its parent's, clamped by the split (not re-derived)
    inherit: bool = False
    tightened: list[NeuronBound] = field(default_factory=list)  # applied layer by layer
    # (input dimension d, m): children are the box halves x_d ≤ m and x_d ≥ m
    input_split: tuple[int, float] | None = None


@dataclass
class ProblemCertificate:
    lower: list[float]
    upper: list[float]
    spec: list[list[float]]
    offset: list[float]
    nodes: list[TreeNode]


@dataclass
class Certificate:
    model_fingerprint: str
    input_shape: tuple[int, ...]
    problems: list[ProblemCertificate]
    metadata: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT


def model_fingerprint(model: Module) -> str:
    """SHA-256 of the layer types and every parameter and buffer in float64."""
    digest = hashlib.sha256()
    for layer in getattr(model, "layers", [model]):
        digest.update(type(layer).__name__.encode())
        digest.update(repr(layer).encode())
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(to_numpy(value), np.float64).tobytes())
    return digest.hexdigest()


def problem_certificate(problem: Any, nodes: list[TreeNode]) -> ProblemCertificate:
    return ProblemCertificate(problem.lower.reshape(-1).tolist(),
                              problem.upper.reshape(-1).tolist(), problem.spec.tolist(),
                              problem.offset.tolist(), nodes)


def _listed(value: Any) -> list:
    """JSON for the arrays a search keeps in its proofs (α per layer: an array costs a
    quarter of a list of Python floats while the tree is in memory)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save_certificate(certificate: Certificate, path: str | Path) -> Path:
    path = Path(path)
    text = json.dumps(asdict(certificate), allow_nan=True, default=_listed)
    data = gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def _node(raw: dict[str, Any]) -> TreeNode:
    proof = raw.get("proof")
    tightened = [NeuronBound(int(t["layer"]), int(t["neuron"]), int(t["side"]),
                             [list(a) for a in t["alphas"]], [tuple(b) for b in t["betas"]],
                             float(t["value"])) for t in raw.get("tightened", [])]
    return TreeNode(tuple(raw["split"]) if raw.get("split") is not None else None,
                    tuple(raw["children"]) if raw.get("children") is not None else None,
                    LeafProof(list(proof["row_weights"]),
                              [tuple(b) for b in proof["betas"]], float(proof["bound"]),
                              str(proof["method"]),
                              [list(a) for a in proof.get("alphas", [])])
                    if proof is not None else None,
                    bool(raw.get("inherit", False)), tightened,
                    (int(raw["input_split"][0]), float(raw["input_split"][1]))
                    if raw.get("input_split") is not None else None)


def certificate_from_dict(raw: dict[str, Any]) -> Certificate:
    if raw.get("format") != FORMAT:
        raise ValueError(f"not a nobound certificate (format {raw.get('format')!r})")
    problems = [ProblemCertificate(p["lower"], p["upper"], p["spec"], p["offset"],
                                   [_node(n) for n in p["nodes"]]) for p in raw["problems"]]
    return Certificate(raw["model_fingerprint"], tuple(raw["input_shape"]), problems,
                       raw.get("metadata", {}))


def load_certificate(path: str | Path) -> Certificate:
    path = Path(path)
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return certificate_from_dict(json.loads(data))
