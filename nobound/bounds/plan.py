"""How a bound is executed: one plan, decided once and passed down.

The relaxations say *what* is computed; this says how the work is cut so it fits memory,
and which of two equal-valued layouts carries the back-substitution rows. None of it changes
a number (tests compare every choice against the plain one):

* ``memory_budget_bytes``: the size of one chunk of back-substitution rows, of population
  members, or of HBox samples. With gradients recorded the graph of every chunk is kept for
  the backward pass, so the peak is larger.
* ``patches``: rows of convolutional neurons carried on their receptive-field windows
  (:mod:`nobound.bounds.patches`): ``"auto"`` where the windows are smaller than the whole
  maps, ``"always"`` wherever they apply, ``"never"``.
* ``dense_fraction``: DeepPoly back-substitutes only the neurons an interval pre-check leaves
  unstable, unless more than this share of a layer is unstable (then every neuron, with
  plain identity rows).
* ``sample_groups``: ``"auto"`` bounds the samples of a batch in groups of similar numbers
  of unstable neurons where that saves padding rows (:mod:`nobound.bounds.sample_groups`),
  ``"never"`` in one batch.

The memory model of a chunk of rows: each row carries one coefficient per feature of every
node it crosses, for every sample, bound side and member,

    bytes per row ≈ itemsize · P · S · B · (Σ node sizes) · 4    (graph kept for gradients)
                    itemsize · P · S · B · (max node size) · 6   (no gradient)

with window sizes C_m K_m² for node sizes in patches mode (and twice the factors: each ReLU
step of a window row also holds its gathered λ, s, t and their index). Without gradients a
chunk also keeps each of its arrays (rows on the largest node) under LARGEST_ARRAY_BYTES,
the allocator's mmap threshold (:mod:`nobound.host_memory`): a larger block is mapped
afresh and page-faulted in on every call (measured in docs/benchmarks.md, cnn5 DeepPoly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nobound.autodiff.tensor import is_grad_enabled

DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes
LARGEST_ARRAY_BYTES = 256 << 20  # one array of a chunk without gradients (module doc)
PATCH_MODES = ("auto", "always", "never")
SAMPLE_GROUP_MODES = ("auto", "never")


@dataclass(frozen=True)
class BoundsPlan:
    """The execution choices of one ``compute_bounds`` call (see the module docstring)."""

    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET
    patches: str = "auto"
    dense_fraction: float = 0.75
    sample_groups: str = "auto"

    def __post_init__(self) -> None:
        if self.memory_budget_bytes <= 0:
            raise ValueError(f"memory_budget_bytes must be positive, got "
                             f"{self.memory_budget_bytes}")
        if self.patches not in PATCH_MODES:
            raise ValueError(f"patches must be one of {PATCH_MODES}, got {self.patches!r}")
        if self.sample_groups not in SAMPLE_GROUP_MODES:
            raise ValueError(f"sample_groups must be one of {SAMPLE_GROUP_MODES}, got "
                             f"{self.sample_groups!r}")

    def rows_per_chunk(self, node_sizes: Sequence[int], rows_factor: int, itemsize: int,
                       members: int, sides: int, batch: int) -> int:
        """How many back-substitution rows fit the budget at once; ``node_sizes`` are the
        numbers of coefficients a row holds on each node it crosses, ``rows_factor`` 1 for
        dense rows and 2 for window rows."""
        one_row = itemsize * members * sides * batch
        if is_grad_enabled():
            return max(1, int(self.memory_budget_bytes
                              // max(one_row * sum(node_sizes) * 4 * rows_factor, 1)))
        largest = one_row * max(node_sizes) * rows_factor   # one array's bytes per row
        budget = min(self.memory_budget_bytes, 6 * LARGEST_ARRAY_BYTES)
        return max(1, int(budget // max(largest * 6, 1)))


__all__ = ["DEFAULT_MEMORY_BUDGET", "LARGEST_ARRAY_BYTES", "PATCH_MODES", "SAMPLE_GROUP_MODES",
           "BoundsPlan"]
