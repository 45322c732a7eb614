"""Non-amortized policy optimizers: they optimize lambda itself, per state, with no network.

- `gradient_ascent`: Adam on lambda = (mu, log sigma) along grad_lambda J (reference comparison:
  lr 1e-2, 10 samples, 250 steps, from the iterative optimizer's lambda_0); with more steps it
  also gives the estimate of the optimum that the amortization gap is measured against.
- `cem`: the cross-entropy method, gradient-free (reference: 100 samples ranked by Q, refit to
  the top 10, sigma = sqrt(var + 1e-6), smoothed update new = 0.99 old + 0.01 fit).

Both run their iterations under `lax.scan` and return the objective at every iterate, so that
their efficiency can be compared iteration by iteration with the iterative optimizer's.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from iapo import distributions as dist
from iapo.config import ADAM_LR, CEM_ELITES, CEM_SAMPLES, CEM_SMOOTHING, COMPARISON_STEPS, LOG_SCALE_BOUNDS
from iapo.objective import MonteCarloObjective, Objective, value_and_grad
from iapo.optimizers.direct import LambdaPolicy


def ascent_step(objective: Objective, opt: optax.GradientTransformation,
                log_scale_bounds: tuple[float, float] = LOG_SCALE_BOUNDS):
    """One step of `opt` up the gradient of J on lambda: step(lam (B, 2d), opt_state, key) ->
    (new lam, new opt_state, J(lam) (B,)), log sigma clipped into `log_scale_bounds`. The one
    ascent on lambda: Adam for the `gradient` agent and the efficiency comparison, SGD or Adam
    to the optimum for the amortization gap."""

    def step(lam, opt_state, key):
        j, _, grad = value_and_grad(objective, lam, key)  # J and its gradient at lam, (B,), (B, 2d)
        updates, opt_state = opt.update(-grad, opt_state)  # ascend J
        lam = optax.apply_updates(lam, updates)
        mean, log_scale = dist.split(lam)
        return dist.join(mean, jnp.clip(log_scale, *log_scale_bounds)), opt_state, j

    return step


def gradient_ascent(
    objective: Objective, lam0: jax.Array, key: jax.Array, steps: int = COMPARISON_STEPS, lr: float = ADAM_LR,
    log_scale_bounds: tuple[float, float] = LOG_SCALE_BOUNDS,
) -> tuple[jax.Array, jax.Array]:
    """Adam ascent of J from lam0 (B, 2d), fresh samples at every step.

    Returns the final lambda and J (B,) at every iterate lambda_0 .. lambda_steps, (steps + 1, B).
    """
    adam = optax.adam(lr)
    step = ascent_step(objective, adam, log_scale_bounds)

    def body(carry, k):
        lam, opt_state, j = step(*carry, k)
        return (lam, opt_state), j

    keys = jax.random.split(key, steps + 1)
    (lam, _), js = jax.lax.scan(body, (lam0, adam.init(lam0)), keys[:-1])
    j_last, _ = objective(lam, keys[-1])
    return lam, jnp.concatenate([js, j_last[None]])


# The ascent to the optimum of J (the amortization gap's lambda*, the landscape's optimum): Adam,
# which converges where the reference's SGD at 1e-4 stops short (analysis/gap.py's docstring).
OPTIMUM_OPTIMIZER, OPTIMUM_LR, OPTIMUM_MAX_STEPS, OPTIMUM_PATIENCE = "adam", 1e-2, 20_000, 500


def ascend_to_optimum(
    objective: Objective, lam0: jax.Array, key: jax.Array, lr: float = OPTIMUM_LR, optimizer: str = OPTIMUM_OPTIMIZER,
    max_steps: int = OPTIMUM_MAX_STEPS, patience: int = OPTIMUM_PATIENCE, tol: float = 1e-4,
    log_scale_bounds: tuple[float, float] = LOG_SCALE_BOUNDS,
) -> tuple[jax.Array, jax.Array]:
    """Gradient ascent on J from lam0 (B, 2d) (the reference's: SGD, lr 1e-4) until the batch's
    mean estimated J has not risen by more than `tol` for `patience` steps (or `max_steps`). Each
    state keeps the iterate at which its own estimate was best. Returns (lambda* (B, 2d), number
    of steps; `max_steps` means it stopped with J still improving)."""
    opt = optax.sgd(lr) if optimizer == "sgd" else optax.adam(lr)
    step = ascent_step(objective, opt, log_scale_bounds)

    def cond(carry):
        *_, n, since_best = carry
        return (n < max_steps) & (since_best < patience)

    def body(carry):
        lam, opt_state, best_lam, best_j, best_mean, key, n, since_best = carry
        key, k = jax.random.split(key)
        new_lam, opt_state, j = step(lam, opt_state, k)
        better = j > best_j
        best_lam = jnp.where(better[:, None], lam, best_lam)
        best_j = jnp.where(better, j, best_j)
        mean = jnp.mean(j)
        improved = mean > best_mean + tol
        best_mean = jnp.where(improved, mean, best_mean)
        since_best = jnp.where(improved, 0, since_best + 1)
        return new_lam, opt_state, best_lam, best_j, best_mean, key, n + 1, since_best

    b = lam0.shape[0]
    init = (lam0, opt.init(lam0), lam0, jnp.full((b,), -jnp.inf), jnp.asarray(-jnp.inf), key,
            jnp.asarray(0), jnp.asarray(0))
    _, _, best_lam, _, _, _, steps, _ = jax.lax.while_loop(cond, body, init)
    return best_lam, steps


def cem(
    integrand, objective: Objective, lam0: jax.Array, key: jax.Array, steps: int = COMPARISON_STEPS,
    samples: int = CEM_SAMPLES, elites: int = CEM_ELITES, smoothing: float = CEM_SMOOTHING, var_floor: float = 1e-6,
    log_scale_bounds: tuple[float, float] = LOG_SCALE_BOUNDS,
) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy method on lambda from lam0 (B, 2d).

    Each iteration draws `samples` pre-tanh actions u ~ N(mu, sigma) per state, ranks them by
    the pessimistic value Q(s, a) alone, as the reference code does (its KL term is one number
    per state, the same for every sample; a per-sample -alpha log pi(a) would favour the
    least likely samples), fits (mu, sigma) to the `elites` best, and moves (mu, sigma) a
    fraction `smoothing` of the way to the fit. `integrand` is `objective.integrand` (its aux
    "q" is the value ranked), `objective` estimates J at each iterate for the record.
    Returns the final lambda and J (B,) at every iterate, (steps + 1, B).
    """
    def body(lam, k):
        k_draw, k_eval = jax.random.split(k)
        j, _ = objective(lam, k_eval)
        mean, log_scale = dist.split(lam)
        eps = jax.random.normal(k_draw, (samples, *mean.shape), mean.dtype)  # (M, B, d)
        _, aux = integrand(lam, eps)
        scores = aux["q"]  # (M, B)
        top = jnp.argsort(-scores, axis=0)[:elites]  # (E, B)
        u = mean + jnp.exp(log_scale) * eps  # (M, B, d)
        u_top = jnp.take_along_axis(u, top[..., None], axis=0)  # (E, B, d)
        fit_mean = jnp.mean(u_top, axis=0)
        fit_scale = jnp.sqrt(jnp.var(u_top, axis=0) + var_floor)
        new_mean = (1 - smoothing) * mean + smoothing * fit_mean
        new_scale = (1 - smoothing) * jnp.exp(log_scale) + smoothing * fit_scale
        new_log_scale = jnp.clip(jnp.log(new_scale), *log_scale_bounds)
        return jax.lax.stop_gradient(dist.join(new_mean, new_log_scale)), j

    keys = jax.random.split(key, steps + 1)
    lam, js = jax.lax.scan(body, lam0, keys[:-1])
    j_last, _ = objective(lam, keys[-1])
    return lam, jnp.concatenate([js, j_last[None]])


@dataclasses.dataclass(frozen=True)
class NonAmortizedOptimizer(LambdaPolicy):
    """The `gradient` and `cem` agents: at every state, for acting and for the critic targets,
    optimize lambda itself from the fixed lambda_0 with `iterations` steps of Adam or CEM. They
    have no parameters to train; their loss is -J at their result, for the record."""

    method: str  # "gradient" or "cem"
    act_dim: int
    iterations: int = 5
    lr: float = ADAM_LR
    samples: int = CEM_SAMPLES
    elites: int = CEM_ELITES
    smoothing: float = CEM_SMOOTHING
    init_mean: float = 0.0
    init_scale: float = 0.5
    log_scale_bounds: tuple[float, float] = LOG_SCALE_BOUNDS

    def init(self, key: jax.Array, obs_dim: int):
        del key, obs_dim
        return {}

    def optimize(self, params, obs, objective: MonteCarloObjective, key, iterations: int | None = None):
        del params
        lam0 = dist.constant(obs.shape[0], self.act_dim, self.init_mean, self.init_scale)
        steps = iterations or self.iterations
        if self.method == "gradient":
            lam, js = gradient_ascent(objective, lam0, key, steps, self.lr, self.log_scale_bounds)
        else:
            lam, js = cem(objective.integrand, objective, lam0, key, steps, self.samples, self.elites,
                          self.smoothing, log_scale_bounds=self.log_scale_bounds)
        return jax.lax.stop_gradient(lam), {"objective_per_iteration": jnp.mean(js, axis=-1)}  # (K + 1,)

    def loss(self, params, obs, objective: MonteCarloObjective, key):
        k_opt, k_eval = jax.random.split(key)
        lam, info = self.optimize(params, obs, objective, k_opt)
        j, aux = objective(lam, k_eval)
        info = {"kl": aux["kl"], "lam": lam, "objective_per_iteration": info["objective_per_iteration"]}
        return -jnp.mean(jax.lax.stop_gradient(j)), info
