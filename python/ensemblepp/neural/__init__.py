"""Neural Ensemble++ and baselines in PyTorch.

Agents (one interface: ``act(actions, mask=None) -> int``, ``update(x, r)``,
``state_dict()`` / ``load_state_dict()``, ``n_seen``):

* :class:`NeuralEnsemble`: Ensemble++ (Li et al., arXiv 2407.13195);
* :class:`EnsemblePlus`: Ensemble+ with randomized prior functions (Osband et al. 2018);
* :class:`EpiNet`: epistemic neural network with an epinet (Osband et al. 2023);
* :class:`NeuralGreedy`: the base network alone.

Networks evaluate ``f(x, zeta)`` for a batch of inputs and many indices in one
pass: :class:`EnsemblePlusPlusNet`, :class:`EnsemblePlusNet`,
:class:`EpiNetNet`, :class:`GreedyNet`, with the default feature network
:class:`MLP`. The index distributions are in :func:`draw`.

Outputs, rewards and scores. With ``loss="mse"`` (``n_outputs=1``) the output
is the predicted reward and the action score is ``f(x, zeta)``. With
``loss="ce"`` the reward is a class label ``y`` in ``{0, ..., n_outputs-1}``
(a binary reward is the label with ``n_outputs=2``), the outputs are class
logits, the loss is the cross-entropy with the perturbation ``c <z, xi>``
subtracted from the logit of the observed label, and the action score is the
expected label ``sum_y y softmax(f(x, zeta))_y``: for ``n_outputs=2`` the
probability of reward 1.
"""

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('ensemblepp.neural needs PyTorch: pip install "ensemblepp[torch]"') from exc

from ._agents import EnsemblePlus, EpiNet, NeuralAgent, NeuralEnsemble, NeuralGreedy
from ._buffer import ReplayBuffer
from ._multiseed import MultiSeed
from ._models import MLP, EnsemblePlusNet, EnsemblePlusPlusNet, EpiNetNet, GreedyNet
from ._torch_distributions import DISTRIBUTIONS, coordinate_support, draw

__all__ = [
    "DISTRIBUTIONS",
    "MLP",
    "MultiSeed",
    "EnsemblePlus",
    "EnsemblePlusNet",
    "EnsemblePlusPlusNet",
    "EpiNet",
    "EpiNetNet",
    "GreedyNet",
    "NeuralAgent",
    "NeuralEnsemble",
    "NeuralGreedy",
    "ReplayBuffer",
    "coordinate_support",
    "draw",
]
