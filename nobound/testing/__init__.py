"""Tools to property-test relaxations: hypothesis strategies, region samples, falsifiers.

``nobound.testing.guard_xp`` is the CPU stand-in for CuPy that the tests run the GPU path
on (docs/gpu.md). ``nobound.testing.strategies`` needs the ``hypothesis`` package (``pip
install nobound[test]``); the other modules only need NumPy.
"""
