"""Tools to property-test relaxations: hypothesis strategies, region samples, falsifiers.

``nobound.testing.strategies`` needs the ``hypothesis`` package (``pip install
nobound[test]``); the other modules only need NumPy.
"""
