#!/usr/bin/env python
"""Bundle the embedded default: an SAE trained by scripts/train_sae.py, a harmful-feature set
selected from the reference splits, a calibrated check threshold, and the model card.

    python scripts/build_default.py --sae artifacts/sae/layer_16 --contrasts answers --top 200
    python scripts/build_default.py --model qwen2.5-coder-1.5b-instruct --sae artifacts/sae_qwen/layer_15

1. copies cfg.json and the weights (as float16: half the size; sae-lens loads them as float32)
   into the model's shipped folder (saefilter/defaults/sae/ for the default; a named model's
   `shipped` folder under saefilter/defaults/ otherwise); `--sae` naming that folder itself keeps
   the shipped SAE and rebuilds only the feature set;
2. builds the feature set with `saefilter features build` and no reference files: the built-in
   contrasts shipped in the package (by default the paired `answers` contrast), one ranked set each,
   merged with --top-each; exactly what a user gets for any model and SAE. `--legacy-contrasts toxicity,intent` instead builds from
   artifacts/data/contrast_*_{harmful,benign}.jsonl (scripts/build_reference_data.py), with
   `--selection activation --top-each 25`: how the shipped set was made before the built-in
   contrasts existed (its intent contrast has Alpaca instructions as the benign side, which is not
   redistributable);
3. unless --no-direction, adds the harmful direction of the built-in answers contrast (a logistic
   probe on the mean residuals of its harmful vs benign answers, weighted to vary as much as the
   latents' part on its benign answers): `features build --direction` fits it on the same forward
   pass where one contrast is built, `saefilter features add-direction` after a merged build;
4. calibrates the set on 1,000 benign Alpaca chats that no benchmark uses (`calibration_chat.jsonl`
   of scripts/build_reference_data.py; `saefilter features calibrate`): their 99th percentile as the
   suggested `saefilter check` threshold, and each feature's mean contribution there, so
   explanations rank what a sample has above benign answers. (Before 2026-12-03 it was
   benign_heldout.jsonl, mostly ToxiGen sentences and tweets, whose 99th percentile lay above
   nearly every harmful chat answer.)

5. records what the set's settings were chosen on (`saefilter features record`, role "settings
   chosen on"): the benchmark rows of docs/log.md's choices (CHOSEN_ON below), so that `eval` and
   `drift --pairs` warn when they meet them. `--provenance-only` writes just the provenance of
   steps 2-5 into the shipped set (the same inputs, read by the same code; no model runs): how the
   Qwen set's provenance was backfilled on 2026-12-07 (the default's by a full rebuild).

Every step runs on the float16 copy, so what is measured afterwards is what ships. The model card
(MODEL_CARD.md in the same folder) is written by hand from the numbers these steps print.
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

from saefilter.features.settings import DEFAULT_TOP, DEFAULT_TOP_EACH
from saefilter.scoring.config import DEFAULT_MODEL, ScoreConfig, shipped_dir

# The rows the shipped sets' settings were chosen on (docs/log.md: layer, aggregation, the
# function-word filter, the direction refit and the selection variants were compared on the dev
# splits; the em_outputs test split and the form-confounded, mixed_chat and identity sets were
# also read when candidates were compared): files of --data, then files of this repository
# (named relative to its root, so the recorded names are the same on every machine).
CHOSEN_ON = ("bench/pairs_tune.jsonl", "bench/em_outputs_dev.jsonl", "bench/em_outputs_test.jsonl",
             "bench/hh_dev.jsonl", "bench/toxigen_dev.jsonl", "em_insecure_dev.jsonl", "em_secure_dev.jsonl",
             "harmful_heldout.jsonl", "benign_heldout.jsonl")
CHOSEN_ON_HERE = ("data/samples/mixed_chat.jsonl", "data/matched/identity_counterfactuals.jsonl")


def chosen_on(data: Path) -> list[Path]:
    paths = [data / name for name in CHOSEN_ON] + [Path(name) for name in CHOSEN_ON_HERE]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: run from the repository root, after scripts/build_reference_data.py")
    return paths


def provenance_only(features: Path, names: list[str], identity: bool, direction: bool, data: Path) -> None:
    """The provenance a full build would record, written into the shipped set; nothing else changes."""
    from dataclasses import replace

    from saefilter.features.feature_set import load_feature_set, save_feature_set
    from saefilter.runs.features import read_build_inputs, record_sources

    inputs = read_build_inputs([], [], names, None, identity, direction=direction)
    feature_set = replace(load_feature_set(features), provenance=inputs.provenance)
    feature_set = record_sources(feature_set, "calibration", [data / "calibration_chat.jsonl"], None)
    save_feature_set(record_sources(feature_set, "settings chosen on", chosen_on(data), None), features)


def saefilter(*args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}
    subprocess.run([sys.executable, "-m", "saefilter.cli", *args], env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="a named model with a `shipped` folder")
    parser.add_argument("--sae", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("artifacts/data"))
    parser.add_argument("--contrasts", default=None, help="built-in contrasts to use (default: features build's, answers)")
    parser.add_argument("--legacy-contrasts", default=None, help="e.g. toxicity,intent: artifacts/data contrast files instead")
    parser.add_argument("--top-each", type=int, default=DEFAULT_TOP_EACH)
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, help="features kept from one contrast")
    parser.add_argument("--aggregation", default=ScoreConfig.aggregation)
    parser.add_argument("--selection", default="token-controlled", choices=("activation", "token-controlled"))
    parser.add_argument("--no-direction", action="store_true", help="latents only, no probe direction (the set before 2026-12-02)")
    parser.add_argument("--no-identity-filter", action="store_true",
                        help="skip features build's identity filter (its reference is every built-in benign text)")
    parser.add_argument("--provenance-only", action="store_true",
                        help="write only the provenance of the shipped set (no model runs; see step 5)")
    parser.add_argument("--no-calibrate", action="store_true",
                        help="stop before `features calibrate` (run it later; it changes no score, only the check "
                             "threshold and the explanations' benign baselines)")
    args = parser.parse_args()

    folder = shipped_dir(args.model)  # raises for a named model without a `shipped` folder
    if args.provenance_only:
        if args.legacy_contrasts:
            sys.exit("--provenance-only reads the built-in contrasts; the legacy ones are not shipped")
        names = args.contrasts.split(",") if args.contrasts else []
        provenance_only(folder / "features.json", names, not args.no_identity_filter,
                        not args.no_direction and names in ([], ["answers"]), args.data)
        return
    # float32 everywhere: `--dtype auto` means bfloat16 on CPUs with native bfloat16, and a set built
    # there differs from the shipped one (5 of 200 latents on 2026-12-07)
    model = ("--model", args.model, "--dtype", "float32")
    target = folder / "sae"
    if args.sae.resolve() != target.resolve():  # --sae is the shipped folder itself: rebuild the set on it as it is
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        shutil.copy(args.sae / "cfg.json", target / "cfg.json")
        weights = load_file(args.sae / "sae_weights.safetensors")
        save_file({k: v.half().contiguous() for k, v in weights.items()}, target / "sae_weights.safetensors")
        shutil.copy(args.sae / "metrics.json", target / "training_metrics.json")

    features = folder / "features.json"
    scratch = Path("artifacts/calibration")
    scratch.mkdir(parents=True, exist_ok=True)
    # the SAE was just copied into the shipped folder: the default --sae ("embedded") is it
    with_direction = False  # fitted by `features build` itself
    if args.legacy_contrasts:
        per_contrast = []
        for contrast in args.legacy_contrasts.split(","):
            path = scratch / f"{contrast}.json"  # the name becomes each feature's "source"
            saefilter("features", "build", *model, "--harmful", str(args.data / f"contrast_{contrast}_harmful.jsonl"),
                      "--benign", str(args.data / f"contrast_{contrast}_benign.jsonl"), "--top", "100",
                      "--selection", args.selection, "-o", str(path))
            per_contrast.append(str(path))
        saefilter("features", "merge", *per_contrast, "--top-each", str(args.top_each), "-o", str(features))
    else:
        names = args.contrasts.split(",") if args.contrasts else []  # none: features build's default, answers
        chosen = [arg for name in names for arg in ("--contrast", name)]
        identity = ("--no-identity-filter",) if args.no_identity_filter else ()
        # the answers contrast alone: its direction from the same forward pass (what add-direction would fit)
        with_direction = not args.no_direction and names in ([], ["answers"])
        direction = ("--direction", "--aggregation", args.aggregation) if with_direction else ()
        saefilter("features", "build", *model, *chosen, *identity, *direction, "--selection", args.selection,
                  "--top", str(args.top), "--top-each", str(args.top_each), "-o", str(features))

    if not args.no_direction and not with_direction:
        saefilter("features", "add-direction", str(features), *model, "--aggregation", args.aggregation)
    if args.no_calibrate:
        return
    # the suggested check threshold and each feature's benign baseline for explanations
    saefilter("features", "calibrate", str(features), *model, "--benign", str(args.data / "calibration_chat.jsonl"),
              "--aggregation", args.aggregation)
    saefilter("features", "record", str(features), *map(str, chosen_on(args.data)), "--role", "settings chosen on")
    print(json.dumps(json.loads(features.read_text())["suggested_threshold"], indent=1))


if __name__ == "__main__":
    main()
