"""Shared test fixtures.

PyTorch is the test oracle. Under CI (``CI=true``) a missing torch *fails* the tests that need it;
elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(module: str):
    """Import ``module`` or skip (fail under CI=true)."""
    try:
        return __import__(module)
    except ImportError:
        if IN_CI:
            pytest.fail(f"{module} is required under CI=true but is not installed")
        pytest.skip(f"{module} is not installed")


@pytest.fixture(scope="session")
def torch():
    t = require("torch")
    t.set_num_threads(2)
    return t


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
