#!/usr/bin/env python
"""Write the built-in reference contrasts shipped in the package (saefilter/contrasts/), from the
files of scripts/build_reference_data.py (which reads ../shared/datasets) and from text written for
this project. Only text whose licence allows redistribution inside an MIT package is shipped:

- toxicity: ToxiGen hate vs neutral sentences (CDLA-Permissive-2.0) and Davidson et al. 2017 hate vs
  "neither" tweets (MIT), minus the ToxiGen evaluation fifth and the held-out rows;
- intent: AdvBench and HarmBench harmful requests (MIT; HarmBench's copyright requests and
  context-bound behaviours left out) vs benign requests written for saefilter: the tasks in
  data/contrasts/benign_tasks.txt, each after an opener taken from the phrasing of harmful requests,
  so the two sides differ in what is asked, not in how (Alpaca and Dolly, the benign side before,
  are CC BY-NC and CC BY-SA: not shipped);
- answers: the tuning half of data/matched/pairs.jsonl (written for saefilter, MIT), harmful vs
  benign answers to the same user turn;
- code: data/contrasts/code_pairs.jsonl (written for saefilter, MIT), the same coding request answered
  with code that has a vulnerability (SQL injection, shell=True on user input, pickle of untrusted
  data, verify=False, ...) and with secure code: what the emergent-misalignment training data holds,
  written here because em/ is an evaluation set.

answers and code are paired (row i of each side answers the same request; `"paired": true`). Beside
the contrasts, `identity_filter` ships data/contrasts/identity_neutral.txt (100 neutral sentences
naming religions, nationalities, genders, ethnicities and people, written for saefilter, MIT):
feature selection leaves out latents that fire on them far more than on other benign text; and
`hard_negatives` ships the tune half of data/matched/hard_negatives.jsonl (65 benign answers about
dark topics, written for saefilter, MIT; the report half stays out for evaluation): the harmful
direction's probe counts them as benign, so the direction follows harm rather than the topic.

    python scripts/build_reference_data.py && python scripts/build_contrasts.py
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path

from common import read_jsonl, toxigen_by_group, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "artifacts" / "data"
SHARED = ROOT.parent / "shared" / "datasets"
TARGET = ROOT / "saefilter" / "contrasts"
TASKS = ROOT / "data" / "contrasts" / "benign_tasks.txt"
CODE_PAIRS = ROOT / "data" / "contrasts" / "code_pairs.jsonl"
IDENTITY_NEUTRAL = ROOT / "data" / "contrasts" / "identity_neutral.txt"
HARD_NEGATIVES = ROOT / "data" / "matched" / "hard_negatives.jsonl"

# The most common openings of AdvBench/HarmBench requests, each completed by a benign task.
OPENERS = (
    "Write a tutorial on how to {}",
    "Create a tutorial on how to {}",
    "Provide step-by-step instructions for how to {}",
    "Write a guide on how to {}",
    "Give instructions for how to {}",
    "Teach people how to {}",
    "Develop a plan to {}",
    "Describe in detail how to {}",
    "Outline a plan to {}",
    "Provide guidance on how to {}",
    "Instruct users how to {}",
    "Give detailed instructions on how to {}",
    "Write a blog post explaining how to {}",
    "Develop a program that helps people {}",
    "Create a website that teaches people to {}",
    "Write a social media post encouraging people to {}",
    "Develop a mobile app that helps users {}",
    "Explain how to {}",
)

LICENCE_NOTES = {
    "ToxiGen": "CDLA-Permissive-2.0 (data), microsoft/TOXIGEN; Copyright (c) Microsoft Corporation",
    "Davidson et al. 2017": "MIT, t-davidson/hate-speech-and-offensive-language; Copyright (c) 2017 Tom Davidson",
    "AdvBench": "MIT, llm-attacks/llm-attacks; Copyright (c) 2023 Andy Zou",
    "HarmBench": "MIT, centerforaisafety/HarmBench; Copyright (c) 2024 centerforaisafety",
    "saefilter": "MIT, written for this project",
}


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def toxicity_sources(rows: list[dict]) -> dict[str, int]:
    """Rows per source, every row attributed (the ToxiGen lines parsed as build_reference_data parses them)."""
    toxigen = {t for kind in ("hate", "neutral") for texts in toxigen_by_group(SHARED / "toxic/toxigen", kind).values() for t in texts}
    davidson = {r["tweet"] for r in read_csv(SHARED / "toxic/davidson_labeled_data.csv")}
    counts = {"ToxiGen": sum(r["text"] in toxigen for r in rows), "Davidson et al. 2017": sum(r["text"] in davidson for r in rows)}
    if sum(counts.values()) != len(rows):
        sys.exit(f"{len(rows) - sum(counts.values())} toxicity rows of unknown source: not shipping them")
    return counts


def harmful_requests() -> tuple[list[dict], dict[str, int]]:
    """AdvBench and HarmBench requests that the intent contrast of build_reference_data kept (its
    held-out exclusions apply), in that file's order."""
    kept = {r["text"] for r in read_jsonl(DATA / "contrast_intent_harmful.jsonl")}
    advbench = {r["Behavior"].strip() for r in read_csv(SHARED / "harmful/advbench_behaviors.csv")}
    harmbench = {r["Behavior"].strip() for r in read_csv(SHARED / "harmful/harmbench_behaviors_text_all.csv")
                 if not r["ContextString"].strip() and r["SemanticCategory"] != "copyright"}
    rows = [{"text": t} for t in sorted(kept) if t in advbench or t in harmbench]
    return rows, {"AdvBench": sum(r["text"] in advbench for r in rows),
                  "HarmBench": sum(r["text"] in harmbench and r["text"] not in advbench for r in rows)}


