import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import pytest  # noqa: E402

# Small networks and budgets: the algorithm is the same, the tests stay quick on 2 CPU cores.
TINY = [
    "--hidden-sizes", "32", "32",
    "--critic-hidden-sizes", "32", "32",
    "--batch-size", "32",
    "--no-progress",
]


@pytest.fixture
def tiny_args():
    return list(TINY)
