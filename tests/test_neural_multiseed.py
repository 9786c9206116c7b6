"""MultiSeed: S neural agents stepped as one computation, each seed equal to the agent alone."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ensemblepp.neural import EnsemblePlus, EpiNet, MultiSeed, NeuralEnsemble, NeuralGreedy  # noqa: E402
from ensemblepp.neural._multiseed import _native_ok  # noqa: E402

D, K, T = 6, 5, 60
SMALL = {"hidden": (12, 12), "update_start": 8, "n_updates": 2, "batch_size": 8, "lr": 3e-3}
CASES = [
    (NeuralEnsemble, {}),
    (NeuralEnsemble, {"style": "official", "update": "sphere"}),
    (EnsemblePlus, {}),
    (EnsemblePlus, {"style": "official", "posterior_scale": 0.5}),
    (EpiNet, {}),
    (EpiNet, {"style": "official"}),
    # Indices shared by the minibatch; several outputs and prior MLPs of unequal widths
    # (the batched prior's block-diagonal layout and the fused index contraction).
    (EpiNet, {"style": "ensemblepp"}),
    (EpiNet, {"loss": "ce", "n_outputs": 3, "prior_hidden": (4, 3, 2), "prior_scale": 2.0}),
    (NeuralGreedy, {}),
    (NeuralEnsemble, {"loss": "ce", "n_outputs": 2}),
]


def _trajectories(cls, opts, seeds, shared=False, mask=None):
    rng = np.random.default_rng(5)
    S = len(seeds)
    ms = MultiSeed(cls, D, seeds, **opts)
    singles = [cls(D, seed=s, **opts) for s in seeds]
    for t in range(T):
        acts = rng.standard_normal((K, D) if shared else (S, K, D))
        a_ms = ms.act(acts, mask=mask)
        a_single = np.array([ag.act(acts if shared else acts[i], mask=mask) for i, ag in enumerate(singles)])
        np.testing.assert_array_equal(a_ms, a_single, err_msg=f"step {t}")
        x = acts[a_single] if shared else acts[np.arange(S), a_single]
        r = x[:, 0] + 0.1 * rng.standard_normal(S)
        if opts.get("loss") == "ce":
            r = (r > 0).astype(float)
        ms.update(x, r)
        for i, ag in enumerate(singles):
            ag.update(x[i], r[i])
    return ms, singles


def _assert_same_agent(ms, i, single):
    for name, p in single.model.named_parameters():
        torch.testing.assert_close(ms.param(name, i), p.detach(), atol=2e-5, rtol=1e-4, msg=name)
    for name, b in single.model.named_buffers():
        torch.testing.assert_close(ms.buffers[name][i], b, msg=name)


@pytest.mark.parametrize("cls,extra", CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_each_seed_equals_the_agent_alone(cls, extra):
    opts = {**SMALL, **extra}
    if cls is not NeuralGreedy:
        opts["ensemble_size"] = 4
    ms, singles = _trajectories(cls, opts, [3, 7, 11])
    assert ms._native  # default networks take the hand-batched path
    assert ms.n_seen == T and ms.n_sgd_steps == singles[0].n_sgd_steps > 0
    for i, single in enumerate(singles):
        _assert_same_agent(ms, i, single)


def test_shared_actions_and_mask():
    mask = np.array([True, False, True, True, False])
    ms, singles = _trajectories(NeuralEnsemble, {**SMALL, "ensemble_size": 4}, [0, 1], shared=True, mask=mask)
    for i, single in enumerate(singles):
        _assert_same_agent(ms, i, single)


def test_generic_vmap_path_for_other_feature_networks():
    def tanh_net(seed):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(D, 8), torch.nn.Tanh())

    opts = {**SMALL, "ensemble_size": 4, "feature_dim": 8}
    rng = np.random.default_rng(0)
    seeds = [1, 2]

    class Agent(NeuralEnsemble):
        def __init__(self, dim, seed, **kw):
            super().__init__(dim, seed=seed, feature_net=tanh_net(seed), **kw)

    ms = MultiSeed(Agent, D, seeds, **opts)
    assert not ms._native
    singles = [Agent(D, seed=s, **opts) for s in seeds]
    for _ in range(30):
        acts = rng.standard_normal((2, K, D))
        a = ms.act(acts)
        np.testing.assert_array_equal(a, [ag.act(acts[i]) for i, ag in enumerate(singles)])
        x = acts[np.arange(2), a]
        ms.update(x, x[:, 1])
        for i, ag in enumerate(singles):
            ag.update(x[i], x[i, 1])
    for i, single in enumerate(singles):
        _assert_same_agent(ms, i, single)


def test_agent_export_continues_alone():
    opts = {**SMALL, "ensemble_size": 4}
    ms, singles = _trajectories(EpiNet, opts, [4, 5])
    exported = ms.agent(1)
    ref = singles[1]
    assert exported.n_seen == ref.n_seen and exported.n_sgd_steps == ref.n_sgd_steps
    assert torch.equal(exported.buffer.r, ref.buffer.r) and exported.buffer.pos == ref.buffer.pos
    rng = np.random.default_rng(9)
    for _ in range(15):  # the exported agent continues the same trajectory as the one run alone
        acts = rng.standard_normal((K, D))
        a, b = exported.act(acts), ref.act(acts)
        assert a == b
        exported.update(acts[a], float(acts[a, 0]))
        ref.update(acts[a], float(acts[a, 0]))
    for name, p in ref.model.named_parameters():
        torch.testing.assert_close(dict(exported.model.named_parameters())[name], p, atol=2e-5, rtol=1e-4)


def test_bad_input_changes_nothing():
    ms = MultiSeed(NeuralEnsemble, D, [0, 1], **SMALL, ensemble_size=4)
    before = ms.agents[0].generator.get_state().clone()
    with pytest.raises(ValueError, match="actions"):
        ms.act(np.zeros((3, K, D)))
    with pytest.raises(ValueError, match="finite"):
        ms.act(np.full((2, K, D), np.nan))
    with pytest.raises(ValueError, match="mask"):
        ms.act(np.zeros((2, K, D)), mask=np.zeros((2, K), bool))
    with pytest.raises(ValueError, match="x must have shape"):
        ms.update(np.zeros((3, D)), np.zeros(3))
    with pytest.raises(ValueError, match="r must have shape"):
        ms.update(np.zeros((2, D)), np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        ms.update(np.zeros((2, D)), np.array([0.0, np.inf]))
    with pytest.raises(ValueError, match="x .*float32"):  # finite in float64, inf in the agents' float32
        ms.update(np.full((2, D), 1e300), np.zeros(2))
    assert ms.n_seen == 0 and ms._size == 0
    assert torch.equal(ms.agents[0].generator.get_state(), before)
    with pytest.raises(ValueError, match="dim=None"):
        MultiSeed(NeuralEnsemble, None, [0])
    with pytest.raises(ValueError, match="seeds"):
        MultiSeed(NeuralEnsemble, D, [])
    with pytest.raises(ValueError, match="dropout"):
        MultiSeed(NeuralGreedy, D, [0], feature_net=torch.nn.Sequential(torch.nn.Linear(D, 4), torch.nn.Dropout()),
                  feature_dim=4)
    with pytest.raises(ValueError, match="i must be"):
        ms.agent(2)


def test_native_path_only_for_default_networks():
    assert _native_ok(NeuralEnsemble(D, 4, hidden=(8,)).model)
    assert not _native_ok(NeuralEnsemble(D, 4, hidden=(8,), prior_net=torch.nn.Linear(D, 3),
                                         prior_feature_dim=3).model)
    assert _native_ok(EpiNet(D, 4, hidden=(8,)).model)


def test_runner_seed_alone_equals_seed_in_a_batch():
    from ensemblepp.experiments import run_experiment
    from ensemblepp.experiments.runner import neural_seed

    base = {"horizon": 60, "agent_seed": 4,
            "environment": {"name": "quadratic", "dim": D, "n_actions": K, "n_arms": 30},
            "agents": [{"name": "neural-ensemble++", "label": "E", "hidden": [8], "update_start": 8,
                        "batch_size": 8, "M": 4}]}
    together = run_experiment({**base, "seeds": [0, 1, 2]}, progress=False)
    alone = run_experiment({**base, "seeds": [2]}, progress=False)
    np.testing.assert_array_equal(together.regret["E"][2], alone.regret["E"][0])
    assert neural_seed(4, 2) != neural_seed(4, 1) and neural_seed(4, 2) != neural_seed(5, 2)
    assert 0 <= neural_seed(2**40, 2**40) < 2**63


def test_paper_agent_set_pins_the_official_configuration():
    from ensemblepp.experiments.presets import PAPER_FIXED, neural_agent_set

    paper = {a["label"]: a for a in neural_agent_set("quadratic", "paper")}
    epp = paper["Ensemble++ (official, paper)"]
    assert epp["style"] == "official" and epp["lr"] == 1e-4 and epp["prior_scale"] == 5.0
    assert epp["posterior_scale"] == 1.0 and epp["n_updates"] == 4
    assert all(a.get("style", "official") == "official" for a in paper.values())
    assert set(PAPER_FIXED) <= set(paper["EpiNet (official, paper)"])
    cls = {a["name"]: a for a in neural_agent_set("neural-classification", "tuned")}
    assert cls["epinet"]["loss"] == "ce" and "update_every" not in cls["epinet"]
    assert neural_agent_set("neural-classification", "paper")[2]["update_every"] == 10
    with pytest.raises(ValueError, match="env"):
        neural_agent_set("finite-linear")
    with pytest.raises(ValueError, match="which"):
        neural_agent_set("quadratic", "best")


def test_tuned_values_are_the_constructor_defaults():
    import inspect

    from ensemblepp.experiments.presets import TUNED

    classes = {"neural-ensemble++": NeuralEnsemble, "ensemble+": EnsemblePlus, "epinet": EpiNet}
    assert set(TUNED) == set(classes)
    for name, opts in TUNED.items():
        params = inspect.signature(classes[name]).parameters
        for key, value in opts.items():
            assert params[key].default == value, (name, key)


@pytest.mark.parametrize("cls,extra", [
    (NeuralEnsemble, {}), (NeuralEnsemble, {"reference": "gaussian", "update": "sphere"}),
    (NeuralEnsemble, {"reference": "cube", "update": "sparse"}), (EnsemblePlus, {}),
    (EpiNet, {}), (EpiNet, {"style": "ensemblepp"}), (NeuralGreedy, {}),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_batched_draws_are_each_seeds_own_draws_bit_for_bit(cls, extra):
    # MultiSeed makes every seed's primitive draw into one tensor and finishes them together;
    # the result must be exactly what each agent draws alone, draw after draw.
    seeds = [3, 9, 4]
    opts = extra if cls is NeuralGreedy else {"ensemble_size": 4, **extra}
    ms = MultiSeed(cls, 5, seeds, **opts)
    singles = [cls(5, seed=s, **opts) for s in seeds]
    for _ in range(3):
        for kind in ("act", "xi", "train"):
            batched = ms._draw_all(kind, 7)
            alone = torch.stack([a._make_draw(kind, 7) for a in singles])
            assert batched.shape == alone.shape
            assert torch.equal(batched, alone), (kind, cls.__name__)


def test_subclass_drawing_in_its_own_method_still_batches():
    class FixedIndex(NeuralEnsemble):
        # Acts with the first coordinate direction always: an _act_index override, no plan.
        def _act_index(self):
            return torch.eye(self.index_dim, device=self.device)[:1] * 2.0

    ms = MultiSeed(FixedIndex, 5, [0, 1], ensemble_size=4)
    singles = [FixedIndex(5, seed=s, ensemble_size=4) for s in (0, 1)]
    assert torch.equal(ms._draw_all("act"), torch.stack([a._act_index() for a in singles]))
    assert torch.equal(ms._draw_all("xi"), torch.stack([a._draw_xi() for a in singles]))


@pytest.mark.parametrize("extra", [
    {},  # squared loss: gradients written out by hand (_epinet_mse_grads)
    {"loss": "ce", "n_outputs": 3, "prior_hidden": (4, 3, 2), "prior_scale": 2.0},  # autograd Function
    {"style": "ensemblepp"},  # no base bias; indices shared by the minibatch, autograd graph
], ids=["mse-by-hand", "ce-function", "shared-indices"])
def test_epinet_batched_gradients_equal_autograd_of_each_seed(extra):
    # One minibatch, every seed's gradient against autograd on that seed's own network. Unequal
    # widths everywhere (features 7 -> 9, epinet 6 -> 5, M = 3, input 4), so that a transposed
    # weight, gradient or activation layout changes a shape or a value and fails here.
    from ensemblepp.neural._multiseed import _epinet_mse_grads, _epinet_prior, _native_forward, _native_loss, \
        _perturbation_shift
    opts = {"hidden": (7, 9), "epinet_hidden": (6, 5), "n_index_samples": 5, "batch_size": 6,
            "perturbation_scale": 0.3, "posterior_scale": 0.7, **extra}
    S, B, d = 3, 6, 4
    ms = MultiSeed(EpiNet, d, [2, 8, 5], ensemble_size=3, **opts)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # move every weight off its initial law (zero biases of the official style)
        for p in ms.params.values():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    tmpl = ms._template
    n_z = 5
    x = torch.randn(S, B, d, generator=gen)
    z = torch.randn((S, B, n_z, 3) if tmpl.style == "official" else (S, n_z, 3), generator=gen)
    xi = torch.randn(S, B, 3, generator=gen)
    r = torch.randint(0, 3, (S, B), generator=gen).float() if tmpl.loss == "ce" else torch.randn(S, B, generator=gen)
    p = ms._native_inputs
    if ms._manual and z.dim() == 4:
        prior = _epinet_prior(p, x, tmpl.model._n_prior_layers, 3)
        with torch.no_grad():
            losses, grads = _epinet_mse_grads(tmpl.model, p, x, z, r, xi, prior, tmpl.perturbation_scale, {})
    else:
        for t in ms.params.values():
            t.grad = None
        fold = z.dim() == 4
        out = _native_forward(tmpl.model, p, x, z, {}, _perturbation_shift(tmpl, r, xi) if fold else None)
        losses = _native_loss(tmpl, out, r, xi, z, perturbed=fold)
        losses.sum().backward()
        grads = {n: t.grad for n, t in ms.params.items()}
    assert set(grads) == {n for n, t in ms.params.items() if t.requires_grad}
    for i in range(S):
        single = ms.agent(i)
        loss = single.loss_value(x[i], r[i], xi[i], z[i])
        single.model.zero_grad()
        loss.backward()
        torch.testing.assert_close(losses[i], loss.detach(), rtol=1e-5, atol=1e-6)
        for name, q in single.model.named_parameters():
            torch.testing.assert_close(ms._layout(name, grads[name][i]), q.grad, rtol=1e-4, atol=1e-6, msg=name)
