"""VNNLIB properties: input boxes and disjunctions of linear output constraints.

A VNNLIB file (the VNN-COMP property format, a subset of SMT-LIB) declares the network's
inputs ``X_i`` and outputs ``Y_j`` and asserts constraints; the conjunction of all asserts
describes the **unsafe set**. Verification means proving that set empty: no input in the
box drives the outputs into it.

Parsing turns the asserts into disjunctive normal form, a list of :class:`Disjunct`, each

    { x : lower ≤ x ≤ upper  and  spec_i · y + offset_i ≤ 0 for every row i },  y = f(x),

so the property holds (``unsat``) iff for every disjunct and every x in its box some row has
spec_i · f(x) + offset_i > 0. Atoms are ``(<= a b)`` / ``(>= a b)`` (``<`` and ``>`` are read
as non-strict, which only enlarges the unsafe set, so a proof stays a proof) over linear
terms: numbers, variables, ``(+ …)``, ``(- a b)``, ``(- a)`` and ``(* c a)`` with a constant
factor. Input atoms must bound one variable by a constant (they form boxes); output atoms
must not mention inputs. Every error names the line of the offending token.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Larger DNFs come from pathological nestings of ``or`` under ``and``; refuse them.
MAX_DISJUNCTS = 100_000

_TOKEN = re.compile(r";[^\n]*|\(|\)|[^\s()]+|\n|[ \t\r\f\v]+")
_VARIABLE = re.compile(r"^(X|Y)_(\d+)$")


class VNNLibError(ValueError):
    """A malformed or unsupported VNNLIB property; the message starts with the line number."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass
class Disjunct:
    """One piece of the unsafe set (see the module docstring)."""

    input_lower: np.ndarray   # (n_inputs,)
    input_upper: np.ndarray   # (n_inputs,)
    spec: np.ndarray          # (rows, n_outputs)
    offset: np.ndarray        # (rows,)


@dataclass
class VNNLibProperty:
    """A parsed property: the unsafe set is the union of ``disjuncts``."""

    num_inputs: int
    num_outputs: int
    disjuncts: list[Disjunct]


@dataclass
class _Node:
    """An s-expression: an atom (``text``) or a list (``children``), with its line."""

    line: int
    text: str | None = None
    children: list[_Node] | None = None


def _read_sexpressions(source: str) -> list[_Node]:
    line, stack, top = 1, [], []
    for match in _TOKEN.finditer(source):
        token = match.group()
        if token == "\n":
            line += 1
        elif token.isspace() or token.startswith(";"):
            continue
        elif token == "(":
            stack.append(_Node(line, children=[]))
        elif token == ")":
            if not stack:
                raise VNNLibError(line, "unbalanced ')'")
            node = stack.pop()
            (stack[-1].children if stack else top).append(node)
        else:
            atom = _Node(line, text=token)
            if not stack:
                raise VNNLibError(line, f"unexpected atom {token!r} outside parentheses")
            stack[-1].children.append(atom)
    if stack:
        raise VNNLibError(stack[-1].line, "unclosed '(' (missing ')')")
    return top


def _head(node: _Node) -> str:
    if node.children is None or not node.children or node.children[0].text is None:
        raise VNNLibError(node.line, "expected an operator application '(op …)'")
    return node.children[0].text


class _Linear:
    """A linear term Σ coefficient · variable + constant, variables as ('X'|'Y', index)."""

    def __init__(self, terms: dict[tuple[str, int], float] | None = None,
                 constant: float = 0.0) -> None:
        self.terms = terms or {}
        self.constant = constant

    def scaled(self, factor: float) -> _Linear:
        return _Linear({k: factor * v for k, v in self.terms.items()}, factor * self.constant)

    def plus(self, other: _Linear) -> _Linear:
        terms = dict(self.terms)
        for key, value in other.terms.items():
            terms[key] = terms.get(key, 0.0) + value
        return _Linear(terms, self.constant + other.constant)


