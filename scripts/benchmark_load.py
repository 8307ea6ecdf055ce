#!/usr/bin/env python
"""Model load time of a named model: the first load converts its GGUF into safetensors in the cache,
later loads read the conversion. Each load runs in a fresh process against an empty cache folder
(`SAEFILTER_CACHE`), so nothing is shared with the user's cache; the cache's size on disk is
reported too.

    python scripts/benchmark_load.py [--model smollm2-135m-instruct] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOAD = "from saefilter.model.loading import load_model; load_model({spec!r}, device='cpu', dtype='float32')"


def timed_load(spec: str, cache: Path) -> float:
    env = {**os.environ, "SAEFILTER_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", LOAD.format(spec=spec)], check=True, env=env)
    return time.perf_counter() - start


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        first = [timed_load(args.model, cache)]
        size = folder_bytes(cache)
        later = [timed_load(args.model, cache) for _ in range(args.repeats)]
        # the first load again, on fresh caches, for a median of its own
        for _ in range(args.repeats - 1):
            with tempfile.TemporaryDirectory() as other:
                first.append(timed_load(args.model, Path(other)))
    print(json.dumps({"model": args.model, "first_load_s": [round(t, 2) for t in first],
                      "first_load_median_s": round(statistics.median(first), 2),
                      "later_load_s": [round(t, 2) for t in later],
                      "later_load_median_s": round(statistics.median(later), 2),
                      "cache_bytes": size}, indent=1))


if __name__ == "__main__":
    main()
