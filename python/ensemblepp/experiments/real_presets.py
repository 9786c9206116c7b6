"""Real-data presets: UCI Mushroom and Shuttle, and content moderation of tweets.

``ensemblepp run --preset mushroom`` (or ``shuttle``) compares neural
Ensemble++ with Ensemble+, EpiNet and a greedy network at the package
defaults (M = 8, one SGD step per observation; ``settings="paper"`` gives the
paper's: prior / posterior scale 1.0 / 0.1 for Mushroom and 0.2 / 0.1 for
Shuttle, 50 SGD steps per observation), and the linear agents (Ensemble++,
exact TS, ensemble sampling, greedy; prior variance 10, noise 1) on the same
disjoint encoding. ``--preset hate-speech`` runs two experiments on the
Davidson et al. tweets: agents on frozen MiniLM embeddings, then Ensemble++
whose MiniLM encoder is fine-tuned, next to the same agent with the encoder
frozen, on a 500-post subset that runs in minutes on a CPU.

The presets are registered by name in :mod:`ensemblepp.experiments.presets`
(this module only builds their configurations); the agents that play the
text mode of :class:`~ensemblepp.envs.ContentModeration`, ``text-ensemble++``
and ``text-greedy``, are in :mod:`ensemblepp.experiments.agents`
(:func:`make_text_agent`, re-exported here).
"""

from __future__ import annotations

from typing import Any

from .agents import make_text_agent
from .presets import _default_neural_agents, _neural_agents

__all__ = ["uci_config", "mushroom_config", "shuttle_config", "hate_speech_configs", "make_text_agent"]

# Paper settings per data set: prior scale, posterior scale, SGD steps per update.
_UCI = {
    "mushroom": (1.0, 0.1, 50),
    "shuttle": (0.2, 0.1, 50),
}


_SETTINGS = ("defaults", "paper")


def _check_settings(settings: str) -> None:
    if settings not in _SETTINGS:
        raise ValueError(f"settings must be one of {_SETTINGS}, got {settings!r}")


def _uci_agents(name: str, settings: str) -> list[dict[str, Any]]:
    if settings == "paper":
        neural = _neural_agents(*_UCI[name], greedy_label="greedy NN")
    else:
        neural = _default_neural_agents(greedy_label="greedy NN")
    return [
        *neural,
        {"name": "ensemble++", "label": "linear Ensemble++ (M=8)", "ensemble_size": 8},
        {"name": "ts", "label": "linear TS"},
        {"name": "es", "label": "linear ensemble sampling (M=8)", "ensemble_size": 8},
        {"name": "greedy", "label": "linear greedy"},
    ]


def uci_config(name: str, horizon: int = 2000, n_seeds: int = 5, settings: str = "defaults") -> dict[str, Any]:
    """Configuration of the ``mushroom`` or ``shuttle`` preset.

    Parameters
    ----------
    name : {"mushroom", "shuttle"}
        Data set.
    horizon : int, default 2000
        Steps.
    n_seeds : int, default 5
        Seeds (row orders and agent initialisations).
    settings : {"defaults", "paper"}
        Neural agents at the package defaults (one SGD step per observation)
        or at the paper's scales with 50 SGD steps per observation (the
        configuration of the earlier tables in docs/results.md).

    Returns
    -------
    dict
        A configuration mapping for :func:`~ensemblepp.experiments.run_experiment`.
    """
    if name not in _UCI:
        raise ValueError(f"name must be one of {sorted(_UCI)}, got {name!r}")
    _check_settings(settings)
    prior, post, n_updates = _UCI[name]
    rows = {"mushroom": "8124 rows, 2 classes, d = 2 x 117", "shuttle": "58000 rows, 7 classes, d = 7 x 10"}[name]
    neural = (f"prior {prior}, posterior {post}, {n_updates} SGD steps per step" if settings == "paper"
              else "package defaults, one SGD step per step")
    return {
        "name": name,
        "description": f"UCI {name.capitalize()} bandit ({rows}), reward 1{{a = y}}: neural agents "
                       f"({neural}) and linear agents",
        "horizon": horizon, "n_seeds": n_seeds, "seed": 0,
        "environment": {"name": name, "noise_std": 0.0},
        "agents": _uci_agents(name, settings),
    }


def hate_speech_configs(n_posts: int = 3000, horizon: int = 3000, n_seeds: int = 3,
                        finetune_posts: int = 500, finetune_horizon: int = 500,
                        finetune_seeds: int = 1, settings: str = "defaults") -> list[dict[str, Any]]:
    """Configurations of the ``hate-speech`` preset (frozen, then fine-tuned).

    Parameters
    ----------
    n_posts, horizon, n_seeds : int
        Subset size, steps and seeds of the frozen-embedding experiment.
    finetune_posts, finetune_horizon, finetune_seeds : int
        The same for the fine-tuning experiment.
    settings : {"defaults", "paper"}
        Neural agents of the frozen experiment at the package defaults (one
        SGD step per observation), or as the earlier tables of
        docs/results.md ran them (prior 1, lr 1e-4, 4 SGD steps). The
        fine-tuning experiment keeps lr 1e-4 either way: it also trains the
        pretrained encoder, which the neural agents' default of 1e-3 was not
        chosen for.

    Returns
    -------
    list of dict
        Two configuration mappings.
    """
    _check_settings(settings)
    # The configuration the earlier tables of docs/results.md were run with.
    before = {"lr": 1e-4, "style": "ensemblepp"}
    neural = {"ensemble_size": 8, "prior_scale": 1.0, "n_updates": 4, "update_every": 1, **before}
    if settings == "paper":
        neural_agents = [
            {"name": "neural-ensemble++", "label": "Ensemble++ (M=8)", "posterior_scale": 0.1, **neural},
            {"name": "ensemble+", "label": "Ensemble+ (M=8)", **neural},
            {"name": "neural-greedy", "label": "greedy NN", "n_updates": 4, "update_every": 1},
        ]
    else:
        neural_agents = [a for a in _default_neural_agents(greedy_label="greedy NN") if a["name"] != "epinet"]
    frozen = {
        "name": "hate-speech-frozen",
        "description": f"Davidson et al. tweets ({n_posts}-post subset), publish/block with rewards 1 / -0.5 / "
                       "0.5, frozen all-MiniLM-L6-v2 embeddings",
        "horizon": horizon, "n_seeds": n_seeds, "seed": 0, "plot_metric": "cumulative_regret",
        "environment": {"name": "hate-speech", "mode": "frozen", "n_posts": n_posts},
        "agents": [
            *neural_agents,
            {"name": "ensemble++", "label": "linear Ensemble++ (M=8)", "ensemble_size": 8},
            {"name": "greedy", "label": "linear greedy"},
        ],
    }
    text = {"ensemble_size": 8, "prior_scale": 1.0, "posterior_scale": 0.1, "n_updates": 1,
            "update_every": 4, "batch_size": 32, "update_start": 32, **before}
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


def mushroom_config() -> dict[str, Any]:
    """Configuration of the ``mushroom`` preset: :func:`uci_config` ``("mushroom")``."""
    return uci_config("mushroom")


def shuttle_config() -> dict[str, Any]:
    """Configuration of the ``shuttle`` preset: :func:`uci_config` ``("shuttle")``."""
    return uci_config("shuttle")
