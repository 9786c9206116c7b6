"""Smoke test of an installed ensemblepp (run by .ci/run under each supported Python).

Imports the package, runs one act and one update of a linear agent, reads a TOML configuration
(tomllib, or tomli on Python 3.10) and runs a two-step experiment from it.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

import ensemblepp
from ensemblepp.experiments import load_config, run_experiment
from ensemblepp.linear import LinearEnsemble

agent = LinearEnsemble(3, ensemble_size=4, seed=1)
actions = np.random.default_rng(0).standard_normal((5, 3))
a = agent.act(actions)
agent.update(actions[a], 1.0)
assert 0 <= a < 5 and np.isfinite(agent.mean).all(), a

with tempfile.TemporaryDirectory() as tmp:
    toml = Path(tmp) / "c.toml"
    toml.write_text('name = "smoke"\nhorizon = 2\nn_seeds = 2\n[environment]\nname = "finite-linear"\n'
                    'dim = 3\nn_actions = 4\n[[agents]]\nname = "ensemble++"\nensemble_size = 4\n')
    results = run_experiment(load_config(toml), progress=False)
    assert results.horizon == 2 and len(results.seeds) == 2

print(f"smoke ok: python {sys.version.split()[0]}, ensemblepp {ensemblepp.__version__} from "
      f"{Path(ensemblepp.__file__).parent}, backends {ensemblepp.available_backends()}, action {a}")
