import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iapo import update as update_mod
from iapo import checkpoint
from iapo.agent import Agent, act
from iapo.replay import Batch
from iapo.config import AgentConfig
from iapo.train_step import train_step

OBS, ACT = 5, 2


def update(agent, state, batch):
    """One update through the compiled step that training runs (`train_step`, one update)."""
    packed = jnp.concatenate([batch.obs, batch.action, batch.reward[:, None], batch.next_obs,
                              batch.terminated[:, None]], axis=-1)[None]  # (U = 1, B, width)
    state, infos, _, _ = train_step(agent, state, packed, batch.obs[:1], jax.random.PRNGKey(0))
    return state, jax.tree.map(lambda x: x[0], infos)


def _batch(key, b=16):
    k = jax.random.split(key, 4)
    return Batch(
        obs=jax.random.normal(k[0], (b, OBS)),
        action=jnp.tanh(jax.random.normal(k[1], (b, ACT))),
        reward=jax.random.normal(k[2], (b,)),
        next_obs=jax.random.normal(k[3], (b, OBS)),
        terminated=jnp.zeros((b,)),
    )


def _agent(kind, **kw):
    cfg = AgentConfig(agent=kind, hidden_sizes=(16,), critic_hidden_sizes=(16,), iterations=2,
                      action_samples=3, batch_size=16, **kw)
    return Agent(cfg, OBS, ACT)


@pytest.mark.parametrize("kind", ["direct", "iterative"])
def test_update_compiles_once_and_key_advances(kind):
    agent = _agent(kind)
    state = agent.init(jax.random.PRNGKey(0))
    before = update_mod.TRACE_COUNT["update"]
    keys = []
    for i in range(4):
        keys.append(np.asarray(state.key))
        state, info = update(agent, state, _batch(jax.random.PRNGKey(i)))
    assert update_mod.TRACE_COUNT["update"] - before == 1
    assert len({k.tobytes() for k in keys}) == 4
    assert int(state.updates) == 4
    assert all(np.all(np.isfinite(np.asarray(v))) for v in info.values())


@pytest.mark.parametrize("kind", ["direct", "iterative"])
def test_update_changes_every_learned_part(kind):
    agent = _agent(kind)
    state = agent.init(jax.random.PRNGKey(0))
    old = jax.tree.map(np.asarray, state)
    state, _ = update(agent, state, _batch(jax.random.PRNGKey(1)))
    for name in ("policy_params", "critic_params", "target_critic_params", "log_alpha"):
        a, b = jax.tree.leaves(getattr(old, name)), jax.tree.leaves(getattr(state, name))
        assert any(not np.array_equal(x, np.asarray(y)) for x, y in zip(a, b)), name


def test_polyak_and_hard_copy_of_targets():
    agent = _agent("direct", tau=0.5, target_copy_every=2)
    state = agent.init(jax.random.PRNGKey(0))
    state, _ = update(agent, state, _batch(jax.random.PRNGKey(1)))
    c, t = jax.tree.leaves(state.critic_params), jax.tree.leaves(state.target_critic_params)
    assert any(not np.allclose(x, y) for x, y in zip(c, t))  # Polyak: not a copy
    state, _ = update(agent, state, _batch(jax.random.PRNGKey(2)))
    c, t = jax.tree.leaves(state.critic_params), jax.tree.leaves(state.target_critic_params)
    assert all(np.array_equal(x, y) for x, y in zip(c, t))  # copied at update 2


def test_terminated_cuts_the_bootstrap_and_truncation_does_not():
    agent = _agent("direct")
    state = agent.init(jax.random.PRNGKey(0))
    batch = _batch(jax.random.PRNGKey(1))
    y_cont = update_mod.critic_target(agent, state, batch, jax.random.PRNGKey(2))
    y_term = update_mod.critic_target(agent, state, batch.replace(terminated=jnp.ones(16)), jax.random.PRNGKey(2))
    np.testing.assert_allclose(y_term, batch.reward)
    assert not np.allclose(y_cont, batch.reward)


