"""Matrix multiplies with bfloat16 operands and float32 accumulation and results.

`bf16_dot_general` is a drop-in `dot_general` for `flax.linen.Dense`: it casts both operands to
bfloat16 and asks for a float32 result, in the forward pass and, through a custom VJP, in both
multiplies of the backward pass (a plain cast would hand float32 cotangents to the backward
multiplies, which then run at float32 speed or slower). Parameters, their gradients and
everything outside the multiplies stay float32.

Where the hardware has fast bfloat16 multiplies (GPU tensor cores; CPUs with AMX, or with
AVX-512 BF16 as measured by `benchmarks/precision.py`), these run several times faster than
float32 at the iterative agent's shapes; elsewhere they are slower. `resolve` turns the config's
`matmul_precision` into one of "float32" and "bfloat16". The environment variable
`IAPO_AUTO_MATMUL_PRECISION` (float32 or bfloat16) pins what `auto` means in every process that
inherits it, whatever the hardware: the test suite pins float32, so that its runs and the `iapo`
processes it starts compute the same numbers on every CPU.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import jax
import jax.numpy as jnp

from iapo.errors import ConfigError

BF16 = jnp.bfloat16
F32 = jnp.float32


@jax.custom_vjp
def bf16_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x (..., n) @ w (n, m) -> (..., m), float32, from bfloat16 operands."""
    return jnp.matmul(x.astype(BF16), w.astype(BF16), preferred_element_type=F32)


def _matmul_fwd(x, w):
    xb, wb = x.astype(BF16), w.astype(BF16)
    return jnp.matmul(xb, wb, preferred_element_type=F32), (xb, wb)


def _matmul_bwd(residuals, g):
    xb, wb = residuals
    gb = g.astype(BF16)
    gx = jnp.matmul(gb, wb.T, preferred_element_type=F32)  # (..., n)
    # sum over every leading axis of x and g: (n, rows) @ (rows, m)
    gw = jnp.matmul(xb.reshape(-1, xb.shape[-1]).T, gb.reshape(-1, gb.shape[-1]), preferred_element_type=F32)
    return gx, gw


bf16_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def bf16_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """`jax.lax.dot_general` for `nn.Dense`'s contraction (the last axis of lhs with the first
    of a 2-d rhs), computed by `bf16_matmul`."""
    del precision, preferred_element_type
    (contract_lhs, contract_rhs), (batch_lhs, batch_rhs) = dimension_numbers
    if tuple(contract_lhs) != (lhs.ndim - 1,) or tuple(contract_rhs) != (0,) or batch_lhs or batch_rhs or rhs.ndim != 2:
        raise ValueError(f"bf16_dot_general supports Dense contractions only, got {dimension_numbers}")
    return bf16_matmul(lhs, rhs)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it is not readable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


# CPU flags that mean bfloat16 multiplies with float32 results run faster than float32 ones:
# AMX tiles (Intel Sapphire Rapids on), and AVX-512 BF16 dot products (AMD Zen 4, Intel Cooper
# Lake): measured on a Zen 4 EPYC, the iterative update 1.67x faster; on an AVX2-only Zen 3
# EPYC, without either, 0.71x (docs/benchmarks.md).
FAST_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def fast_bf16() -> bool:
    """Whether the default backend multiplies bfloat16 fast: a GPU, or a CPU with AMX or
    AVX-512 BF16."""
    backend = jax.default_backend()
    if backend in ("gpu", "cuda", "rocm"):
        return True
    return backend == "cpu" and bool(FAST_BF16_CPU_FLAGS & cpu_flags())


AUTO_ENV = "IAPO_AUTO_MATMUL_PRECISION"
PRECISIONS = ("float32", "bfloat16")


def resolve(setting: str) -> str:
    """The precision of the multiplies for a config's `matmul_precision`: `auto` is what
    $IAPO_AUTO_MATMUL_PRECISION says where it is set, else bfloat16 where `fast_bf16()` holds and
    float32 elsewhere."""
    if setting != "auto":
        return setting
    pinned = os.environ.get(AUTO_ENV, "").strip()
    if pinned:
        if pinned not in PRECISIONS:
            raise ConfigError(f"{AUTO_ENV}={pinned!r}: must be float32 or bfloat16 (or unset: the hardware's choice)")
        return pinned
    return "bfloat16" if fast_bf16() else "float32"