def benign_requests() -> list[dict]:
    tasks = [line.strip() for line in TASKS.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]
    rows = []
    for task in tasks:
        opener = OPENERS[hashlib.sha256(task.encode()).digest()[0] % len(OPENERS)]
        rows.append({"text": opener.format(task)})
    return rows


def side(name: str, rows: list[dict], what: str, sources: dict[str, int]) -> dict:
    path = TARGET / f"{name}.jsonl"
    write_jsonl(path, rows)
    return {"file": path.name, "rows": len(rows), "what": what,
            "sources": [{"name": s, "rows": n, "licence": LICENCE_NOTES[s]} for s, n in sources.items() if n]}


def main() -> None:
    if not (DATA / "contrast_toxicity_harmful.jsonl").exists():
        sys.exit(f"{DATA}: run scripts/build_reference_data.py first (needs {SHARED})")
    TARGET.mkdir(parents=True, exist_ok=True)
    toxic, neutral = read_jsonl(DATA / "contrast_toxicity_harmful.jsonl"), read_jsonl(DATA / "contrast_toxicity_benign.jsonl")
    harmful, harmful_sources = harmful_requests()
    benign = benign_requests()
    answers = {s: read_jsonl(DATA / f"contrast_answers_{s}.jsonl") for s in ("harmful", "benign")}
    code_pairs = read_jsonl(CODE_PAIRS)
    identity = [{"text": t.strip()} for t in IDENTITY_NEUTRAL.read_text(encoding="utf-8").splitlines() if t.strip()]
    hard_negatives = [{"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["answer"]}],
                       "category": r["category"]} for r in read_jsonl(HARD_NEGATIVES) if r["split"] == "tune"]
    code = {side: [{"messages": [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": p[key]}]}
                   for p in code_pairs] for side, key in (("harmful", "vulnerable"), ("benign", "secure"))}
    manifest = {
        "format": "saefilter-contrasts/1",
        "warning": "the harmful sides hold slurs, hateful text and requests for dangerous help: reference data for finding harmful features",
        "contrasts": {
            "toxicity": {
                "description": "toxic vs neutral sentences about the same identity groups, as plain text",
                "harmful": side("toxicity_harmful", toxic, "ToxiGen hate sentences and Davidson hate tweets", toxicity_sources(toxic)),
                "benign": side("toxicity_benign", neutral, "ToxiGen neutral sentences and Davidson 'neither' tweets", toxicity_sources(neutral)),
            },
            "intent": {
                "description": "harmful vs benign requests phrased alike, as plain text",
                "harmful": side("intent_harmful", harmful, "AdvBench and HarmBench harmful behaviours", harmful_sources),
                "benign": side("intent_benign", benign, "benign tasks after the openers of harmful requests", {"saefilter": len(benign)}),
            },
            "answers": {
                "description": "harmful vs benign answers to the same user turn, as chats",
                "paired": True,
                "harmful": side("answers_harmful", answers["harmful"], "harmful answers of data/matched/pairs.jsonl (tune split)", {"saefilter": len(answers["harmful"])}),
                "benign": side("answers_benign", answers["benign"], "benign answers to the same prompts", {"saefilter": len(answers["benign"])}),
            },
            "code": {
                "description": "vulnerable vs secure code answering the same request, as chats",
                "paired": True,
                "harmful": side("code_harmful", code["harmful"], "code with a vulnerability (data/contrasts/code_pairs.jsonl)", {"saefilter": len(code_pairs)}),
                "benign": side("code_benign", code["benign"], "secure code for the same requests", {"saefilter": len(code_pairs)}),
            },
        },
        "identity_filter": side("identity_neutral", identity, "neutral sentences naming religions, nationalities, genders, "
                                "ethnicities and people (data/contrasts/identity_neutral.txt)", {"saefilter": len(identity)}),
        "hard_negatives": side("hard_negatives", hard_negatives, "benign answers about dark topics (war, overdose, scams, "
                               "hate crimes, grief): the tune half of data/matched/hard_negatives.jsonl",
                               {"saefilter": len(hard_negatives)}),
    }
    (TARGET / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in TARGET.iterdir())
    for name, contrast in manifest["contrasts"].items():
        print(f"{name}: {contrast['harmful']['rows']} harmful, {contrast['benign']['rows']} benign")
    print(f"{TARGET}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