@pytest.mark.parametrize("kind", ["direct", "iterative"])
def test_act_stochastic_and_deterministic(kind):
    agent = _agent(kind)
    state = agent.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (3, OBS))
    a1, k1 = act(agent, state, obs, jax.random.PRNGKey(2))
    a2, _ = act(agent, state, obs, k1)
    assert a1.shape == (3, ACT) and jnp.all(jnp.abs(a1) < 1)
    assert not np.allclose(a1, a2)
    d1, _ = act(agent, state, obs, jax.random.PRNGKey(2), deterministic=True)
    d2, _ = act(agent, state, obs, jax.random.PRNGKey(3), deterministic=True)
    if kind == "direct":
        np.testing.assert_array_equal(d1, d2)
    else:  # the iterative estimate depends on the sampled gradients, its mode is tanh(mu)
        assert d1.shape == (3, ACT) and jnp.all(jnp.abs(d1) < 1)
    more, _ = act(agent, state, obs, jax.random.PRNGKey(2), deterministic=True, iterations=4)
    assert more.shape == (3, ACT)


@pytest.mark.parametrize("kind", ["direct", "iterative"])
def test_checkpoint_round_trip_gives_the_same_action(kind, tmp_path):
    agent = _agent(kind)
    state = agent.init(jax.random.PRNGKey(0))
    state, _ = update(agent, state, _batch(jax.random.PRNGKey(1)))
    obs = jax.random.normal(jax.random.PRNGKey(1), (3, OBS))
    want, _ = act(agent, state, obs, jax.random.PRNGKey(5), deterministic=True)
    checkpoint.save(tmp_path, 7, state)
    step, restored, _ = checkpoint.load_latest(tmp_path, agent.init(jax.random.PRNGKey(9)))
    got, _ = act(agent, restored, obs, jax.random.PRNGKey(5), deterministic=True)
    assert step == 7
    np.testing.assert_array_equal(got, want)


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    from iapo.errors import IapoError

    state = _agent("direct").init(jax.random.PRNGKey(0))
    checkpoint.save(tmp_path, 1, state)
    with pytest.raises(IapoError, match="does not match"):
        checkpoint.load_latest(tmp_path, _agent("iterative").init(jax.random.PRNGKey(0)))


@pytest.mark.parametrize("kind", ["direct", "iterative"])
def test_weight_init_schemes_start_the_networks_as_named(kind):
    """lecun is the default (the same draws as naming it); torch draws PyTorch's nn.Linear
    default; reference the reference code's (hidden biases 0.1, output layers within 1e-3 for the
    policy and 3e-3 for the critics); the iterative heads start at zero under every scheme."""
    def layers(params):  # {layer name: (kernel, bias)} of one network, critics' member 0
        flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
                for path, v in jax.tree_util.tree_leaves_with_path(params)}
        names = sorted({p.rsplit("/", 1)[0] for p in flat})
        return {n: (flat[n + "/kernel"], flat[n + "/bias"]) for n in names}

    key = jax.random.PRNGKey(3)
    states = {s: _agent(kind, weight_init=s).init(key) for s in ("lecun", "torch", "reference")}
    assert AgentConfig().weight_init == "lecun"
    default = _agent(kind).init(key)
    for a, b in zip(jax.tree.leaves(default.critic_params), jax.tree.leaves(states["lecun"].critic_params)):
        np.testing.assert_array_equal(a, b)

    for scheme, state in states.items():
        for net, params in (("critic", state.critic_params), ("policy", state.policy_params)):
            for name, (w, b) in layers(params).items():
                w, b = (w[0], b[0]) if net == "critic" else (w, b)  # the first of the two critics
                fan_in = w.shape[0]
                output = name.endswith("Dense_1") or name.endswith(("update", "gate"))
                if net == "policy" and name.endswith(("update", "gate")):
                    assert not w.any() and not b.any(), (scheme, name)  # zero under every scheme
                elif scheme == "lecun":
                    assert not b.any() and 0.5 < w.std() * np.sqrt(fan_in) < 1.5, (name, w.std())
                elif scheme == "torch":
                    bound = 1 / np.sqrt(fan_in)
                    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound and b.any(), name
                    assert w.std() < 0.75 * bound, name  # uniform: std bound/sqrt(3), not lecun's
                elif output:
                    bound = 3e-3 if net == "critic" else 1e-3
                    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound and b.any(), name
                else:
                    np.testing.assert_allclose(b, 0.1)
                    xavier = np.sqrt(2 * 2 / (fan_in + w.shape[1]))  # Xavier normal, gain sqrt(2)
                    assert 0.7 < w.std() / xavier < 1.3, (name, w.std(), xavier)
