"""The iterative network's input normalization on a toy whose optimum only the gradient reveals.

J(lambda; s) = -E_{a ~ pi_lambda}[ |a - a*(s)|^2 ] with a*(s) drawn uniformly in (-0.9, 0.9)^d per
state and hidden from the network (it sees a zero state), so the iterative optimizer can find a*
only through grad_lambda J. An optimizer (K = 5 iterations, 2x64 network, N = 10 samples) is
trained by Adam on its loss for 400 steps of 128 states; the score is the mean |tanh(mu_K) - a*|
on 512 new states. The normalization forms are those of `--input-norm`.

    python benchmarks/input_norm.py [--dims 1 2 3] [--seeds 0 1 2]

`tests/test_fidelity.py` runs `final_error` at d = 1.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from iapo import distributions as dist
from iapo.objective import make_objective
from iapo.optimizers import IterativeOptimizer

FORMS = ("reference", "joint", "none", "log")


def _critic(params, optimum, actions):
    """Twin 'critics' -(a - a*)^2 summed over dimensions; the state they see is a* itself."""
    del params
    q = -jnp.sum((actions - optimum) ** 2, axis=-1)
    return jnp.stack([q, q])


def _objective(optimum, samples):
    return make_objective(_critic, None, optimum, 0.0, 1.0, samples)


def final_error(form: str, act_dim: int = 1, seed: int = 0, steps: int = 400, batch: int = 128,
                iterations: int = 5, samples: int = 10, lr: float = 3e-3) -> float:
    """Mean |tanh(mu_K) - a*| over 512 held-out states after training with normalization `form`."""
    opt = IterativeOptimizer(act_dim=act_dim, hidden_sizes=(64, 64), iterations=iterations, input_norm=form)
    obs_dim = 1
    key = jax.random.PRNGKey(seed)
    params = opt.init(key, obs_dim)
    adam = optax.adam(lr)

    @jax.jit
    def train_step(params, opt_state, key):
        k_opt, k_loss = jax.random.split(key)
        optimum = jax.random.uniform(k_opt, (batch, act_dim), minval=-0.9, maxval=0.9)
        grads = jax.grad(lambda p: opt.loss(p, jnp.zeros((batch, obs_dim)), _objective(optimum, samples), k_loss)[0])(params)
        updates, opt_state = adam.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state

    opt_state = adam.init(params)
    for k in jax.random.split(jax.random.fold_in(key, 1), steps):
        params, opt_state = train_step(params, opt_state, k)
    optimum = jax.random.uniform(jax.random.fold_in(key, 2), (512, act_dim), minval=-0.9, maxval=0.9)
    lam, _ = opt.optimize(params, jnp.zeros((512, obs_dim)), _objective(optimum, samples), jax.random.fold_in(key, 3))
    return float(jnp.mean(jnp.abs(dist.mode(lam) - optimum)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    start = time.perf_counter()
    print("| input normalization | " + " | ".join(f"d = {d}" for d in args.dims) + " |")
    print("| --- |" + " --- |" * len(args.dims))
    for form in FORMS:
        cells = []
        for d in args.dims:
            errors = [final_error(form, d, seed) for seed in args.seeds]
            cells.append(f"{np.mean(errors):.3f} ± {np.std(errors, ddof=1):.3f}")
        print(f"| {form} | " + " | ".join(cells) + " |", flush=True)
    print(f"(mean ± sample std over seeds {' '.join(map(str, args.seeds))}; {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
