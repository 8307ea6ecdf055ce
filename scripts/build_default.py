#!/usr/bin/env python
"""Bundle the embedded default: an SAE trained by scripts/train_sae.py, a harmful-feature set
selected from the reference splits, a calibrated check threshold, and the model card.

    python scripts/build_default.py --sae artifacts/sae/layer_16 --contrasts answers --top 200

1. copies cfg.json and the weights (as float16: half the size; sae-lens loads them as float32)
   into saefilter/defaults/sae/;
2. builds the feature set with `saefilter features build` and no reference files: the built-in
   contrasts shipped in the package (by default the paired `answers` contrast), one ranked set each,
   merged with --top-each; exactly what a user gets for any model and SAE. `--legacy-contrasts toxicity,intent` instead builds from
   artifacts/data/contrast_*_{harmful,benign}.jsonl (scripts/build_reference_data.py), with
   `--selection activation --top-each 25`: how the shipped set was made before the built-in
   contrasts existed (its intent contrast has Alpaca instructions as the benign side, which is not
   redistributable);
3. unless --no-direction, adds the harmful direction of the built-in answers contrast
   (`saefilter features add-direction`: a logistic probe on the mean residuals of its harmful vs
   benign answers, weighted to vary as much as the latents' part on its benign answers);
4. calibrates the set on the held-out benign reference chats (`saefilter features calibrate`): their
   99th percentile as the suggested `saefilter check` threshold, and each feature's mean contribution
   there, so explanations rank what a sample has above benign text.

saefilter/defaults/MODEL_CARD.md is written by hand from the numbers these steps print.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from saefilter.config import DEFAULT_TOP, DEFAULT_TOP_EACH, ScoreConfig

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = ROOT / "saefilter" / "defaults"


def saefilter(*args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}
    subprocess.run([sys.executable, "-m", "saefilter.cli", *args], env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sae", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("artifacts/data"))
    parser.add_argument("--contrasts", default=None, help="built-in contrasts to use (default: features build's, answers)")
    parser.add_argument("--legacy-contrasts", default=None, help="e.g. toxicity,intent: artifacts/data contrast files instead")
    parser.add_argument("--top-each", type=int, default=DEFAULT_TOP_EACH)
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, help="features kept from one contrast")
    parser.add_argument("--aggregation", default=ScoreConfig.aggregation)
    parser.add_argument("--selection", default="token-controlled", choices=("activation", "token-controlled"))
    parser.add_argument("--no-direction", action="store_true", help="latents only, no probe direction (the set before round 4)")
    args = parser.parse_args()

    target = DEFAULTS / "sae"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    shutil.copy(args.sae / "cfg.json", target / "cfg.json")
    weights = load_file(args.sae / "sae_weights.safetensors")
    save_file({k: v.half().contiguous() for k, v in weights.items()}, target / "sae_weights.safetensors")
    shutil.copy(args.sae / "metrics.json", target / "training_metrics.json")

    features = DEFAULTS / "features.json"
    scratch = Path("artifacts/calibration")
    scratch.mkdir(parents=True, exist_ok=True)
    # the SAE was just copied into saefilter/defaults/sae: the default --sae ("embedded") is it
    if args.legacy_contrasts:
        per_contrast = []
        for contrast in args.legacy_contrasts.split(","):
            path = scratch / f"{contrast}.json"  # the name becomes each feature's "source"
            saefilter("features", "build", "--harmful", str(args.data / f"contrast_{contrast}_harmful.jsonl"),
                      "--benign", str(args.data / f"contrast_{contrast}_benign.jsonl"), "--top", "100",
                      "--selection", args.selection, "-o", str(path))
            per_contrast.append(str(path))
        saefilter("features", "merge", *per_contrast, "--top-each", str(args.top_each), "-o", str(features))
    else:
        chosen = [arg for name in (args.contrasts.split(",") if args.contrasts else []) for arg in ("--contrast", name)]
        saefilter("features", "build", *chosen, "--selection", args.selection, "--top", str(args.top),
                  "--top-each", str(args.top_each), "-o", str(features))

    if not args.no_direction:
        saefilter("features", "add-direction", str(features), "--aggregation", args.aggregation)
    # the suggested check threshold and each feature's benign baseline for explanations
    saefilter("features", "calibrate", str(features), "--benign", str(args.data / "benign_heldout.jsonl"),
              "--aggregation", args.aggregation)
    print(json.dumps(json.loads(features.read_text())["suggested_threshold"], indent=1))


if __name__ == "__main__":
    main()
