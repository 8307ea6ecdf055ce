#!/usr/bin/env python
"""Tried and dropped (BENCHMARKS.md): a third, domain-matched contrast for cyber harm.

Harmful side: the requests of artifacts/data/contrast_intent_harmful.jsonl that name a cyber harm
(hacking, malware, exploits, ...); benign side: the Alpaca instructions about code, websites or
software (none of the held-out benign rows). Selects the top cyber latents and scores the same three
checks as `explore_scoring.py --contrasts` (held-out harmful vs benign, em dev, mixed_chat.jsonl),
alone and added to the embedded default's 50 latents, from the exploration's cached activations.

    python scripts/explore_scoring.py --sae artifacts/sae/layer_4 --contrasts   # once: the cache
    python scripts/explore_cyber_contrast.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from explore_scoring import DATA, MIXED_HARMFUL_LINES, cached_activations, unweighted_proximity

from saefilter.config import ScoreConfig, resolve_features_path
from saefilter.evaluation.evaluate import geometric_scores
from saefilter.evaluation.metrics import auroc, positives_removed
from saefilter.features.selection import select_features
from saefilter.inputs.reference import read_reference
from saefilter.model.activations import FeatureEncoder
from saefilter.scoring.scorer import load_backbone

CYBER = re.compile(r"\b(hack|malware|virus|exploit|ransomware|keylogger|ddos|phishing|botnet|trojan|sql injection"
                   r"|backdoor|rootkit|crack|spyware|worm|vulnerab)\w*", re.IGNORECASE)
CODE = re.compile(r"\b(code|program|function|script|python|sql|javascript|java|html|algorithm|class|api|database"
                  r"|regex|array|website|server|software)\b", re.IGNORECASE)
EXPLORE = Path("artifacts/explore/layer_4")  # the embedded SAE is this one, stored as float16
FOLDER = Path("artifacts/explore/cyber")


def contrast_texts() -> tuple[list[str], list[str]]:
    harmful = [c.text for c in read_reference(DATA / "contrast_intent_harmful.jsonl")]
    heldout = (DATA / "benign_heldout.jsonl").read_text()
    alpaca = json.loads(Path("../shared/datasets/benign/alpaca_5000.json").read_text())
    benign = [a["instruction"] + (" " + a["input"] if a["input"] else "") for a in alpaca
              if CODE.search(a["instruction"]) and a["instruction"] not in heldout]
    return [t for t in harmful if CYBER.search(t)], benign


def main() -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    lm, loaded = load_backbone(ScoreConfig())
    encoder = FeatureEncoder(lm, loaded)
    acts = {}
    for side, texts in zip(("harmful", "benign"), contrast_texts(), strict=True):
        path = FOLDER / f"cyber_{side}.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        acts[side] = cached_activations(encoder, lm.tokenizer, FOLDER / f"cyber_{side}.npz", [path], None, 0)
    print(f"cyber contrast: {len(acts['harmful']['max'])} harmful, {len(acts['benign']['max'])} benign")

    def cached(name: str) -> dict:
        return dict(np.load(EXPLORE / f"{name}.npz"))

    checks = {"heldout": (cached("harmful_heldout"), cached("benign_heldout")), "em_dev": (cached("insecure"), cached("secure"))}
    mixed = cached("mixed_chat")
    mixed_labels = np.isin(np.arange(1, len(mixed["max"]) + 1), MIXED_HARMFUL_LINES).astype(float)
    default = [f["index"] for f in json.loads(resolve_features_path(ScoreConfig().features).read_text())["features"]]
    decoder = loaded.sae.W_dec.detach().float().numpy()
    for max_benign in (0.5, 0.3):
        selected = [f.index for f in select_features(acts["harmful"]["max"], acts["benign"]["max"], 100, 0.02, max_benign)]
        for top in (10, 25, 50):
            for name, chosen in (("cyber only", selected[:top]), ("default + cyber", list(dict.fromkeys(default + selected[:top])))):
                proximity = unweighted_proximity(decoder, chosen, "sq-excess").proximity
                row = {"max_benign": max_benign, "top": top, "features": name}
                for check, (pos, neg) in checks.items():
                    scores = geometric_scores(np.r_[pos["max"], neg["max"]], proximity)
                    labels = np.r_[np.ones(len(pos["max"])), np.zeros(len(neg["max"]))]
                    row[check] = round(auroc(scores, labels), 3)
                    if check == "em_dev":
                        row["em_removed_at_50"] = round(positives_removed(scores, labels, 0.5), 2)
                mixed_scores = geometric_scores(mixed["max"], proximity)
                row["mixed_auroc"] = round(auroc(mixed_scores, mixed_labels), 3)
                row["mixed_top_row_harmful"] = bool(mixed_labels[np.argmax(mixed_scores)])
                print(json.dumps(row))


if __name__ == "__main__":
    main()
