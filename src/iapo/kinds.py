"""The agent kinds and what each one does, in one place: every other module asks a `Kind` its
traits instead of comparing names.

The paper's two amortized optimizers of the policy objective J(λ; s) are `direct` (a policy
network, Eq. 10) and `iterative` (a network that refines λ from λ_0 with ∇λJ, Eq. 11–12);
`direct-flow` is the direct policy with inverse autoregressive flows (appendix B.2); `gradient`
and `cem` optimize λ afresh at every state, without amortization (Fig. 4c).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

AgentKind = Literal["direct", "iterative", "direct-flow", "gradient", "cem"]


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    amortized: bool
    """A network maps each state to λ (direct, iterative, direct-flow); otherwise λ is optimized
    afresh at every state."""
    iterates: bool
    """λ is refined in steps from λ_0 by reading J (its gradient, or its samples for CEM): the
    agent evaluates J, and so its critics, whenever it acts."""
    learned_iterations: bool
    """The iterations are a trained network's (iterative amortization): their count can change at
    evaluation, and the analyses of iterates (improvement per iterate, modes, landscape,
    optimizer efficiency) apply."""
    gaussian_policy: bool
    """The policy is the tanh-Gaussian of one λ per state, so the amortization gap in λ and the KL
    between two policies have closed forms (not so for a flow)."""
    default_pessimism: float
    """β of the training objective when `pessimism` is unset (the paper's: 2.5 for iterative
    amortization, 1 otherwise)."""
    pessimism_before_0_2: float
    """The default β of iapo before 0.2, for configs of runs from those versions."""
    cpu_seed_mapping: Literal["vmap", "map"]
    """How `seed_mapping: auto` maps seeds trained together on a CPU: the kinds that iterate ran
    faster one seed after the other (benchmarks/update_variants.py --seeds 2), the others vmapped.
    On an accelerator every kind is vmapped."""
    cpu_critic_layout: Literal["ensemble", "separate"]
    """How `critic_layout: auto` lays out the twin critics on a CPU (separate: two networks, faster
    for the iterative update's many small critic calls on XLA:CPU; ensemble: one vmapped pair)."""


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("direct", amortized=True, iterates=False, learned_iterations=False, gaussian_policy=True,
         default_pessimism=1.0, pessimism_before_0_2=1.0, cpu_seed_mapping="vmap", cpu_critic_layout="ensemble"),
    Kind("iterative", amortized=True, iterates=True, learned_iterations=True, gaussian_policy=True,
         default_pessimism=2.5, pessimism_before_0_2=2.5, cpu_seed_mapping="map", cpu_critic_layout="separate"),
    Kind("direct-flow", amortized=True, iterates=False, learned_iterations=False, gaussian_policy=False,
         default_pessimism=1.0, pessimism_before_0_2=1.0, cpu_seed_mapping="vmap", cpu_critic_layout="ensemble"),
    Kind("gradient", amortized=False, iterates=True, learned_iterations=False, gaussian_policy=True,
         default_pessimism=1.0, pessimism_before_0_2=2.5, cpu_seed_mapping="map", cpu_critic_layout="ensemble"),
    Kind("cem", amortized=False, iterates=True, learned_iterations=False, gaussian_policy=True,
         default_pessimism=1.0, pessimism_before_0_2=2.5, cpu_seed_mapping="map", cpu_critic_layout="ensemble"),
)}
assert tuple(KINDS) == typing.get_args(AgentKind)


def kind(name: str) -> Kind:
    """The kind called `name` (a KeyError for an unknown one: configs are validated before)."""
    return KINDS[name]
