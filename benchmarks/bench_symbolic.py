"""The symbolic core's benchmark (issue 2): closure speed and deletion-set speed, one script.

    NUMPY_MADVISE_HUGEPAGE=0 .venv/bin/python benchmarks/bench_symbolic.py

Runs ``bench_closure.py`` (kgtest vs a dict-indexed pure-Python forward chainer, 10k to 1M
base facts) and then ``bench_deletion.py`` (EDU-RELAT: 55 targets x 100 restarts + exact
search, per-target sizes against the published ones). Each prints its own table.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_closure  # noqa: E402
import bench_deletion  # noqa: E402

if __name__ == "__main__":
    print("== closure ==", flush=True)
    bench_closure.main([])
    print("\n== deletion sets (EDU-RELAT) ==", flush=True)
    bench_deletion.main([])
