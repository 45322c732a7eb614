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


@pytest.fixture(autouse=True)
def float32_unless_asked(monkeypatch):
    """`--matmul-precision auto` resolves to float32 in the tests on any CPU, with bfloat16
    instructions or not, so that the suite computes the same numbers on every machine CI may run
    on; the tests of bfloat16 ask for it by name (tests/test_precision.py, the learning test)."""
    from iapo import precision

    flags = precision.cpu_flags()
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags - precision.FAST_BF16_CPU_FLAGS)


@pytest.fixture
def tiny_args():
    return list(TINY)
