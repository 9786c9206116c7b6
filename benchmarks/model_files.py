"""Model files under attack: SIGKILL during large saves, and a compressed bomb.

Usage::

    python benchmarks/model_files.py [--kills 12] [--agents 1300]

Prints how many of ``--kills`` SIGKILLs during a save over a valid file (about 124 MB with the
defaults: LinearEnsemble d=100, M=16, 1300 agents) left a file that loads, the time and peak
Python memory of refusing a ~1 MB file whose extra entry inflates to 1 GiB, and the time to
save and load the large file.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np

import ensemblepp as epp


def kills(folder: Path, n_kills: int, n_agents: int) -> None:
    path = folder / "big.epp"
    script = textwrap.dedent(f"""
        import numpy as np, ensemblepp as epp
        agent = epp.LinearEnsemble(100, 16, n_agents={n_agents}, seed=1)
        X = np.random.default_rng(0).normal(size=({n_agents}, 100))
        agent.save({str(path)!r})
        print("ready", flush=True)
        while True:
            agent.update(X, np.ones({n_agents}))
            agent.save({str(path)!r})
    """)
    rng = np.random.default_rng(0)
    ok = 0
    for _ in range(n_kills):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.1, 2.0)))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        try:
            epp.load(path)
            ok += 1
        except epp.ModelFileError as exc:
            print("unloadable:", exc)
    size = path.stat().st_size
    print(f"SIGKILL during save of a {size / 2**20:.0f} MiB file: {ok}/{n_kills} left a loadable file")
    t0 = time.perf_counter()
    agent = epp.load(path)
    t1 = time.perf_counter()
    agent.save(folder / "again.epp")
    t2 = time.perf_counter()
    print(f"load {t1 - t0:.2f} s, save {t2 - t1:.2f} s")


def bomb(folder: Path) -> None:
    path = folder / "bomb.epp"
    epp.LinearTS(4, seed=0).save(path)
    with zipfile.ZipFile(path, "a") as zf:
        info = zipfile.ZipInfo("extra.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as out:
            for _ in range(64):
                out.write(bytes(2**24))
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        epp.load(path)
    except epp.ModelFileError as exc:
        msg = str(exc)
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"1 GiB bomb in a {path.stat().st_size / 2**20:.2f} MiB file: refused in {dt * 1e3:.1f} ms, "
          f"peak Python allocation {peak / 2**10:.0f} KiB: {msg.split(': ', 1)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--agents", type=int, default=1300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bomb(Path(tmp))
        kills(Path(tmp), args.kills, args.agents)


if __name__ == "__main__":
    main()
