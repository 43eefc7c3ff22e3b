"""Exact answers for small networks, by SciPy's HiGHS: the ground truth of the relaxations.

* :func:`dense_network` — a ReLU network as explicit matrices W_k, b_k (conv unrolled);
* :func:`minimise_output` / :func:`exact_output_range` — the exact min (and max) of a spec
  row over a box, by a big-M MILP;
* :func:`enumerate_minimum` — the same by enumerating activation patterns (tiny nets);
* :func:`triangle_lp_minimum` — the triangle-relaxation LP with given intermediate bounds,
  never looser than DeepPoly/CROWN with the same bounds;
* :func:`interval_bounds` — eq. (3) interval bounds of the dense form, clamped by splits.
"""

from nobound.exact.dense import DenseNetwork, dense_network
from nobound.exact.enumeration import enumerate_minimum
from nobound.exact.intervals import interval_bounds
from nobound.exact.lp import RelaxedMinimum, triangle_lp_minimum
from nobound.exact.milp import ExactMinimum, exact_output_range, minimise_output

__all__ = [
    "DenseNetwork", "ExactMinimum", "RelaxedMinimum", "dense_network", "enumerate_minimum",
    "exact_output_range", "interval_bounds", "minimise_output", "triangle_lp_minimum",
]
