"""Neural API: keyword-only options, seeds, the draw signature, the install hint without torch."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import ensemblepp  # noqa: E402
from ensemblepp.neural import EnsemblePlus, EpiNet, NeuralEnsemble, NeuralGreedy, draw  # noqa: E402


@pytest.mark.parametrize("cls,positional", [(NeuralEnsemble, 2), (EnsemblePlus, 2), (EpiNet, 2), (NeuralGreedy, 1)])
def test_only_dim_and_ensemble_size_are_positional(cls, positional):
    params = list(inspect.signature(cls).parameters.values())
    assert [p.kind for p in params[:positional]] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * positional
    assert all(p.kind == inspect.Parameter.KEYWORD_ONLY for p in params[positional:])
    with pytest.raises(TypeError):
        cls(4, 2, (8,)) if positional == 2 else cls(4, (8,))


def test_seed_none_draws_and_exposes_a_seed():
    a, b = NeuralEnsemble(4), NeuralEnsemble(4)
    assert a.seed != b.seed and 0 <= a.seed < 2**63
    c = NeuralEnsemble(4, seed=a.seed)
    for p, q in zip(a.model.parameters(), c.model.parameters()):
        assert torch.equal(p, q)


def test_draw_signature_matches_the_core_one():
    core = list(inspect.signature(ensemblepp.draw).parameters)
    ours = list(inspect.signature(draw).parameters)
    assert ours[:3] == core[:3] == ["name", "size", "dim"]
    assert "scaling" in ours and "sparsity" in ours
    gen = torch.Generator().manual_seed(0)
    assert draw("sphere", 5, 3, generator=gen, scaling="reference").shape == (5, 3)
    with pytest.raises(TypeError, match="generator"):
        draw("sphere", 5, 3, generator=0)


def test_import_without_torch_names_the_extra():
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import ensemblepp.neural\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert 'pip install "ensemblepp[torch]"' in out.stdout, out.stderr
