"""Neural Ensemble++ and its baselines: loss, gradients, buffer, posterior, learning, errors, state."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from ensemblepp.neural import (  # noqa: E402
    EnsemblePlus,
    EnsemblePlusNet,
    EnsemblePlusPlusNet,
    EpiNet,
    EpiNetNet,
    GreedyNet,
    NeuralEnsemble,
    NeuralGreedy,
    ReplayBuffer,
    coordinate_support,
    draw,
)

torch.set_num_threads(1)

AGENTS = [NeuralEnsemble, EnsemblePlus, EpiNet, NeuralGreedy]
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda,
                                pytest.mark.skipif(not torch.cuda.is_available(),
                                                   reason="needs a CUDA device")]),
]


def _small(cls, dim=4, **kw):
    args = dict(hidden=(16, 16), update_start=8, batch_size=16, lr=3e-3, seed=0)
    args.update(kw)
    return cls(dim, **args)


def _fill(agent, n, seed=0, dim=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dim)).astype(np.float32)
    for i in range(n):
        agent.update(X[i], float(np.sin(X[i].sum())))
    return X


# --- model: one pass over many zeta --------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda g: EnsemblePlusPlusNet(5, 4, (8, 8), n_outputs=2, prior_scale=0.7, posterior_scale=0.3,
                                  generator=g),
    lambda g: EnsemblePlusPlusNet(5, 4, (8,), prior_net=nn.Sequential(nn.Linear(5, 3), nn.Tanh()),
                                  generator=g),
    lambda g: EnsemblePlusNet(5, 4, (8, 8), n_outputs=2, generator=g),
    lambda g: EpiNetNet(5, 4, (8, 8), n_outputs=2, generator=g),
])
def test_forward_batches_zeta_like_a_loop(make) -> None:
    gen = torch.Generator().manual_seed(0)
    net = make(gen).double()
    x = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    zeta = torch.randn(7, 4, generator=gen, dtype=torch.float64)
    out = net(x, zeta)
    assert out.shape == (6, 7, net.n_outputs)
    loop = torch.stack([net(x, zeta[j:j + 1])[:, 0] for j in range(7)], dim=1)
    torch.testing.assert_close(out, loop, rtol=1e-12, atol=1e-12)
    per_input = net(x, zeta.unsqueeze(0).expand(6, -1, -1))
    torch.testing.assert_close(per_input, out, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="zeta"):
        net(x, torch.zeros(7, 3, dtype=torch.float64))


def test_greedy_net_ignores_zeta() -> None:
    net = GreedyNet(5, (8,), n_outputs=3, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 5)
    out = net(x, torch.zeros(1, 0))
    assert out.shape == (4, 1, 3)
    torch.testing.assert_close(out[:, 0], net.feature_net(x) @ net.base_weight)


def test_ensemble_plus_plus_is_linear_in_zeta_with_unit_prior_rows() -> None:
    gen = torch.Generator().manual_seed(1)
    net = EnsemblePlusPlusNet(3, 6, (10,), n_outputs=2, generator=gen).double()
    rows = net.prior_weight.reshape(10, 2, 6)
    torch.testing.assert_close(rows.norm(dim=-1), torch.ones(10, 2, dtype=torch.float64))
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    z1, z2 = torch.randn(2, 1, 6, generator=gen, dtype=torch.float64)
    f0 = net(x, torch.zeros(1, 6, dtype=torch.float64))
    torch.testing.assert_close(net(x, z1 + 2 * z2) - f0, (net(x, z1) - f0) + 2 * (net(x, z2) - f0))
    torch.testing.assert_close(f0[:, 0], net.features(x) @ net.base_weight)


def test_default_mlp_shape_and_seeded_init() -> None:
    a = NeuralEnsemble(7, seed=3)
    b = NeuralEnsemble(7, seed=3)
    c = NeuralEnsemble(7, seed=4)
    assert a.model.feature_dim == 64
    widths = [m.out_features for m in a.model.feature_net.modules() if isinstance(m, nn.Linear)]
    assert widths == [64, 64]
    for (k, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=k)
    assert not torch.equal(a.model.ensemble_weight, c.model.ensemble_weight)


# --- the loss ------------------------------------------------------------------------

def _batch(agent, B, gen):
    x = torch.randn(B, agent.dim, generator=gen, dtype=torch.float64)
    r = torch.randn(B, generator=gen, dtype=torch.float64)
    xi = draw("sphere", B, agent.index_dim, generator=gen, dtype=torch.float64)
    return x, r, xi


@pytest.mark.parametrize("with_prior_net", [False, True])
def test_symmetrized_loss_equals_decoupled_form(with_prior_net: bool) -> None:
    M, c, s_prior, s_post = 5, 0.3, 1.7, 0.6
    prior_net = nn.Sequential(nn.Linear(4, 9), nn.Tanh()) if with_prior_net else None
    agent = NeuralEnsemble(4, ensemble_size=M, hidden=(12, 12), prior_net=prior_net,
                           prior_scale=s_prior, posterior_scale=s_post, perturbation_scale=c)
    agent.model.double()
    gen = torch.Generator().manual_seed(2)
    x, r, xi = _batch(agent, 11, gen)
    net = agent.model
    with torch.no_grad():
        h = net.feature_net(x)
        hp = prior_net(x) if with_prior_net else h
        base = (h @ net.base_weight)[:, 0]
        # Per-direction regression: s_post w_j^T sg(h) is fitted to c xi_j - s_prior w0_j^T h_p.
        pred = s_post * (h @ net.ensemble_weight) + s_prior * (hp @ net.prior_weight)
        decoupled = ((r - base) ** 2 + ((c * xi - pred) ** 2).sum(1)).mean()
        support = coordinate_support(M, dtype=torch.float64)
        torch.testing.assert_close(agent.loss_value(x, r, xi, support), decoupled,
                                   rtol=1e-12, atol=1e-12)
        # Other update distributions: a +-z pair leaves (r - base)^2 + <c xi - g, z>^2.
        half = draw("cube", (11, 3), M, generator=gen, scaling="reference", dtype=torch.float64)
        z = torch.cat([half, -half], dim=1)
        u = torch.einsum("bzm,bm->bz", half, c * xi - pred)
        expected = ((r - base) ** 2 + (u ** 2).mean(1)).mean()
        torch.testing.assert_close(agent.loss_value(x, r, xi, z), expected, rtol=1e-12, atol=1e-12)


def test_cross_entropy_loss_formula() -> None:
    M, c, C = 3, 0.4, 3
    agent = NeuralEnsemble(4, ensemble_size=M, hidden=(6,), n_outputs=C, loss="ce",
                           perturbation_scale=c)
    agent.model.double()
    gen = torch.Generator().manual_seed(5)
    x, _, xi = _batch(agent, 5, gen)
    y = torch.tensor([0, 2, 1, 1, 0], dtype=torch.float64)
    z = draw("gaussian", 4, M, generator=gen, scaling="reference", dtype=torch.float64)
    with torch.no_grad():
        logits = agent.model(x, z).numpy()
        total = 0.0
        for i in range(5):
            for j in range(4):
                lg = logits[i, j].copy()
                lg[int(y[i])] -= c * float(z[j] @ xi[i])
                total += -(lg[int(y[i])] - np.log(np.exp(lg).sum()))
        np.testing.assert_allclose(float(agent.loss_value(x, y, xi, z)), total / 20, rtol=1e-10)


def test_ce_score_is_probability_of_reward_one() -> None:
    agent = NeuralEnsemble(3, hidden=(5,), n_outputs=2, loss="ce", seed=1)
    A = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    state = agent.generator.get_state()
    a = agent.act(A)
    agent.generator.set_state(state)
    with torch.no_grad():
        zeta = agent._act_index()
        p1 = torch.softmax(agent.model(torch.as_tensor(A), zeta)[:, 0], dim=-1)[:, 1]
    assert a == int(torch.argmax(p1))


# --- gradients -----------------------------------------------------------------------

def _feature_grads(agent, loss):
    agent.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for p in agent.model.feature_net.parameters()]


def test_stop_gradient_and_frozen_prior() -> None:
    prior_net = nn.Sequential(nn.Linear(4, 9), nn.Tanh())
    agent = NeuralEnsemble(4, ensemble_size=5, hidden=(12, 12), prior_net=prior_net,
                           prior_scale=2.0, perturbation_scale=0.5, lr=1e-2, update_start=8)
    agent.model.double()
    gen = torch.Generator().manual_seed(3)
    x, r, xi = _batch(agent, 16, gen)
    z = coordinate_support(5, dtype=torch.float64)
    full = _feature_grads(agent, agent.loss_value(x, r, xi, z))
    base_only = _feature_grads(agent, ((r - (agent.model.features(x) @ agent.model.base_weight)[:, 0])
                                       ** 2).mean())
    for g, b in zip(full, base_only):
        torch.testing.assert_close(g, b, rtol=1e-12, atol=1e-14)
    assert any(float(g.abs().max()) > 0 for g in full)
    # The ensemble head does get a gradient.
    agent.optimizer.zero_grad()
    agent.loss_value(x, r, xi, z).backward()
    assert float(agent.model.ensemble_weight.grad.abs().max()) > 0
    # Priors never change and are not optimised.
    agent.model.float()
    prior_before = {k: v.clone() for k, v in agent.model.state_dict().items() if k.startswith("prior")}
    _fill(agent, 40)
    assert agent.n_sgd_steps > 0
    assert all(not p.requires_grad for p in prior_net.parameters())
    assert not agent.model.prior_weight.requires_grad
    for k, v in agent.model.state_dict().items():
        if k.startswith("prior"):
            torch.testing.assert_close(v, prior_before[k], rtol=0, atol=0)
    assert not torch.equal(agent.model.feature_net.layers[0].weight,
                           NeuralEnsemble(4, ensemble_size=5, hidden=(12, 12), prior_net=prior_net)
                           .model.feature_net
                           .layers[0].weight)


def test_epinet_and_ensemble_plus_gradients() -> None:
    epi = _small(EpiNet)
    epi.model.double()
    gen = torch.Generator().manual_seed(4)
    x, r, xi = _batch(epi, 8, gen)
    z = torch.randn(5, epi.index_dim, generator=gen, dtype=torch.float64)
    # Everything but the base head (epinet and prior) sends no gradient into the features.
    index_part = epi.model(x, z) - (epi.model.feature_net(x) @ epi.model.base_weight).unsqueeze(1)
    grads = _feature_grads(epi, (index_part ** 2).sum())
    assert all(float(g.abs().max()) == 0 for g in grads)
    assert float(epi.model.epi_h.grad.abs().max()) > 0
    # Ensemble+ trains its trunk through the heads (no stop-gradient); its prior trunk is frozen.
    ens = _small(EnsemblePlus)
    ens.model.double()
    heads_only = _feature_grads(ens, ens.loss_value(x, r, xi, ens._heads.double()))
    assert any(float(g.abs().max()) > 0 for g in heads_only)
    assert all(not p.requires_grad for p in ens.model.prior_net.parameters())
    ens.model.float()
    before = [p.clone() for p in ens.model.prior_net.parameters()]
    _fill(ens, 30)
    for p, q in zip(ens.model.prior_net.parameters(), before):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    epi.model.float()
    before = {k: v.clone() for k, v in epi.model.state_dict().items() if k.startswith("prior")}
    _fill(epi, 30)
    for k, v in before.items():
        torch.testing.assert_close(epi.model.state_dict()[k], v, rtol=0, atol=0)


# --- buffer --------------------------------------------------------------------------

def test_buffer_is_fifo_with_capacity() -> None:
    buf = ReplayBuffer(5, 2, 3)
    for i in range(8):
        buf.add(torch.tensor([i, -i], dtype=torch.float32), float(i), torch.full((3,), float(i)))
        assert len(buf) == min(i + 1, 5)
    x, r, xi = buf.ordered()
    np.testing.assert_array_equal(r.numpy(), [3, 4, 5, 6, 7])
    np.testing.assert_array_equal(x.numpy(), [[i, -i] for i in range(3, 8)])
    np.testing.assert_array_equal(xi[:, 0].numpy(), [3, 4, 5, 6, 7])
    objs = ReplayBuffer(3, None, 1)
    for i in range(5):
        objs.add(f"item{i}", float(i), torch.zeros(1))
    assert objs.ordered()[0] == ["item2", "item3", "item4"]


def test_agent_buffer_keeps_last_observations() -> None:
    agent = _small(NeuralEnsemble, buffer_capacity=10)
    X = _fill(agent, 25)
    x, r, xi = agent.buffer.ordered()
    np.testing.assert_array_equal(x.numpy(), X[-10:])
    np.testing.assert_allclose(r.numpy(), np.sin(X[-10:].sum(1)), rtol=1e-6)
    np.testing.assert_allclose(xi.norm(dim=1).numpy(), 1.0, rtol=1e-6)  # sphere xi
    assert agent.n_seen == 25 and len(agent.buffer) == 10


@pytest.mark.parametrize("name", ["gaussian", "sphere", "cube", "coordinate", "sparse"])
def test_every_reference_and_update_distribution_trains(name: str) -> None:
    agent = _small(NeuralEnsemble, reference=name, update=name)
    with pytest.raises(ValueError, match="empty"):
        agent.sgd_step()
    _fill(agent, 12)
    assert agent.n_sgd_steps == 5
    z = agent._train_index(16)
    assert z.shape == ((2 * 8, 8) if name == "coordinate" else (16, 16, 8))
    # Symmetrized: the second half of the indices is the negated first half.
    if name != "coordinate":
        torch.testing.assert_close(z[:, 8:], -z[:, :8])
    assert math.isfinite(float(agent.sgd_step()))


def test_schedule() -> None:
    agent = _small(NeuralEnsemble, update_start=5, update_every=3, n_updates=2)
    counts = []
    for _ in range(12):
        _fill(agent, 1)
        counts.append(agent.n_sgd_steps)
    # Training rounds at n_seen = 5, 8, 11, two steps each.
    assert counts == [0, 0, 0, 0, 2, 2, 2, 4, 4, 4, 6, 6]


# --- the linear limit: the closed-form Ensemble++ posterior -----------------------------

def test_frozen_linear_features_reach_closed_form_posterior() -> None:
    d, N, M = 3, 50, 64
    eta, s0 = 0.5, 1.0
    # Squared loss with Adam L2 coefficient wd / N is the ridge problem with penalty wd / 2,
    # i.e. eta^2 / s0 for the base head and (with s_post = 1) for the ensemble factor.
    wd = 2 * eta**2 / s0
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, d))
    r = X @ rng.normal(size=d) + eta * rng.normal(size=N)
    agent = NeuralEnsemble(d, ensemble_size=M, feature_net=nn.Identity(), prior_scale=math.sqrt(s0),
                           posterior_scale=1.0, perturbation_scale=eta, weight_decay=wd,
                           update_start=10**6, seed=0)
    for i in range(N):
        agent.update(X[i], r[i])
    idx = torch.arange(N)
    for lr, steps in [(0.02, 1200), (0.002, 500), (0.0002, 200)]:
        for group in agent.optimizer.param_groups:
            group["lr"] = lr
        for _ in range(steps):
            agent.sgd_step(idx)
    xi = agent.buffer.ordered()[2].double().numpy()
    A0 = math.sqrt(s0) * agent.model.prior_weight.double().numpy()  # Sigma0^(1/2) Z0, unit rows
    Sigma0_inv = np.eye(d) / s0
    Sigma = np.linalg.inv(Sigma0_inv + X.T @ X / eta**2)
    mu = Sigma @ (X.T @ r / eta**2)
    A = Sigma @ (Sigma0_inv @ A0 + X.T @ xi / eta)
    net = agent.model
    np.testing.assert_allclose(net.base_weight.detach().double().numpy()[:, 0], mu, atol=2e-5)
    A_net = (net.posterior_scale * net.ensemble_weight + net.prior_scale * net.prior_weight)
    np.testing.assert_allclose(A_net.detach().double().numpy(), A, atol=2e-5)
    # Spread of theta(zeta) = f(e_k, zeta) over reference draws: A A^T, which approximates Sigma.
    gen = torch.Generator().manual_seed(5)
    zeta = draw("gaussian", 4000, M, generator=gen, scaling="reference")
    with torch.no_grad():
        theta = net(torch.eye(d), zeta)[..., 0].double().numpy().T
    np.testing.assert_allclose(theta.mean(0), mu, atol=3e-3)
    np.testing.assert_allclose(np.cov(theta.T), A @ A.T, rtol=0.1, atol=3e-4)
    # With M = 64 the ensemble covariance matches Sigma to Monte-Carlo accuracy ~ sqrt(2 / M).
    np.testing.assert_allclose(np.diag(A @ A.T), np.diag(Sigma), rtol=0.3)
    np.testing.assert_allclose(A @ A.T, Sigma, atol=0.3 * np.diag(Sigma).max())


# --- learning ------------------------------------------------------------------------

def _nonlinear_bandit(agent, seed, T=300, K=8, d=4):
    rng = np.random.default_rng(123 + seed)
    A = rng.normal(size=(K, d)).astype(np.float32)
    u, v = rng.normal(size=d), rng.normal(size=d)
    mean = np.sin(1.5 * A @ u) + 0.5 * (A @ v) ** 2 / d
    regret = np.empty(T)
    for t in range(T):
        a = agent.act(A)
        regret[t] = mean.max() - mean[a]
        agent.update(A[a], mean[a] + 0.1 * rng.normal())
    return regret, mean.max() - mean.mean()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("cls", "kw"), [
    (NeuralEnsemble, {"perturbation_scale": 0.1}),
    (EnsemblePlus, {"perturbation_scale": 0.1}),
    (EpiNet, {"perturbation_scale": 0.1}),
    (NeuralGreedy, {}),
])
def test_agents_learn_nonlinear_bandit(cls, kw, device) -> None:
    agent = cls(4, hidden=(32, 32), update_start=16, batch_size=32, lr=3e-3, seed=0,
                device=device, **kw)
    regret, uniform = _nonlinear_bandit(agent, seed=0)
    assert regret.sum() < 0.4 * uniform * len(regret)
    assert regret[-100:].sum() < 0.1 * uniform * 100


def _stuck(cls, seed: int) -> bool:
    """Whether ``cls`` at its default exploration settings ends on a suboptimal arm of the small bandit."""
    extra = {} if cls is NeuralGreedy else {"perturbation_scale": 0.1}
    agent = cls(4, hidden=(32, 32), update_start=16, batch_size=32, lr=3e-3, seed=seed, **extra)
    regret, uniform = _nonlinear_bandit(agent, seed=0)
    return bool(regret[-100:].sum() > 0.1 * uniform * 100)


def test_default_exploration_escapes_the_greedy_trap() -> None:
    # The small bandit has a suboptimal arm that greedy settles on for some network seeds;
    # Ensemble++ and EpiNet at their default prior scales must leave it for every seed. (EpiNet
    # at prior 0.1, the sweep's best on the large bandits, stays on it for 3 of 8 seeds, as greedy
    # does: docs/results.md. Ensemble+ stays on it for 2-4 of 8 seeds at every prior from 0.3 to 3,
    # so it is not held to this.)
    seeds = range(4)
    assert any(_stuck(NeuralGreedy, s) for s in seeds)
    for cls in (NeuralEnsemble, EpiNet):
        assert not any(_stuck(cls, s) for s in seeds), cls.__name__


@pytest.mark.parametrize("cls", [NeuralEnsemble, EnsemblePlus, EpiNet])
def test_classification_agents_learn_bernoulli_bandit(cls) -> None:
    rng = np.random.default_rng(9)
    A = rng.normal(size=(8, 4)).astype(np.float32)
    p = 1 / (1 + np.exp(-3 * np.sin(A @ rng.normal(size=4))))
    agent = cls(4, hidden=(32, 32), update_start=16, batch_size=32, lr=3e-3, seed=2, loss="ce",
                n_outputs=2, perturbation_scale=0.1)
    regret = []
    for _ in range(350):
        a = agent.act(A)
        regret.append(p.max() - p[a])
        agent.update(A[a], int(rng.random() < p[a]))
    assert sum(regret[-100:]) < 0.1 * 100 * (p.max() - p.mean())


@pytest.mark.parametrize("cls", AGENTS)
def test_same_seed_same_actions(cls) -> None:
    def actions(seed):
        agent = _small(cls, seed=seed)
        rng = np.random.default_rng(0)
        out = []
        for _ in range(40):
            A = rng.normal(size=(6, 4))
            a = agent.act(A)
            out.append(a)
            agent.update(A[a], float(rng.normal()))
        return out
    assert actions(1) == actions(1)
    if cls is not NeuralGreedy:
        assert actions(1) != actions(2)


def test_torch_inputs_and_mask() -> None:
    agent = _small(NeuralEnsemble)
    A = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for _ in range(20):
        mask = np.array([False, True, False, True, False])
        a = agent.act(A, mask=mask)
        assert a in (1, 3)
        agent.update(A[a], torch.tensor(0.5))
    assert agent.act(A, mask=torch.tensor([False, False, True, False, False])) == 2


def test_custom_feature_net_and_object_inputs() -> None:
    net = nn.Sequential(nn.Linear(4, 7), nn.Tanh())
    agent = NeuralEnsemble(4, feature_net=net, update_start=4, batch_size=8)
    assert agent.model.feature_dim == 7
    _fill(agent, 10)

    class CharBag(nn.Module):
        """Toy text encoder: a learned embedding averaged over the characters of each string."""

        feature_dim = 6

        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(128, 6)

        def forward(self, items):
            rows = [self.emb(torch.tensor([ord(ch) % 128 for ch in s])).mean(0) for s in items]
            return torch.stack(rows)

    for cls in AGENTS:
        agent = cls(None, feature_net=CharBag(), update_start=2, batch_size=4, lr=1e-2)
        words = ["good", "bad", "fine"]
        for _ in range(6):
            a = agent.act(words)
            agent.update(words[a], 1.0 if words[a] == "good" else 0.0)
        assert agent.n_sgd_steps == 5
        with pytest.raises(TypeError, match="list"):
            agent.act(np.zeros((3, 4)))


# --- bad input -----------------------------------------------------------------------

def _snapshot(agent):
    return (agent.n_seen, agent.n_sgd_steps, agent.buffer.pos, len(agent.buffer),
            agent.generator.get_state().clone(), agent.buffer.r.clone(),
            [p.detach().clone() for p in agent.model.parameters()])


def _assert_same(a, b):
    assert a[:4] == b[:4]
    assert torch.equal(a[4], b[4]) and torch.equal(a[5], b[5])
    assert all(torch.equal(p, q) for p, q in zip(a[6], b[6]))


@pytest.mark.parametrize("cls", AGENTS)
def test_bad_input_raises_and_leaves_state(cls) -> None:
    agent = _small(cls)
    _fill(agent, 12)
    before = _snapshot(agent)
    A = np.zeros((5, 4))
    bad_calls = [
        (ValueError, "actions", lambda: agent.act(np.zeros((5, 3)))),
        (ValueError, "actions", lambda: agent.act(np.zeros(4))),
        (ValueError, "actions", lambda: agent.act(np.zeros((0, 4)))),
        (ValueError, "actions", lambda: agent.act(np.full((5, 4), np.nan))),
        (TypeError, "actions", lambda: agent.act(np.array([["a"] * 4] * 5))),
        (ValueError, "mask", lambda: agent.act(A, mask=np.ones(4, bool))),
        (ValueError, "mask", lambda: agent.act(A, mask=np.zeros(5, bool))),
        (TypeError, "mask", lambda: agent.act(A, mask=np.ones(5))),
        (ValueError, "x", lambda: agent.update(np.zeros(5), 1.0)),
        (ValueError, "x", lambda: agent.update(np.array([0, np.inf, 0, 0]), 1.0)),
        (ValueError, "r", lambda: agent.update(np.zeros(4), float("nan"))),
        (ValueError, "r", lambda: agent.update(np.zeros(4), np.inf)),
        (ValueError, "r", lambda: agent.update(np.zeros(4), np.zeros(2))),
        (TypeError, "r", lambda: agent.update(np.zeros(4), "1.0")),
        # Finite in float64 but not in the networks' float32: were accepted as inf (x into the buffer).
        (ValueError, "actions .*float32", lambda: agent.act(np.vstack([A, [[1e300, 0, 0, 0]]]))),
        (ValueError, "x .*float32", lambda: agent.update(np.array([0, -1e39, 0, 0]), 1.0)),
        (ValueError, "x .*float32", lambda: agent.update(torch.tensor([0, 1e300, 0, 0], dtype=torch.float64), 1.0)),
        (ValueError, "r .*float32", lambda: agent.update(np.zeros(4), 1e300)),
    ]
    for exc, match, call in bad_calls:
        with pytest.raises(exc, match=match):
            call()
    _assert_same(before, _snapshot(agent))


@pytest.mark.filterwarnings("error")  # no cast warning on the way (float64 -> float32 narrowing)
@pytest.mark.parametrize("cls", AGENTS)
def test_other_byte_orders_and_float_widths_act_like_native_float32(cls) -> None:
    # torch refuses a big-endian array and long double outright; the agents convert them (one copy).
    X = np.random.default_rng(3).normal(size=(6, 4))
    chosen = {}
    for kind in ("<f4", ">f8", ">f4", "longdouble", "float16"):
        agent = _small(cls)
        _fill(agent, 12)
        Xk = X.astype(kind)
        chosen[kind] = [agent.act(Xk) for _ in range(5)]
        agent.update(Xk[0], 0.5)
        chosen[kind].append(agent.act(Xk))
    base = chosen.pop("float16")  # float16 rounds the features: only its run must work
    assert len(base) == 6
    for kind, got in chosen.items():
        assert got == chosen["<f4"], kind


def test_bad_labels_for_cross_entropy() -> None:
    agent = _small(NeuralEnsemble, loss="ce", n_outputs=3)
    before = _snapshot(agent)
    for r in (3, -1, 0.5):
        with pytest.raises(ValueError, match="label"):
            agent.update(np.zeros(4), r)
    _assert_same(before, _snapshot(agent))
    agent.update(np.zeros(4), 2)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"reference": "laplace"}, "reference"),
    ({"update": "uniform"}, "update"),
    ({"loss": "huber"}, "loss"),
    ({"ensemble_size": 0}, "ensemble_size"),
    ({"lr": -1.0}, "lr"),
    ({"lr": float("nan")}, "lr"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"batch_size": 0}, "batch_size"),
    ({"buffer_capacity": 0}, "buffer_capacity"),
    ({"update_start": 0}, "update_start"),
    ({"n_outputs": 2}, "n_outputs"),
    ({"loss": "ce", "n_outputs": 1}, "n_outputs"),
    ({"device": "tpu"}, "device"),
    ({"seed": -1}, "seed"),
    ({"hidden": (0,)}, "hidden"),
    ({"prior_scale": -1.0}, "prior_scale"),
    ({"feature_net": "mlp"}, "feature_net"),
])
def test_bad_constructor_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        NeuralEnsemble(4, **kwargs)


def test_cuda_without_device_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device exists")
    with pytest.raises(ValueError, match="CUDA"):
        NeuralEnsemble(4, device="cuda")


# --- state ---------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cls", AGENTS)
def test_state_dict_round_trip_continues_trajectory(cls, device) -> None:
    def play(agent, rng, n):
        out = []
        for _ in range(n):
            A = rng.normal(size=(6, 4))
            a = agent.act(A)
            out.append(a)
            agent.update(A[a], float(np.cos(A[a].sum())))
        return out

    agent = _small(cls, device=device)
    rng = np.random.default_rng(0)
    play(agent, rng, 30)
    blob = io.BytesIO()
    torch.save(agent.state_dict(), blob)
    blob.seek(0)
    restored = _small(cls, device=device, seed=99)
    restored.load_state_dict(torch.load(blob, weights_only=False))
    assert restored.n_seen == 30
    rng_state = rng.bit_generator.state
    first = play(agent, rng, 20)
    rng.bit_generator.state = rng_state
    second = play(restored, rng, 20)
    assert first == second
    for p, q in zip(agent.model.parameters(), restored.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_load_state_dict_rejects_mismatch_and_keeps_state() -> None:
    agent = _small(NeuralEnsemble)
    _fill(agent, 12)
    other = _small(NeuralEnsemble, ensemble_size=3)
    before = _snapshot(other)
    with pytest.raises(ValueError, match="config"):
        other.load_state_dict(agent.state_dict())
    with pytest.raises(ValueError, match="EpiNet"):
        _small(EnsemblePlus).load_state_dict(_small(EpiNet).state_dict())
    with pytest.raises(ValueError, match="state"):
        other.load_state_dict({"model": {}})
    _assert_same(before, _snapshot(other))
    # An optimiser state that does not fit is refused before anything changes.
    same = _small(NeuralEnsemble, seed=5)
    _fill(same, 9, seed=1)
    before = _snapshot(same)
    broken = agent.state_dict()
    broken["optimizer"] = {"state": {}, "param_groups": []}
    with pytest.raises(ValueError, match="optimizer"):
        same.load_state_dict(broken)
    _assert_same(before, _snapshot(same))
