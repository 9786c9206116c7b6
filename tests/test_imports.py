"""Every module imports on its own, without cycles, swallowed ImportErrors or needless torch.

Each module is imported first, in a fresh interpreter: one subprocess that has
loaded only NumPy (and PyTorch, for the modules that need it) forks once per
module, so an import cycle that only bites when a given module comes first
shows up however the test suite itself imported the package.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ensemblepp

PACKAGE = Path(ensemblepp.__file__).resolve().parent

# Module prefix -> the optional distribution it needs at import time. Every other
# module must import without it (and without importing torch at all).
OPTIONAL = {
    "ensemblepp.neural": "torch",
    "ensemblepp.text": "torch",
    "ensemblepp.envs.moderation": "torch",
}


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = ["ensemblepp", *rel.parts]
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def _needs(module: str) -> str | None:
    for prefix, dist in OPTIONAL.items():
        if module == prefix or module.startswith(prefix + "."):
            return dist
    return None


# Runs in the fresh interpreter: argv[1] is a JSON list of modules, argv[2] a JSON list of
# module names that must not be imported as a side effect. Prints {module: error or null}.
_CHILD = r"""
import importlib, json, os, sys, traceback
import numpy
modules, forbidden = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in json.loads(sys.argv[3]):
    importlib.import_module(name)
out = {}
for module in modules:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            importlib.import_module(module)
            bad = [m for m in forbidden if m in sys.modules]
            msg = f"imports {', '.join(bad)}" if bad else ""
        except BaseException:
            msg = traceback.format_exc()
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    status = os.waitpid(pid, 0)[1]
    out[module] = b"".join(chunks).decode() or (f"child died with wait status {status}" if status else None)
print(json.dumps(out))
"""


def _import_each(modules: list[str], forbidden: list[str], preload: list[str]) -> dict[str, str | None]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(modules), json.dumps(forbidden),
                           json.dumps(preload)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks one fresh import per module")
def test_every_module_imports_on_its_own() -> None:
    modules = _modules()
    assert {"ensemblepp", "ensemblepp.envs", "ensemblepp.experiments.presets", "ensemblepp.text"} <= set(modules)
    light = [m for m in modules if _needs(m) is None]
    # The package, the environments, the registries, the CLI and ensemblepp.distributed (which
    # imports Ray only when used) stay free of torch, matplotlib and Ray.
    failures = {m: e for m, e in _import_each(light, ["torch", "matplotlib", "ray"], []).items() if e}
    # Modules that need an optional distribution: imported where it is installed, skipped elsewhere.
    for dist in sorted(set(OPTIONAL.values())):
        heavy = [m for m in modules if _needs(m) == dist]
        if heavy and importlib.util.find_spec(dist) is not None:
            failures.update({m: e for m, e in _import_each(heavy, [], [dist]).items() if e})
    assert not failures, "\n\n".join(f"{m}: {e}" for m, e in failures.items())


def test_no_swallowed_import_errors() -> None:
    """No ``except ImportError: pass`` (or ``...``) anywhere in the package."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ExceptHandler) or node.type is None:
                continue
            caught = [node.type] if not isinstance(node.type, ast.Tuple) else list(node.type.elts)
            names = {c.id for c in caught if isinstance(c, ast.Name)}
            body_is_empty = all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
                                for s in node.body)
            if names & {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"} and body_is_empty:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, f"swallowed ImportError at {', '.join(offenders)}"


def test_registries_list_without_importing_their_targets() -> None:
    code = ("import sys\n"
            "from ensemblepp.envs import ENVIRONMENTS\n"
            "from ensemblepp.experiments import AGENTS, PRESETS\n"
            "assert {'hate-speech', 'mushroom', 'finite-linear'} <= set(ENVIRONMENTS)\n"
            "assert {'epinet', 'text-ensemble++', 'ts'} <= set(AGENTS)\n"
            "assert {'hate-speech', 'mushroom', 'default'} <= set(PRESETS)\n"
            "assert [AGENTS[n].description for n in AGENTS]\n"
            "loaded = [m for m in ('torch', 'ensemblepp.neural', 'ensemblepp.text', 'ensemblepp.envs.moderation',\n"
            "          'ensemblepp.experiments.real_presets', 'ensemblepp.linear') if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_readme_layout_lists_every_module_of_the_package() -> None:
    root = Path(__file__).resolve().parents[1]
    readme, source = root / "README.md", root / "python" / "ensemblepp"
    if not (readme.is_file() and source.is_dir()):
        pytest.skip("needs the source checkout")
    text = readme.read_text(encoding="utf-8")
    block = text[text.index("## Layout"):]
    block = block[block.index("```") + 3:]
    block = block[:block.index("```")]
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("python/ensemblepp/"))
    listed: set[str] = set()
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        # The name column ends at the first run of two spaces; it may hold several names.
        listed.update(line.strip().split("  ")[0].split())
    present = {p.name for p in source.glob("*.py")} | {
        p.name + "/" for p in source.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert listed - present == set(), f"README Layout lists what the package lacks: {sorted(listed - present)}"
    assert present - listed == set(), f"README Layout misses: {sorted(present - listed)}"
