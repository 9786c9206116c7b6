"""Construction time and peak memory of many float32 Ensemble++ agents (issue 9, item 6).

Usage: ``python benchmarks/construction.py [--agents 1000 10000 100000]``. Each size runs in a
fresh process, which reports the wall time of ``LinearEnsemble(dim=64, ensemble_size=16,
n_agents=B, dtype="float32")``, the bytes of the state it holds and the growth of its peak
resident memory (``ru_maxrss``) during construction, as a multiple of the state. The CPU time
(all threads) is printed too: on a shared machine it is the figure that load does not inflate. Target for
1e5 agents: under 2 s and under 1.3x the state.

Two more columns separate the library's work from the operating system's: "re-init s" is the wall
time of writing the prior state again into the same, already mapped agents (the library's whole
work: prior copy, initial factor draws); "touch floor s" is the wall time, in another fresh process, of
``np.empty`` of the same number of bytes followed by one write of every byte (the kernel zeroes each
fresh page on first touch). On the development VM the first touch of memory the host has not
backed yet costs several times the floor (``perf``: ``clear_page_erms`` under the page faults), so
each size runs ``--repeat`` times, floor and construction alternating, and the medians are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np
import ensemblepp as epp
B = int(sys.argv[1])
epp.LinearEnsemble(dim=4, ensemble_size=2)  # imports and first-call costs out of the timing
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0, c0 = time.perf_counter(), time.process_time()
agent = epp.LinearEnsemble(dim=64, ensemble_size=16, n_agents=B, dtype="float32", seed=0)
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
state = sum(a.nbytes for a in agent._buffers.values())
t1 = time.perf_counter()
agent._initialize(0)  # the same work again on mapped pages: what the library itself costs
reinit = time.perf_counter() - t1
print(json.dumps({"B": B, "seconds": seconds, "cpu": cpu, "threads": epp.get_num_threads(), "state": state,
                  "peak_growth": peak - before, "reinit": reinit}))
"""

FLOOR = r"""
import json, sys, time
import numpy as np
n = int(sys.argv[1])
t0 = time.perf_counter()
a = np.empty(n, np.uint8)
a.fill(1)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, nargs="*", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3, help="fresh-process runs per size (medians printed)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.repeat} fresh processes")
    print(f"{'agents':>8s} {'seconds':>8s} {'CPU s':>8s} {'threads':>8s} {'state MiB':>10s} {'peak growth MiB':>16s} "
          f"{'peak / state':>13s} {'re-init s':>10s} {'touch floor s':>14s}")
    for B in args.agents:
        runs, floors = [], []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, "-c", CHILD, str(B)], capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            out = subprocess.run([sys.executable, "-c", FLOOR, str(runs[-1]["state"])], capture_output=True, text=True,
                                 check=True)
            floors.append(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])
        r = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        floor = statistics.median(floors)
        print(f"{B:8d} {r['seconds']:8.3f} {r['cpu']:8.3f} {int(r['threads']):8d} {r['state'] / 2**20:10.1f} "
              f"{r['peak_growth'] / 2**20:16.1f} {r['peak_growth'] / r['state']:13.2f} {r['reinit']:10.3f} "
              f"{floor:14.3f}", flush=True)

if __name__ == "__main__":
    main()
