"""BoundsPlan's chunk sizes (the numbers they give are tested equal elsewhere)."""

from __future__ import annotations

from nobound.autodiff.tensor import enable_grad, no_grad
from nobound.bounds.plan import LARGEST_ARRAY_BYTES, BoundsPlan


def test_a_chunk_without_gradients_keeps_each_array_under_the_mmap_threshold() -> None:
    # cnn5's dense rows at batch 32: 3,136 coefficients on the largest node, 2 sides
    nodes, itemsize, sides, batch = [6272, 3136, 1568, 512], 4, 2, 32
    with no_grad():
        rows = BoundsPlan().rows_per_chunk(nodes, 1, itemsize, 1, sides, batch)
        large = BoundsPlan(memory_budget_bytes=1 << 34).rows_per_chunk(
            nodes, 1, itemsize, 1, sides, batch)
        small = BoundsPlan(memory_budget_bytes=1 << 24).rows_per_chunk(
            nodes, 1, itemsize, 1, sides, batch)
    largest = itemsize * sides * batch * max(nodes)
    assert rows == BoundsPlan().memory_budget_bytes // (largest * 6)  # the default budget
    assert rows * largest <= LARGEST_ARRAY_BYTES
    assert large * largest <= LARGEST_ARRAY_BYTES < (large + 1) * largest  # a larger one
    assert small == (1 << 24) // (largest * 6)   # a smaller budget still governs


def test_a_chunk_with_gradients_fits_the_budget_with_the_whole_graph() -> None:
    nodes = [100, 50, 10]
    with enable_grad():
        rows = BoundsPlan(memory_budget_bytes=1 << 20).rows_per_chunk(nodes, 2, 8, 3, 2, 4)
    assert rows == (1 << 20) // (8 * 3 * 2 * 4 * sum(nodes) * 4 * 2)