class _Parser:
    def __init__(self) -> None:
        self.declared: dict[tuple[str, int], int] = {}

    def declare(self, node: _Node) -> None:
        parts = node.children
        if len(parts) != 3 or parts[1].text is None or parts[2].text is None:
            raise VNNLibError(node.line, "expected (declare-const NAME Real)")
        match = _VARIABLE.match(parts[1].text)
        if not match:
            raise VNNLibError(node.line, f"variable {parts[1].text!r} is not X_i or Y_j")
        if parts[2].text != "Real":
            raise VNNLibError(node.line, f"variable type {parts[2].text!r} is not Real")
        key = (match.group(1), int(match.group(2)))
        if key in self.declared:
            raise VNNLibError(node.line, f"{parts[1].text} declared twice")
        self.declared[key] = node.line

    def term(self, node: _Node) -> _Linear:
        if node.text is not None:
            match = _VARIABLE.match(node.text)
            if match:
                key = (match.group(1), int(match.group(2)))
                if key not in self.declared:
                    raise VNNLibError(node.line, f"{node.text} used before declare-const")
                return _Linear({key: 1.0})
            try:
                value = float(node.text)
            except ValueError:
                raise VNNLibError(node.line, f"expected a number or X_i/Y_j, got "
                                             f"{node.text!r}") from None
            if not np.isfinite(value):  # nan would be silently ignored by min/max below
                raise VNNLibError(node.line, f"constant {node.text!r} is not a finite number")
            return _Linear(constant=value)
        op, args = _head(node), [self.term(a) for a in node.children[1:]]
        if op == "+" and args:
            total = _Linear()
            for arg in args:
                total = total.plus(arg)
            return total
        if op == "-" and len(args) == 1:
            return args[0].scaled(-1.0)
        if op == "-" and len(args) == 2:
            return args[0].plus(args[1].scaled(-1.0))
        if op == "*" and len(args) == 2:
            constant = [a for a in args if not a.terms]
            if not constant:
                raise VNNLibError(node.line, "product of two variables is not linear")
            other = args[1] if args[0] is constant[0] else args[0]
            return other.scaled(constant[0].constant)
        raise VNNLibError(node.line, f"unsupported term operator {op!r} with {len(args)} "
                                     f"arguments")

    def formula(self, node: _Node) -> list[list[tuple[_Linear, int]]]:
        """The DNF of a formula: a list of conjunctions of atoms ``linear ≤ 0``."""
        op = _head(node)
        args = node.children[1:]
        if op in ("<=", ">=", "<", ">"):
            if len(args) != 2:
                raise VNNLibError(node.line, f"({op} …) needs exactly two arguments")
            left, right = self.term(args[0]), self.term(args[1])
            difference = left.plus(right.scaled(-1.0)) if op in ("<=", "<") else \
                right.plus(left.scaled(-1.0))
            return [[(difference, node.line)]]
        if op == "and":
            if not args:
                raise VNNLibError(node.line, "(and) with no arguments")
            parts = [self.formula(a) for a in args]
            count = int(np.prod([len(p) for p in parts], dtype=float))
            if count > MAX_DISJUNCTS:
                raise VNNLibError(node.line, f"the property expands to {count} disjuncts "
                                             f"(limit {MAX_DISJUNCTS})")
            return [sum(combination, []) for combination in itertools.product(*parts)]
        if op == "or":
            if not args:
                raise VNNLibError(node.line, "(or) with no arguments")
            return [conjunction for a in args for conjunction in self.formula(a)]
        raise VNNLibError(node.line, f"unsupported operator {op!r} (expected <=, >=, and, or)")


