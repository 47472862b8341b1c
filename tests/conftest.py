"""Shared fixtures for the kernel tests: RNG, ISA paths, thread pools, hypothesis profile."""

from __future__ import annotations

import os
import sys
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))  # so test modules can `import reference`

import xnorinfer  # noqa: E402
from xnorinfer import _core  # noqa: E402

settings.register_profile(
    "xnorinfer",
    deadline=None,
    max_examples=25,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "xnorinfer-ci",
    parent=settings.get_profile("xnorinfer"),
    derandomize=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "xnorinfer"))

# Module-level so that hypothesis tests (which cannot take function-scoped fixtures) and
# helpers can use them too: `from conftest import ISAS, POOLS`.
ISAS: list[str] = list(_core.available_isas())
_POOL2 = _core.ThreadPool(2)
POOLS: list = [None, _POOL2]  # every result must be identical under each of these


def load_with_env(
    path: str | os.PathLike, threads: int, monkeypatch: pytest.MonkeyPatch, **env: str
) -> xnorinfer.Session:
    """xnorinfer.load with environment variables set while the session is built (XNORINFER_FUSE,
    XNORINFER_MIN_PARALLEL_WORK: read at load), then removed again."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        return xnorinfer.load(path, threads=threads)
    finally:
        for key in env:
            monkeypatch.delenv(key)


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the test id, so every test is reproducible on its own."""
    seed = zlib.crc32(request.node.nodeid.encode())  # stable across processes, unlike hash()
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def isas() -> list[str]:
    """Every ISA path this CPU can run."""
    return ISAS


@pytest.fixture(params=ISAS)
def isa(request) -> str:
    """One ISA path per test instance."""
    return request.param


@pytest.fixture(scope="session")
def pool2():
    """A shared two-thread pool."""
    return _POOL2


@pytest.fixture(scope="session")
def pools():
    """Threading variants every result must be identical under: no pool, and 2 threads."""
    return POOLS
