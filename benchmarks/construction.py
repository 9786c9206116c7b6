"""Construction time and peak memory of many float32 Ensemble++ agents (issue 9, item 6).

Usage: ``python benchmarks/construction.py [--agents 1000 10000 100000]``. Each size runs in a
fresh process, which reports the wall time of ``LinearEnsemble(dim=64, ensemble_size=16,
n_agents=B, dtype="float32")``, the bytes of the state it holds and the growth of its peak
resident memory (``ru_maxrss``) during construction, as a multiple of the state. The CPU time
(all threads) is printed too: on a shared machine it is the figure that load does not inflate. Target for
1e5 agents: under 2 s and under 1.3x the state.

The last column is the floor set by the operating system: the wall time, in another fresh process, of
``np.empty`` of the same number of bytes followed by one write of every byte (the kernel zeroes each
fresh page on first touch; on the development VM that dominates construction, ``perf`` puts 80% of
its samples in ``clear_page_erms``).
"""

from __future__ import annotations

import argparse
import json
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
print(json.dumps({"B": B, "seconds": seconds, "cpu": cpu, "threads": epp.get_num_threads(), "state": state,
                  "peak_growth": peak - before}))
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
    args = parser.parse_args()
    print(f"{'agents':>8s} {'seconds':>8s} {'CPU s':>8s} {'threads':>8s} {'state MiB':>10s} {'peak growth MiB':>16s} "
          f"{'peak / state':>13s} {'touch floor s':>14s}")
    for B in args.agents:
        out = subprocess.run([sys.executable, "-c", CHILD, str(B)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        out = subprocess.run([sys.executable, "-c", FLOOR, str(r["state"])], capture_output=True, text=True, check=True)
        floor = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
        print(f"{B:8d} {r['seconds']:8.3f} {r['cpu']:8.3f} {r['threads']:8d} {r['state'] / 2**20:10.1f} "
              f"{r['peak_growth'] / 2**20:16.1f} "
              f"{r['peak_growth'] / r['state']:13.2f} {floor:14.3f}", flush=True)


if __name__ == "__main__":
    main()
