import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# `--matmul-precision auto` means float32 in the tests and in every `iapo` process they start, on
# any CPU, with bfloat16 instructions or not, so that the suite computes the same numbers on every
# machine CI may run on (and a run in this process equals one in a subprocess); the tests of
# bfloat16 ask for it by name (tests/test_precision.py, the learning test).
os.environ["IAPO_AUTO_MATMUL_PRECISION"] = "float32"

# One JAX compilation cache for the whole session, this process and every `iapo` process the
# tests start: most tests compile the same small agents, and a process that finds its programs
# in the cache starts in about half the time (a tiny iterative run: 32 s cold, 17 s warm on a
# 2-core EPYC). A cached program is the same executable, so the numbers do not change. It lives
# in a fresh temporary folder, so that no cache outlives the session or meets another CPU.
# (pytest-xdist's workers inherit the folder of the process that started them.)
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="iapo-tests-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

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
