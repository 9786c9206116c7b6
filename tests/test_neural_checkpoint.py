"""load_state_dict validates a whole checkpoint before changing anything."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ensemblepp.neural import EnsemblePlus, EpiNet, NeuralEnsemble, NeuralGreedy  # noqa: E402

D = 5


def _trained(cls, **kw):
    opts = {"hidden": (8,), "update_start": 4, "batch_size": 4, **kw}
    if cls is not NeuralGreedy:
        opts["ensemble_size"] = 3
    agent = cls(D, seed=1, **opts)
    rng = np.random.default_rng(0)
    for _ in range(12):
        x = rng.standard_normal(D)
        agent.update(x, float(x[0] > 0) if kw.get("loss") == "ce" else float(x[0]))
    return agent, opts


def _first_param_id(state):
    return state["optimizer"]["param_groups"][0]["params"][0]


def _set(path):
    """A corruption: set the entry at ``path`` (keys into the state) to a value built from the old one."""
    def apply(state, make):
        node = state
        for key in path[:-1]:
            node = node[key(state) if callable(key) else key]
        last = path[-1](state) if callable(path[-1]) else path[-1]
        node[last] = make(node[last])
    return apply


PID = _first_param_id
CASES = {
    "exp_avg of the wrong shape": (("optimizer", "state", PID, "exp_avg"), lambda v: torch.zeros(3), "exp_avg"),
    "exp_avg NaN": (("optimizer", "state", PID, "exp_avg"), lambda v: v * math.nan, "exp_avg"),
    "exp_avg_sq negative": (("optimizer", "state", PID, "exp_avg_sq"), lambda v: v - 1.0, "exp_avg_sq"),
    "exp_avg float64": (("optimizer", "state", PID, "exp_avg"), lambda v: v.double(), "dtype"),
    "step NaN": (("optimizer", "state", PID, "step"), lambda v: v * math.nan, "step"),
    "lr NaN": (("optimizer", "param_groups", 0, "lr"), lambda v: math.nan, "lr"),
    "lr zero": (("optimizer", "param_groups", 0, "lr"), lambda v: 0.0, "lr"),
    "betas out of range": (("optimizer", "param_groups", 0, "betas"), lambda v: (0.9, 1.5), "betas"),
    "unknown parameter id": (("optimizer", "param_groups", 0, "params"), lambda v: v + [99], "param_groups"),
    "state for a parameter it lacks": (("optimizer", "state"), lambda v: {**v, 99: next(iter(v.values()))},
                                       "parameters"),
    "weight inf": (("model", lambda s: next(iter(s["model"]))), lambda v: v * math.inf, "model"),
    "weight wrong shape": (("model", lambda s: next(iter(s["model"]))), lambda v: v[:1], "model"),
    "weight float64": (("model", lambda s: next(iter(s["model"]))), lambda v: v.double(), "model"),
    "buffer reward NaN": (("buffer", "r"), lambda v: v * math.nan, "buffer"),
    "buffer xi inf": (("buffer", "xi"), lambda v: v + math.inf, "buffer"),
    "buffer x not a tensor": (("buffer", "x"), lambda v: v.tolist(), "buffer"),
    "buffer size out of range": (("buffer", "size"), lambda v: 10**6, "size"),
    "buffer pos a float": (("buffer", "pos"), lambda v: 1.5, "pos"),
    "n_seen negative": (("n_seen",), lambda v: -1, "n_seen"),
    "n_seen below buffer size": (("n_seen",), lambda v: 1, "n_seen"),
    "n_sgd_steps a float": (("n_sgd_steps",), lambda v: 3.0, "n_sgd_steps"),
    "generator wrong dtype": (("generator",), lambda v: v.float(), "generator"),
}


def _snapshot(agent):
    st = agent.state_dict()
    return copy.deepcopy({k: v for k, v in st.items()})


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("cls", [NeuralEnsemble, EnsemblePlus, EpiNet, NeuralGreedy], ids=lambda c: c.__name__)
def test_bad_checkpoint_is_refused_and_changes_nothing(cls, case):
    path, make, field = CASES[case]
    if cls is NeuralGreedy and case == "buffer xi inf":
        return  # the greedy agent stores no perturbation (xi has zero columns)
    agent, opts = _trained(cls)
    source, _ = _trained(cls)
    for _ in range(3):  # a different, valid state to corrupt
        source.update(np.ones(D), 0.5)
    bad = copy.deepcopy(source.state_dict())
    _set(path)(bad, make)
    before = _snapshot(agent)
    with pytest.raises(ValueError, match=field):
        agent.load_state_dict(bad)
    assert _same(_snapshot(agent), before)
    agent.update(np.ones(D), 1.0)  # still usable: no corrupted optimiser state
    agent.sgd_step()


def test_labels_checked_under_cross_entropy():
    agent, _ = _trained(NeuralEnsemble, loss="ce", n_outputs=2)
    bad = copy.deepcopy(agent.state_dict())
    bad["buffer"]["r"][0] = 0.5
    before = _snapshot(agent)
    with pytest.raises(ValueError, match="class labels"):
        agent.load_state_dict(bad)
    assert _same(_snapshot(agent), before)


def test_good_checkpoint_round_trips(tmp_path):
    agent, opts = _trained(EpiNet)
    path = tmp_path / "agent.pt"
    torch.save(agent.state_dict(), path)
    clone = EpiNet(D, seed=7, **opts)
    clone.load_state_dict(torch.load(path, weights_only=True))
    rng = np.random.default_rng(3)
    for _ in range(5):
        acts = rng.standard_normal((4, D))
        a = agent.act(acts)
        assert clone.act(acts) == a
        agent.update(acts[a], 0.1)
        clone.update(acts[a], 0.1)
    for (n, p), q in zip(agent.model.named_parameters(), clone.model.parameters()):
        assert torch.equal(p, q), n


def test_missing_entries_are_named():
    agent, _ = _trained(NeuralEnsemble)
    bad = agent.state_dict()
    del bad["optimizer"]
    with pytest.raises(ValueError, match="optimizer"):
        agent.load_state_dict(bad)
