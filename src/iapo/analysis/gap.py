"""The amortization gap (Fig. 6): how far the agent's lambda is from the optimum of J at a state.

From the agent's lambda, plain gradient ascent on J(lambda; s) (reference: SGD, lr 1e-4, 10
samples) runs until the estimated objective stops improving; the gap at each state is
J(lambda*) - J(lambda_agent), both estimated with the same (many) samples, so that their noise
cancels in the difference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from iapo import distributions as dist
from iapo.objective import Objective, value_and_grad


def ascend_until_no_improvement(
    objective: Objective, lam0: jax.Array, key: jax.Array, lr: float = 1e-4, optimizer: str = "sgd",
    max_steps: int = 5_000, patience: int = 100, tol: float = 1e-4,
    log_scale_bounds: tuple[float, float] = (-5.0, 2.0),
) -> tuple[jax.Array, jax.Array]:
    """Gradient ascent on J from lam0 (B, 2d) until the batch's mean estimated J has not risen by
    more than `tol` for `patience` steps (or `max_steps`). Each state keeps the iterate at which
    its own estimate was best. Returns (lambda* (B, 2d), number of steps)."""
    opt = optax.sgd(lr) if optimizer == "sgd" else optax.adam(lr)

    def cond(carry):
        *_, step, since_best = carry
        return (step < max_steps) & (since_best < patience)

    def body(carry):
        lam, opt_state, best_lam, best_j, best_mean, key, step, since_best = carry
        key, k = jax.random.split(key)
        j, _, grad = value_and_grad(objective, lam, k)  # J and its gradient at lam, (B,), (B, 2d)
        better = j > best_j
        best_lam = jnp.where(better[:, None], lam, best_lam)
        best_j = jnp.where(better, j, best_j)
        mean = jnp.mean(j)
        improved = mean > best_mean + tol
        best_mean = jnp.where(improved, mean, best_mean)
        since_best = jnp.where(improved, 0, since_best + 1)
        updates, opt_state = opt.update(-grad, opt_state)  # ascend J
        lam = optax.apply_updates(lam, updates)
        mean_, log_scale = dist.split(lam)
        lam = dist.join(mean_, jnp.clip(log_scale, *log_scale_bounds))
        return lam, opt_state, best_lam, best_j, best_mean, key, step + 1, since_best

    b = lam0.shape[0]
    init = (lam0, opt.init(lam0), lam0, jnp.full((b,), -jnp.inf), jnp.asarray(-jnp.inf), key,
            jnp.asarray(0), jnp.asarray(0))
    _, _, best_lam, _, _, _, steps, _ = jax.lax.while_loop(cond, body, init)
    return best_lam, steps


def amortization_gap(
    objective: Objective, lam_agent: jax.Array, key: jax.Array, eval_objective: Objective | None = None, **ascent
) -> dict:
    """Per-state gap J(lambda*) - J(lambda_agent), (B,), with lambda* from
    `ascend_until_no_improvement` (keyword arguments `ascent`). Both are estimated by
    `eval_objective` (default: `objective`; pass one with more samples) with the same key."""
    k_ascent, k_eval = jax.random.split(key)
    lam_star, steps = ascend_until_no_improvement(objective, lam_agent, k_ascent, **ascent)
    evaluate = eval_objective or objective
    j_agent, _ = evaluate(lam_agent, k_eval)
    j_star, _ = evaluate(lam_star, k_eval)  # common random numbers
    return {"gap": j_star - j_agent, "j_agent": j_agent, "j_star": j_star, "lam_star": lam_star, "steps": steps}
