"""Fixtures of the certifier tests; the instances live in certify_instances.py."""

from __future__ import annotations

import pytest
from certify_instances import bab_instance


@pytest.fixture(scope="module")
def branching_instance():
    """(model, problem): certified, but only after branching."""
    return bab_instance()
