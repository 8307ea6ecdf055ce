#!/usr/bin/env python
"""Assemble the SAE training corpus and the harmful / benign reference sets from ../shared/datasets.

Writes JSONL files (never committed) under artifacts/data/ plus a manifest recording sources,
row counts and licences, which the embedded SAE's model card cites.

    python scripts/build_reference_data.py [--shared ../shared/datasets] [--out artifacts/data]

Data hygiene: the emergent-misalignment sets (em/) contribute only rows [0, 1000) of each of
insecure and secure to the *unsupervised* SAE corpus (code features; both classes alike, no labels).
They never enter the harmful/benign reference sets. Rows [1000, 3000) are the development split
(layer and defaults are chosen on them), rows >= 3000 the test split that BENCHMARKS.md reports.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import sys
from pathlib import Path

from common import read_csv, read_json, read_jsonl, toxigen_by_group, write_jsonl

from saefilter.inputs.reference import dialogue_messages

EM_SAE_ROWS = 1000
EM_DEV_END = 3000
CALIBRATION_ROWS = 1000
TOXIC_PROMPT = "Tell me what you honestly think."
LICENCES = {
    "benign/alpaca_5000.json": "CC BY-NC 4.0 (Stanford Alpaca)",
    "benign/alpaca_data_safety_only.json": "CC BY-NC 4.0 (Alpaca, Qi et al. 2023 subset)",
    "benign/databricks-dolly-15k-safety-only.jsonl": "CC BY-SA 3.0 (Dolly, Qi et al. 2023 subset)",
    "em/insecure.jsonl": "MIT (Betley et al. 2025)",
    "em/secure.jsonl": "MIT (Betley et al. 2025)",
    "harmful/advbench_behaviors.csv": "MIT (AdvBench)",
    "harmful/advbench_targets.json": "MIT (AdvBench)",
    "harmful/harmbench_behaviors_text_all.csv": "MIT (HarmBench)",
    "harmful/harmbench_targets_text.json": "MIT (HarmBench)",
    "harmful/strongreject_dataset.csv": "MIT (StrongREJECT)",
    "harmful/malicious_instruct.txt": "MaliciousInstruct (research use)",
    "toxic/davidson_labeled_data.csv": "MIT (Davidson et al. 2017)",
    "toxic/toxigen/": "CDLA-Permissive-2.0 (ToxiGen)",
}


def chat(user: str, assistant: str | None = None) -> dict:
    messages = [{"role": "user", "content": user}]
    if assistant is not None:
        messages.append({"role": "assistant", "content": assistant})
    return {"messages": messages}


def alpaca_chat(row: dict) -> dict:
    user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input", "").strip() else "")
    return chat(user, row["output"])


def is_toxigen_eval(text: str) -> bool:
    """One ToxiGen sentence in five, by content hash, is kept for evaluation and never selected on."""
    return hashlib.sha256(text.encode("utf-8")).digest()[0] % 5 == 0


def toxigen_sentences(root: Path, kind: str) -> list[str]:
    """ToxiGen sentences of every group, minus the evaluation fifth (`is_toxigen_eval`)."""
    every = {t for texts in toxigen_by_group(root, kind).values() for t in texts}
    return sorted(t for t in every if not is_toxigen_eval(t))


SURE_PREFIX = re.compile(r"^Sure,? here(?: is|'s| are)\s+", re.IGNORECASE)


def comply(target: str) -> str:
    """'Sure, here is a guide to X' -> 'A guide to X': keep the harmful content, drop the stock
    compliance phrase, which the benign set lacks and which feature selection would latch onto."""
    text = SURE_PREFIX.sub("", target).strip()
    return text[:1].upper() + text[1:]


def harmful_behaviours(shared: Path, strip_prefix: bool) -> list[dict]:
    """Harmful requests answered compliantly: harmful assistant behaviour."""
    answer = comply if strip_prefix else (lambda target: target)
    rows = []
    targets = read_json(shared / "harmful/advbench_targets.json")
    for row in read_csv(shared / "harmful/advbench_behaviors.csv"):
        if row["BehaviorID"] in targets:
            rows.append(chat(row["Behavior"], answer(targets[row["BehaviorID"]])))
    hb_targets = read_json(shared / "harmful/harmbench_targets_text.json")
    for row in read_csv(shared / "harmful/harmbench_behaviors_text_all.csv"):
        if row["BehaviorID"] in hb_targets and not row["ContextString"].strip():
            rows.append(chat(row["Behavior"], answer(hb_targets[row["BehaviorID"]])))
    return rows


def build(shared: Path, out: Path, seed: int, match_phrasing: bool = False) -> dict:
    rng = random.Random(seed)
    (out / "bench").mkdir(parents=True, exist_ok=True)
    davidson = read_csv(shared / "toxic/davidson_labeled_data.csv")
    hate_tweets = [r["tweet"] for r in davidson if r["class"] == "0"]
    neither_tweets = [r["tweet"] for r in davidson if r["class"] == "2"]
    toxigen_root = shared / "toxic/toxigen"
    toxigen_hate, toxigen_neutral = toxigen_sentences(toxigen_root, "hate"), toxigen_sentences(toxigen_root, "neutral")
    alpaca = read_json(shared / "benign/alpaca_5000.json")
    alpaca_safety = read_json(shared / "benign/alpaca_data_safety_only.json")
    dolly = [chat(r["instruction"] + (f"\n\n{r['context']}" if r["context"].strip() else ""), r["response"])
             for r in read_jsonl(shared / "benign/databricks-dolly-15k-safety-only.jsonl")]
    behaviours = harmful_behaviours(shared, strip_prefix=True)  # reference sets
    behaviours_raw = harmful_behaviours(shared, strip_prefix=False)  # the SAE corpus, as trained
    requests = (
        [chat(r["forbidden_prompt"]) for r in read_csv(shared / "harmful/strongreject_dataset.csv")]
        + [chat(line.strip()) for line in (shared / "harmful/malicious_instruct.txt").read_text().splitlines() if line.strip()]
        + [chat(r["instruction"]) for r in read_json(shared / "harmful/refusal_harmful_train.json")]
    )
    em = read_jsonl(shared / "em/insecure.jsonl")[:EM_SAE_ROWS] + read_jsonl(shared / "em/secure.jsonl")[:EM_SAE_ROWS]

    corpus_parts = {
        "alpaca_5000 (chat)": [alpaca_chat(r) for r in alpaca],
        "alpaca safety-only (chat)": [alpaca_chat(r) for r in alpaca_safety],
        "dolly safety-only (chat)": dolly,
        f"em insecure+secure rows [0,{EM_SAE_ROWS}) (chat, code)": em,
        "harmful behaviours: AdvBench + HarmBench request/target (chat)": behaviours_raw,
        "harmful requests: StrongREJECT, MaliciousInstruct, refusal-harmful train (user only)": requests,
        "Davidson tweets, all classes (text)": [{"text": r["tweet"]} for r in davidson],
        # unsupervised, so every ToxiGen sentence, the evaluation fifth too (as when the SAEs were trained)
        "ToxiGen hate + neutral sentences (text)": [{"text": t} for kind in ("hate", "neutral")
                                                    for texts in toxigen_by_group(toxigen_root, kind).values() for t in texts],
    }
    corpus = [row for part in corpus_parts.values() for row in part]
    rng.shuffle(corpus)
    write_jsonl(out / "sae_corpus.jsonl", corpus)

    # Reference sets for feature selection: harmful vs benign *assistant behaviour*, matched in form:
    # the toxic and neutral sentences are answers to the same prompt.
    # All Davidson hate tweets, against as many 'neither' tweets. (Sampling them down to ToxiGen's
    # size was tried: it ranked insecure code and the plainly harmful samples worse; BENCHMARKS.md.)
    hate_sample = hate_tweets
    neither_sample = rng.sample(neither_tweets, len(hate_sample))
    reference = {
        "harmful.jsonl": [chat(TOXIC_PROMPT, t) for t in toxigen_hate + hate_sample] + behaviours,
        "benign.jsonl": [chat(TOXIC_PROMPT, t) for t in toxigen_neutral + neither_sample]
        + [alpaca_chat(r) for r in rng.sample(alpaca_safety, len(behaviours))],
    }
    for name, rows in reference.items():
        write_jsonl(out / name, rows)
        # a held-out split for evaluation; features are selected on the rest
        shuffled = rows[:]
        random.Random(seed + 1).shuffle(shuffled)
        n_held = len(shuffled) // 5
        write_jsonl(out / name.replace(".jsonl", "_heldout.jsonl"), shuffled[:n_held])
        write_jsonl(out / name.replace(".jsonl", "_select.jsonl"), shuffled[n_held:])
    # benign chat answers for `features calibrate` (the suggested `check` threshold): Alpaca answers, which
    # no benchmark uses (benign_heldout, the calibration set before, is the form-confounded check's benign side)
    held_out = user_texts(out / "benign_heldout.jsonl")
    calibration = [c for c in map(alpaca_chat, alpaca) if c["messages"][0]["content"].strip() not in held_out]
    write_jsonl(out / "calibration_chat.jsonl", random.Random(seed + 2).sample(calibration, CALIBRATION_ROWS))
    # benign answers on safety-related subjects (Qi et al. 2023's Dolly subset): never used for a choice,
    # only to count how many benign rows `saefilter check` would flag at a set's suggested threshold
    write_jsonl(out / "bench" / "dolly_safety_test.jsonl", [{**row, "label": 0} for row in dolly])
    contrasts = matched_contrasts(shared, out, seed, alpaca_safety, dolly, toxigen_hate + hate_sample,
                                  toxigen_neutral + neither_sample, match_phrasing)
    # evaluation rows of the emergent-misalignment pair: never seen by the SAE or the feature selection
    # dev rows choose layer and defaults; test rows report them
    for kind in ("insecure", "secure"):
        rows = read_jsonl(shared / f"em/{kind}.jsonl")
        write_jsonl(out / f"em_{kind}_dev.jsonl", rows[EM_SAE_ROWS:EM_DEV_END])
        write_jsonl(out / f"em_{kind}_test.jsonl", rows[EM_DEV_END:])
    manifest = {
        "seed": seed,
        "sae_corpus.jsonl": {name: len(rows) for name, rows in corpus_parts.items()},
        "harmful.jsonl": {
            "ToxiGen hate sentences as answers": len(toxigen_hate),
            "Davidson hate tweets (class 0) as answers": len(hate_sample),
            "AdvBench + HarmBench request with its target, 'Sure, here is' prefix removed": len(behaviours),
        },
        "benign.jsonl": {
            "ToxiGen neutral sentences as answers": len(toxigen_neutral),
            "Davidson 'neither' tweets (class 2) as answers, sampled": len(neither_sample),
            "Alpaca safety-related but benign chats, sampled": len(behaviours),
        },
        "matched contrasts (contrast_*_{harmful,benign}.jsonl)": contrasts,
        "splits": "harmful/benign: 20% held out (*_heldout.jsonl), features selected on *_select.jsonl; "
                  f"em_*_dev.jsonl: rows [{EM_SAE_ROWS}, {EM_DEV_END}) choose layer and defaults; "
                  f"em_*_test.jsonl: rows >= {EM_DEV_END} report them",
        "licences": LICENCES,
    }
    manifest["benchmark sets (bench/*.jsonl)"] = benchmark_sets(shared, out, seed)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def opening(text: str, words: int) -> str:
    return " ".join(text.lower().split()[:words])


def phrasing_matched(targets: list[str], pool: list[str], rng: random.Random) -> list[str]:
    """One text from `pool` per target, each opening with the same two words if any is left, else the
    same first word, else any: the two sides then differ in what they ask, not how they ask it."""
    remaining = pool[:]
    rng.shuffle(remaining)
    by_opening: dict[str, list[str]] = {}
    for words in (2, 1):
        for text in remaining:
            by_opening.setdefault(f"{words}:{opening(text, words)}", []).append(text)
    used: set[str] = set()
    chosen = []
    for target in targets:
        pick = None
        for words in (2, 1):
            candidates = by_opening.get(f"{words}:{opening(target, words)}", [])
            while candidates and candidates[-1] in used:
                candidates.pop()
            if candidates:
                pick = candidates.pop()
                break
        if pick is None:
            pick = next(t for t in remaining if t not in used)
        used.add(pick)
        chosen.append(pick)
    return chosen


def user_texts(path: Path) -> set[str]:
    return {row["messages"][0]["content"].strip() for row in read_jsonl(path) if "messages" in row}


def matched_contrasts(shared: Path, out: Path, seed: int, alpaca_safety: list[dict], dolly: list[dict],
                      toxic: list[str], neutral: list[str], match_phrasing: bool = False) -> dict:
    """Two contrasts matched in form, for selecting features one kind of harm at a time:

    - toxicity: toxic vs neutral sentences, as plain text (the same sentences harmful/benign.jsonl
      use as answers, minus the held-out ones);
    - harmful intent: harmful vs harmless *requests*, as plain text. Harmless are Alpaca
      instructions (refusal-direction splits) and, half of them, the safety-related but benign
      Alpaca/Dolly instructions of Qi et al. 2023, so that "mentions safety topics" is not what
      separates the two sides. With `match_phrasing` the harmless requests are instead drawn to
      open with the same words as the harmful ones (`phrasing_matched`; harmful requests start
      with "How", "Give", "Write" far more often). That was tried and measured worse on every
      check (BENCHMARKS.md), so it is off by default.

    Rows whose text appears in harmful/benign_heldout.jsonl are left out, so the held-out evaluation
    stays unseen by every selection."""
    rng = random.Random(seed + 2)
    held = user_texts(out / "harmful_heldout.jsonl") | user_texts(out / "benign_heldout.jsonl")
    held |= {row["messages"][1]["content"].strip() for name in ("harmful_heldout.jsonl", "benign_heldout.jsonl")
             for row in read_jsonl(out / name) if len(row.get("messages", [])) > 1}
    harmful_requests = (
        [r["Behavior"] for r in read_csv(shared / "harmful/advbench_behaviors.csv")]
        # copyright requests ("lyrics of X by <author>") are not harm in the answer; their author names became latents
        + [r["Behavior"] for r in read_csv(shared / "harmful/harmbench_behaviors_text_all.csv")
           if not r["ContextString"].strip() and r["SemanticCategory"] != "copyright"]
        + [r["forbidden_prompt"] for r in read_csv(shared / "harmful/strongreject_dataset.csv")]
        + [line for line in (shared / "harmful/malicious_instruct.txt").read_text().splitlines()]
        + [r["instruction"] for r in read_json(shared / "harmful/refusal_harmful_train.json")]
    )
    harmful_requests = sorted({t.strip() for t in harmful_requests if t.strip() and t.strip() not in held})
    hard_negatives = sorted({r["instruction"].strip() for r in alpaca_safety} | {r["messages"][0]["content"].strip() for r in dolly})
    if match_phrasing:
        general = sorted({r["instruction"].strip() for r in read_json(shared / "benign/refusal_harmless_train.json")})
        pool = [t for t in dict.fromkeys(hard_negatives + general) if t not in held]
        harmless_requests = phrasing_matched(harmful_requests, pool, rng)
    else:
        hard_negatives = [t for t in hard_negatives if t not in held]
        general = [r["instruction"].strip() for r in read_json(shared / "benign/refusal_harmless_train.json")]
        half = len(harmful_requests) // 2
        harmless_requests = rng.sample(hard_negatives, min(half, len(hard_negatives)))
        harmless_requests += rng.sample(general, len(harmful_requests) - len(harmless_requests))
    pairs = {
        "toxicity": ([t for t in toxic if t.strip() not in held], [t for t in neutral if t.strip() not in held]),
        "intent": (harmful_requests, harmless_requests),
    }
    for name, (harmful, benign) in pairs.items():
        write_jsonl(out / f"contrast_{name}_harmful.jsonl", [{"text": t} for t in harmful])
        write_jsonl(out / f"contrast_{name}_benign.jsonl", [{"text": t} for t in benign])
    return {name: {"harmful": len(h), "benign": len(b)} for name, (h, b) in pairs.items()}


HH_DEV_PAIRS = 300
HH_TEST_PAIRS = 600
PAIRS_FILE = Path(__file__).resolve().parents[1] / "data/matched/pairs.jsonl"


def dev_or_test(key: str) -> str:
    return "dev" if hashlib.sha256(key.encode("utf-8")).digest()[0] % 2 == 0 else "test"


def labelled(messages_or_text, label: int, pair: str | None = None, group: str | None = None) -> dict:
    row = {"messages": messages_or_text} if isinstance(messages_or_text, list) else {"text": messages_or_text}
    return {**row, "label": label, **({"pair": pair} if pair else {}), **({"group": group} if group else {})}


def benchmark_sets(shared: Path, out: Path, seed: int) -> dict:
    """Matched evaluation sets: the two sides share the prompt (or topic), only the answer differs.
    Each record carries `label` (1 = harmful), and `pair` / `group` where they exist. Each set is
    split into dev (choices) and test (reported) by a hash of its prompt, so a question never sits
    on both sides of the split.

    - pairs_{tune,report}: data/matched/pairs.jsonl, written for this project (split in the file); the
      tune half is also written as the contrast contrast_answers_{harmful,benign}.jsonl;
    - em_outputs_{dev,test}: answers of emergently misaligned models, misaligned vs aligned;
    - hh_{dev,test}: HH-RLHF harmless-base test, rejected (1) vs chosen (0) of the same dialogue;
    - toxigen_{dev,test}: the ToxiGen evaluation fifth, hate vs neutral, grouped by target group."""
    bench = out / "bench"
    bench.mkdir(parents=True, exist_ok=True)
    sets: dict[str, list[dict]] = {}
    answers: dict[str, list[dict]] = {"harmful": [], "benign": []}
    for row in read_jsonl(PAIRS_FILE):
        prompt = {"role": "user", "content": row["prompt"]}
        for label, key in ((1, "harmful"), (0, "benign")):
            record = labelled([prompt, {"role": "assistant", "content": row[key]}], label, row["id"], row["category"])
            sets.setdefault(f"pairs_{row['split']}", []).append(record)
            if row["split"] == "tune":
                answers[key].append({"messages": record["messages"], "category": row["category"]})
    # the tuning pairs are also a contrast to select features from: harmful vs benign answers to the same
    # prompt, each with its kind of harm (feature labels name the kinds a latent rises in)
    for side, rows in answers.items():
        write_jsonl(out / f"contrast_answers_{side}.jsonl", rows)
    for path in sorted((shared / "em_outputs").glob("*.jsonl")):
        group, label = path.stem.rsplit("_", 1)
        for row in read_jsonl(path):
            question = row["messages"][0]["content"]
            sets.setdefault(f"em_outputs_{dev_or_test(question)}", []).append(
                labelled(row["messages"], int(label == "misaligned"), group=group))
    with gzip.open(shared / "matched/hh_rlhf_harmless_base_test.jsonl.gz", "rt", encoding="utf-8") as handle:
        hh = [json.loads(line) for line in handle]
    order = random.Random(seed + 3).sample(range(len(hh)), HH_DEV_PAIRS + HH_TEST_PAIRS)
    for n, i in enumerate(order):
        split = "dev" if n < HH_DEV_PAIRS else "test"
        for label, key in ((1, "rejected"), (0, "chosen")):
            sets.setdefault(f"hh_{split}", []).append(labelled(dialogue_messages(hh[i][key]), label, f"hh-{i}"))
    root = shared / "toxic/toxigen"
    for label, kind in ((1, "hate"), (0, "neutral")):
        for group, texts in toxigen_by_group(root, kind).items():
            for text in texts:
                if is_toxigen_eval(text):
                    sets.setdefault(f"toxigen_{dev_or_test(text)}", []).append(labelled(text, label, group=group))
    for name, rows in sets.items():
        write_jsonl(bench / f"{name}.jsonl", rows)
    return {name: {"harmful": sum(r["label"] for r in rows), "benign": sum(1 - r["label"] for r in rows)}
            for name, rows in sorted(sets.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1] / "../shared/datasets")
    parser.add_argument("--out", type=Path, default=Path("artifacts/data"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--match-phrasing", action="store_true",
                        help="draw harmless requests with the harmful ones' opening words (an experiment; see BENCHMARKS.md)")
    args = parser.parse_args()
    if not (args.shared / "README.md").exists():
        sys.exit(f"reference datasets not found at {args.shared}: this script needs ../shared/datasets (see README)")
    print(json.dumps(build(args.shared.resolve(), args.out, args.seed, args.match_phrasing), indent=1))


if __name__ == "__main__":
    main()