def _to_disjunct(atoms: list[tuple[_Linear, int]], num_inputs: int,
                 num_outputs: int) -> Disjunct:
    lower, upper = np.full(num_inputs, -np.inf), np.full(num_inputs, np.inf)
    rows, offsets = [], []
    for linear, line in atoms:
        nonzero = {k: v for k, v in linear.terms.items() if v != 0.0}
        kinds = {kind for kind, _ in nonzero}
        if kinds == {"X"}:
            if len(nonzero) != 1:
                raise VNNLibError(line, "input constraints must bound a single X_i by a "
                                        "constant (boxes only)")
            (_, index), coefficient = next(iter(nonzero.items()))
            bound = -linear.constant / coefficient  # coefficient·x + constant ≤ 0
            if coefficient > 0:
                upper[index] = min(upper[index], bound)
            else:
                lower[index] = max(lower[index], bound)
        elif kinds == {"Y"}:
            row = np.zeros(num_outputs)
            for (_, index), coefficient in nonzero.items():
                row[index] += coefficient
            rows.append(row)
            offsets.append(linear.constant)
        elif not kinds:
            raise VNNLibError(line, "constraint between constants only")
        else:
            raise VNNLibError(line, "a constraint mixing X and Y variables is not supported")
    missing = np.flatnonzero(~np.isfinite(lower) | ~np.isfinite(upper))
    if missing.size:
        line = atoms[0][1] if atoms else 1
        raise VNNLibError(line, f"input X_{missing[0]} has no finite lower and upper bound "
                                f"in this disjunct")
    return Disjunct(lower, upper, np.array(rows).reshape(-1, num_outputs),
                    np.array(offsets, dtype=float))


def parse_vnnlib(source: str) -> VNNLibProperty:
    """Parse VNNLIB text into a :class:`VNNLibProperty` (raises :class:`VNNLibError`)."""
    parser, asserts = _Parser(), []
    for node in _read_sexpressions(source):
        op = _head(node)
        if op == "declare-const":
            parser.declare(node)
        elif op == "assert":
            if len(node.children) != 2:
                raise VNNLibError(node.line, "(assert …) takes exactly one formula")
            asserts.append(node.children[1])
        else:
            raise VNNLibError(node.line, f"unsupported command {op!r}")
    for kind in ("X", "Y"):
        indices = sorted(i for k, i in parser.declared if k == kind)
        if indices != list(range(len(indices))) or not indices:
            raise VNNLibError(1, f"{kind} variables must be declared as {kind}_0 … "
                                 f"{kind}_n without gaps")
    num_inputs = sum(1 for k, _ in parser.declared if k == "X")
    num_outputs = sum(1 for k, _ in parser.declared if k == "Y")
    if not asserts:
        raise VNNLibError(1, "no assert: the property is empty")
    conjunctions: list[list[tuple[_Linear, int]]] = [[]]
    for formula in asserts:
        dnf = parser.formula(formula)
        if len(conjunctions) * len(dnf) > MAX_DISJUNCTS:
            raise VNNLibError(formula.line, f"the property expands to more than "
                                            f"{MAX_DISJUNCTS} disjuncts")
        conjunctions = [left + right for left in conjunctions for right in dnf]
    disjuncts = [_to_disjunct(atoms, num_inputs, num_outputs) for atoms in conjunctions]
    return VNNLibProperty(num_inputs, num_outputs, disjuncts)


def read_vnnlib(path: str | Path) -> VNNLibProperty:
    """Read and parse a ``.vnnlib`` file (plain or gzip-compressed)."""
    path = Path(path)
    if path.suffix == ".gz":
        import gzip

        text = gzip.decompress(path.read_bytes()).decode("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    return parse_vnnlib(text)


def format_counterexample(x: np.ndarray, y: np.ndarray) -> str:
    """The VNN-COMP counterexample text: ``((X_0 v) … (Y_0 v) …)`` with full precision."""
    lines = [f"(X_{i} {float(v)!r})" for i, v in enumerate(np.ravel(x))]
    lines += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(np.ravel(y))]
    return "(" + "\n ".join(lines) + ")\n"
