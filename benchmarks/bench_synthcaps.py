"""Benchmark: time to generate SynthCaps (default 1,000 four-second 16 kHz stereo items written as FLAC).

    .venv/bin/python benchmarks/bench_synthcaps.py [--n 1000] [--seconds 4] [--workers N] [--compare]

Prints items/s and the total time; ``--compare`` also runs one worker for the parallel speed-up ratio.
A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from wavefoundry.data.synth import SynthConfig, generate_synthcaps
from wavefoundry.data.synth.build import default_workers


def run(n: int, seconds: float, workers: int) -> float:
    """Seconds to generate ``n`` items into a temporary folder with ``workers`` processes."""
    cfg = SynthConfig(n_items=n, seconds=seconds)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_synthcaps(Path(tmp) / "synthcaps", cfg, workers=workers, progress=False)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--compare", action="store_true", help="also time one worker")
    args = parser.parse_args()
    workers = args.workers or default_workers(args.n)
    rows = [(workers, run(args.n, args.seconds, workers))]
    if args.compare and workers != 1:
        rows.append((1, run(args.n, args.seconds, 1)))
    print(f"SynthCaps: {args.n} items x {args.seconds:g} s, 16 kHz stereo FLAC")
    print(f"{'workers':>8} {'total s':>9} {'items/s':>9}")
    for w, total in rows:
        print(f"{w:>8} {total:>9.2f} {args.n / total:>9.1f}")
    if len(rows) == 2:
        print(f"parallel speed-up: {rows[1][1] / rows[0][1]:.2f}x")


if __name__ == "__main__":
    main()
