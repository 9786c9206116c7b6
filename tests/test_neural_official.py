"""style="official": the authors' initial laws, index and target-noise distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ensemblepp.neural import EnsemblePlus, EpiNet, NeuralEnsemble  # noqa: E402

D, F, M = 20, 32, 8


def _std(values):
    return torch.cat([v.flatten() for v in values]).std().item()


def test_ensemblepp_official_base_head_and_reference():
    heads = [NeuralEnsemble(D, M, hidden=(F,), style="official", seed=s).model.base_weight for s in range(40)]
    bound = 1 / math.sqrt(F)
    assert max(h.abs().max().item() for h in heads) <= bound
    # U(-b, b) has standard deviation b / sqrt(3).
    assert _std(heads) == pytest.approx(bound / math.sqrt(3), rel=0.06)
    default = [NeuralEnsemble(D, M, hidden=(F,), seed=s, style="ensemblepp").model.base_weight for s in range(40)]
    assert _std(default) == pytest.approx(math.sqrt(2 / (F + 1)), rel=0.06)
    agent = NeuralEnsemble(D, M, style="official")
    assert agent.reference == "sphere" and agent.update_distribution == "coordinate"
    z = torch.cat([agent._act_index() for _ in range(50)])
    torch.testing.assert_close(z.norm(dim=1), torch.full((50,), math.sqrt(M)))
    assert NeuralEnsemble(D, M, style="ensemblepp").reference == "gaussian"
    assert NeuralEnsemble(D, M).style == "official" and EnsemblePlus(D, M).style == "official"


def test_ensemble_plus_official_heads_and_formula():
    agent = EnsemblePlus(D, M, hidden=(F,), style="official", prior_scale=2.0, posterior_scale=0.3, seed=1)
    net = agent.model
    assert net.ensemble_bias is not None and net.ensemble_bias.requires_grad
    assert torch.equal(net.ensemble_bias, torch.zeros(M))
    ws = [EnsemblePlus(D, M, hidden=(F,), style="official", seed=s).model for s in range(30)]
    xavier = math.sqrt(2 / (F + 1))  # one nn.Linear(F, 1) per head
    assert _std([w.ensemble_weight for w in ws]) == pytest.approx(xavier, rel=0.06)
    assert _std([w.prior_weight for w in ws]) == pytest.approx(xavier, rel=0.06)
    # f(x, e_k) = s_post (h W + b)_k + s_prior (h_p W0)_k, checked against the parts.
    with torch.no_grad():
        net.ensemble_bias.copy_(torch.arange(M, dtype=torch.float32) / 10)
        x = torch.randn(5, D)
        h, hp = net.feature_net(x), net.prior_net(x)
        want = 0.3 * (h @ net.ensemble_weight + net.ensemble_bias) + 2.0 * (hp @ net.prior_weight)
        got = net(x, torch.eye(M))[..., 0]
    torch.testing.assert_close(got, want)
    # Acting and training use unit one-hot indices: head k's target noise is c xi_k, sd c / sqrt(M).
    torch.testing.assert_close(agent._train_index(4), torch.eye(M))
    torch.testing.assert_close(EnsemblePlus(D, M, style="ensemblepp")._train_index(4), torch.eye(M) * math.sqrt(M))
    xi = torch.stack([agent._draw_xi() for _ in range(4000)])
    assert xi.std().item() == pytest.approx(1 / math.sqrt(M), rel=0.05)


def test_ensemble_plus_posterior_scale_in_default_style():
    a = EnsemblePlus(D, M, hidden=(F,), posterior_scale=0.0, prior_scale=1.0, seed=2, style="ensemblepp")
    b = EnsemblePlus(D, M, hidden=(F,), posterior_scale=1.0, prior_scale=0.0, seed=2, style="ensemblepp")
    x = torch.randn(3, D)
    with torch.no_grad():
        hp = a.model.prior_net(x)
        torch.testing.assert_close(a.model(x, torch.eye(M))[..., 0], hp @ a.model.prior_weight)
        torch.testing.assert_close(b.model(x, torch.eye(M))[..., 0], b.model.feature_net(x) @ b.model.ensemble_weight)


def test_epinet_official_laws_and_per_sample_indices():
    nets = [EpiNet(D, M, hidden=(F,), style="official", seed=s).model for s in range(30)]
    net = nets[0]
    assert net.base_bias is not None and net.base_bias.abs().max().item() <= 1 / math.sqrt(F)
    assert torch.equal(net.epi_b, torch.zeros(15))
    for mod in net.epi_rest:
        if isinstance(mod, torch.nn.Linear):
            assert torch.equal(mod.bias, torch.zeros_like(mod.bias))
    fan_in = D + F + M
    assert _std([n.epi_h for n in nets] + [n.epi_x for n in nets]) == \
        pytest.approx(math.sqrt(2 / (fan_in + 15)), rel=0.06)
    assert _std([n.prior_w0 for n in nets]) == pytest.approx(math.sqrt(2 / (D + 5)), rel=0.06)
    assert _std([n.prior_w1 for n in nets]) == pytest.approx(math.sqrt(2 / (5 + 5)), rel=0.08)
    assert all(torch.equal(getattr(net, f"prior_b{i}"), torch.zeros_like(getattr(net, f"prior_b{i}")))
               for i in range(3))
    agent = EpiNet(D, M, style="official", n_index_samples=16)
    z = agent._train_index(128)
    assert z.shape == (128, 16, M)  # one set of indices per observation, N(0, I)
    assert z.std().item() == pytest.approx(1.0, rel=0.03)
    assert EpiNet(D, M, style="ensemblepp")._train_index(128).shape == (16, M)  # shared indices
    # base head with its bias enters f(x, z) additively
    x = torch.randn(4, D)
    zz = torch.randn(3, M)
    with torch.no_grad():
        out = net(x, zz)
        net.base_bias += 1.0
        torch.testing.assert_close(net(x, zz), out + 1.0)


def test_style_is_checked_and_kept_in_the_state():
    with pytest.raises(ValueError, match="style"):
        NeuralEnsemble(D, M, style="paper")
    a = EpiNet(D, M, style="official")
    b = EpiNet(D, M, style="ensemblepp")
    with pytest.raises(ValueError):
        b.load_state_dict(a.state_dict())
    np.testing.assert_equal(a.state_dict()["config"]["style"], "official")
