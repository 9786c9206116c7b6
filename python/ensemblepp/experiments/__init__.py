"""Experiment runner, results files, plots and the paper's presets.

>>> from ensemblepp.experiments import run_experiment, DEFAULT_CONFIG
>>> results = run_experiment(DEFAULT_CONFIG)            # doctest: +SKIP
>>> results.save("default.json"); results.plot("default.png")  # doctest: +SKIP
"""

from __future__ import annotations

from .agents import AGENTS, RandomAgent, agent_label, make_agent, register_agent
from .presets import (PRESETS, Preset, PresetContext, get_preset, min_ensemble_size, preset_configs,
                      register_preset, run_preset)
from .results import Results, load_results
from .runner import DEFAULT_CONFIG, AgentConfig, ExperimentConfig, load_config, run_experiment

__all__ = [
    "AGENTS", "RandomAgent", "agent_label", "make_agent", "register_agent",
    "PRESETS", "Preset", "PresetContext", "get_preset", "min_ensemble_size", "preset_configs",
    "register_preset", "run_preset",
    "Results", "load_results",
    "DEFAULT_CONFIG", "AgentConfig", "ExperimentConfig", "load_config", "run_experiment",
]
