"""Policy optimizers: maps from states (and the objective J) to the policy parameters lambda.

Every optimizer offers the same three calls:

- `init(key, obs_dim) -> params`
- `optimize(params, obs, objective, key, iterations=None) -> (lam, info)`: lambda (B, 2d) for
  acting and for the critic targets;
- `loss(params, obs, objective, key) -> (loss, info)`: the differentiable training loss of the
  optimizer's own parameters; `info` holds `kl` (B,), `lam` (B, 2d) of the final estimate and
  `objective_per_iteration` (iterates + 1,).

Every optimizer also gives `sample(params, obs, lam, key)` and `mode(params, obs, lam)`, the
actions of its policy (a tanh-Gaussian of lambda, or for the flow policy, its flow). The
non-amortized optimizers of `nonamortized.py` (Adam on lambda, CEM) have no parameters to train;
as agents (`gradient`, `cem`) they run from lambda_0 at every state.
"""

from __future__ import annotations

from iapo.config import AgentConfig
from iapo.kinds import kind
from iapo.optimizers.direct import DirectOptimizer
from iapo.optimizers.flow import FlowOptimizer
from iapo.optimizers.iterative import IterativeOptimizer
from iapo.optimizers.nonamortized import NonAmortizedOptimizer

PolicyOptimizer = DirectOptimizer | FlowOptimizer | IterativeOptimizer | NonAmortizedOptimizer

__all__ = ["DirectOptimizer", "FlowOptimizer", "IterativeOptimizer", "NonAmortizedOptimizer", "PolicyOptimizer",
           "make_policy_optimizer"]


def make_policy_optimizer(config: AgentConfig, act_dim: int) -> PolicyOptimizer:
    bounds = (config.log_scale_min, config.log_scale_max)
    traits = kind(config.agent)
    if not traits.amortized:  # gradient, cem
        return NonAmortizedOptimizer(config.agent, act_dim, config.iterations, config.optimizer_lr, config.cem_samples,
                                     config.cem_elites, config.cem_smoothing, config.init_mean, config.init_scale,
                                     bounds)
    if not traits.iterates:  # direct, direct-flow
        if not traits.gaussian_policy:
            return FlowOptimizer(act_dim, tuple(config.hidden_sizes), bounds, config.flow_transforms,
                                 tuple(config.flow_hidden_sizes), config.weight_init)
        return DirectOptimizer(act_dim, tuple(config.hidden_sizes), bounds, config.weight_init)
    return IterativeOptimizer(
        act_dim=act_dim,
        hidden_sizes=tuple(config.hidden_sizes),
        log_scale_bounds=bounds,
        iterations=config.iterations,
        init_mean=config.init_mean,
        init_scale=config.init_scale,
        final_iterate_loss=config.final_iterate_loss,
        input_norm=config.input_norm,
        unroll=config.unroll_iterations,
        weight_init=config.weight_init,
    )
