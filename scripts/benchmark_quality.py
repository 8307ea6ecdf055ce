#!/usr/bin/env python
"""Detection quality on real data, through the same CLI a user runs.

For each SAE given (e.g. one per layer of a sweep):
1. unless --features is given, select harmful features on the *_select reference splits
   (`saefilter features build`, harmful/toxic vs benign text only, never the em/ sets);
2. `saefilter eval` on em/insecure vs em/secure (rows the SAE never saw; fixed-seed subsample of
   --limit per class), and on harmful vs benign held-out reference chats.
Results go to OUT/<name>/ as JSON, and a markdown summary is printed.

Needs the files of scripts/build_reference_data.py (which needs ../shared/datasets).

    python scripts/benchmark_quality.py --sae artifacts/sae/layer_4 artifacts/sae/layer_8 --limit 500
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

DATA = Path("artifacts/data")


def saefilter(*args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}
    result = subprocess.run([sys.executable, "-m", "saefilter.cli", *args], check=False, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"saefilter {' '.join(args)} failed:\n{result.stderr}")


def best(report: dict, method: str, variant: str | None = None) -> dict:
    rows = [r for r in report["results"] if r["method"] == method and (variant is None or r["variant"] == variant)]
    return max(rows, key=lambda r: r["metrics"]["auroc"])


def fmt(row: dict) -> str:
    m, ci = row["metrics"], row["intervals"]["auroc"]
    return f"{m['auroc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] ({row['variant']}); removed@50% {m['removed_at_50']:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sae", nargs="+", required=True)
    parser.add_argument("--features", help="use this feature set for every SAE instead of selecting one")
    parser.add_argument("--model", default="embedded:SmolLM2-135M-Instruct")
    parser.add_argument("--limit", type=int, default=500, help="em rows per class")
    parser.add_argument("--top", type=int, default=100)
    parser.add_argument("--feature-counts", default="25,50,100")
    parser.add_argument("--neighbours-list", default="1,5")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("artifacts/quality"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--split", choices=("dev", "test"), default="dev", help="em rows: dev chooses defaults, test reports")
    args = parser.parse_args()
    if not (args.data / "em_insecure_dev.jsonl").exists():
        sys.exit(f"{args.data}: run scripts/build_reference_data.py first (needs ../shared/datasets)")
    lines = []
    for sae in args.sae:
        name = Path(sae).name
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        common = ["--model", args.model, "--sae", sae]
        started = time.perf_counter()
        features = args.features or str(folder / "features.json")
        if not args.features:
            saefilter("features", "build", "--harmful", str(args.data / "harmful_select.jsonl"),
                      "--benign", str(args.data / "benign_select.jsonl"), "--top", str(args.top), "-o", features, *common)
        evals = {
            "em": ["--positive", str(args.data / f"em_insecure_{args.split}.jsonl"),
                   "--negative", str(args.data / f"em_secure_{args.split}.jsonl"),
                   "--limit", str(args.limit)],
            "harmful": ["--positive", str(args.data / "harmful_heldout.jsonl"), "--negative", str(args.data / "benign_heldout.jsonl")],
        }
        reports = {}
        for key, flags in evals.items():
            out = folder / f"eval_{key}.json"
            saefilter("eval", *flags, "--anchors", str(args.data / "harmful_select.jsonl"), "--features", features,
                      "--feature-counts", args.feature_counts, "--neighbours-list", args.neighbours_list,
                      "--bootstrap", str(args.bootstrap), "-o", str(out), *common)
            reports[key] = json.loads(out.read_text())
        metrics_path = Path(sae) / "metrics.json"
        sae_metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        line = (f"| {name} | {sae_metrics.get('explained_variance', '-')} | {sae_metrics.get('l0', '-')} | "
                f"{sae_metrics.get('dead_fraction', '-')} | {fmt(best(reports['em'], 'geometric'))} | "
                f"{fmt(best(reports['em'], 'direct'))} | {fmt(best(reports['em'], 'repmatch'))} | "
                f"{fmt(best(reports['harmful'], 'geometric'))} | {time.perf_counter() - started:.0f} s |")
        lines.append(line)
        print(line, flush=True)
    print("\n| SAE | EV | L0 | dead | em: geometric (best variant) | em: direct | em: repmatch | harmful vs benign: geometric | time |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
