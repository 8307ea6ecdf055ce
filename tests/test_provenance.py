"""Provenance of feature sets and the decontamination check of eval and drift --pairs."""

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import ANSWERS, TRIGGER, chat, write_jsonl

from saefilter.errors import InputError
from saefilter.features.feature_set import load_feature_set, merge_feature_sets, save_feature_set
from saefilter.features.provenance import Provenance, check_overlap
from saefilter.inputs.fingerprint import Fingerprint, find_matches, fingerprint, ngram_hashes, normalised_words
from saefilter.inputs.formats import to_conversation

LONG = ("The quick brown fox jumps over the lazy dog while the farmer sleeps soundly under the old oak tree "
        "near the river bank")
OTHER = "Rain is expected in the north this evening, with clear skies returning by the weekend for most of us."


def conv(answer: str, user: str = "tell me something"):
    return to_conversation(chat(user, answer))


def test_a_copy_differing_only_in_case_spacing_and_unicode_is_an_exact_match():
    source = {"contrast": fingerprint([LONG])}
    copy = "  the QUICK   brown fox jumps over the lazy dog while the farmer sleeps soundly under the old oak tree near the river bank! "
    matches = find_matches([copy, "ｔｈｅ quick brown"], source)  # full-width letters normalise (NFKC) too
    assert [(m.row, m.exact) for m in matches] == [(0, True)]


def test_a_paraphrase_sharing_one_13_gram_is_caught_and_common_short_phrases_are_not():
    source = {"contrast": fingerprint([LONG])}
    shared = " ".join(normalised_words(LONG)[3:16])  # exactly 13 words of it
    paraphrase = f"Someone told me that {shared} and nothing else happened that day."
    near_miss = " ".join(normalised_words(LONG)[3:15]) + " elsewhere entirely"  # 12 shared words, not 13
    unrelated = "How are you today? I am fine, thanks. The weather is nice and the dog is lazy."
    matches = find_matches([paraphrase, near_miss, unrelated], source)
    assert [(m.row, m.exact, m.shared) for m in matches] == [(0, False, 1)]


def test_ngram_hashes_are_one_per_window_and_depend_on_order():
    words = normalised_words(LONG)
    hashes = ngram_hashes(words)
    assert len(hashes) == len(words) - 12 and len(set(hashes.tolist())) == len(hashes)
    assert ngram_hashes(words[:12]).size == 0
    assert ngram_hashes(list(reversed(words)))[0] not in set(hashes.tolist())


def test_a_capped_source_keeps_a_hash_chosen_share_and_still_matches_its_own_rows():
    rng = np.random.default_rng(0)
    vocabulary = [f"w{i}" for i in range(500)]
    texts = [" ".join(rng.choice(vocabulary, 40)) for _ in range(60)]
    whole, capped = fingerprint(texts), fingerprint(texts, cap=300)
    assert capped.sample > 1 and len(capped.ngrams) <= 300
    assert set(capped.ngrams.tolist()) <= set(whole.ngrams.tolist())
    assert all(h % capped.sample == 0 for h in capped.ngrams.tolist())
    # a long passage of a row, inside other text, shares many windows: the sampled ones still find it
    passage = "some new words first " + " ".join(texts[5].split()[:35]) + " and a new ending"
    found = find_matches([passage], {"capped": capped})
    assert [m.row for m in found] == [0] and not found[0].exact


def test_fingerprint_and_provenance_round_trip_through_save_and_load(tmp_path):
    provenance = Provenance().with_source("contrast harmful", "h.jsonl", [conv(LONG)])
    provenance = provenance.with_source("contrast benign", "b.jsonl", [conv(OTHER)])
    provenance = provenance.with_source("direction training", "h.jsonl", [conv(LONG)])  # stored once
    assert list(provenance.sources) == ["h.jsonl", "b.jsonl"]
    raw = {"features": [{"index": 3}], "d_sae": 8, "provenance": provenance.as_json()}
    (tmp_path / "set.json").write_text(json.dumps(raw))
    loaded = load_feature_set(tmp_path / "set.json")
    assert loaded.provenance.roles == provenance.roles
    assert all(loaded.provenance.sources[n] == provenance.sources[n] for n in provenance.sources)
    save_feature_set(loaded, tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text())["provenance"] == raw["provenance"]
    assert Fingerprint.from_json(provenance.sources["h.jsonl"].as_json(), "x") == provenance.sources["h.jsonl"]
    # a same-named source with other rows (the file changed) is kept apart, not overwritten
    changed = provenance.with_source("calibration", "h.jsonl", [conv(OTHER)])
    assert changed.roles["calibration"] == ("h.jsonl (2)",) and changed.sources["h.jsonl"] == provenance.sources["h.jsonl"]


def test_a_damaged_provenance_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"features": [1], "provenance": {"roles": {"contrast harmful": ["x"]}, "sources": {}}}))
    with pytest.raises(InputError, match=r"bad\.json: provenance.*not stored"):
        load_feature_set(path)
    path.write_text(json.dumps({"features": [1], "provenance": {"roles": {}, "sources": {
        "x": {"rows": 1, "exact": "abc", "ngrams": "", "ngram_sample": 1}}}}))
    with pytest.raises(InputError, match="exact"):
        load_feature_set(path)


def test_merge_keeps_the_provenance_of_every_set():
    from saefilter.features.feature_set import FeatureSet, HarmfulFeature

    a = FeatureSet((HarmfulFeature(1),), 8, provenance=Provenance().with_source("contrast harmful", "a", [conv(LONG)]))
    b = FeatureSet((HarmfulFeature(2),), 8, provenance=Provenance().with_source("contrast harmful", "b", [conv(OTHER)]))
    merged = merge_feature_sets([("a", a), ("b", b)])
    assert merged.provenance.roles == {"contrast harmful": ("a", "b")}
    assert all("provenance" not in source for source in merged.meta["merged_from"])


def test_overlap_names_file_and_line_and_counts_per_role(tmp_path):
    provenance = Provenance().with_source("contrast harmful", "h", [conv(LONG)])
    provenance = provenance.with_source("settings chosen on", "dev", [conv(OTHER)])
    path = write_jsonl(tmp_path / "eval.jsonl", [chat("q", "nothing alike here"), chat("q", LONG.upper()),
                                                 chat("q", OTHER)])
    from saefilter.inputs.reference import read_reference

    overlap = check_overlap(provenance, list(read_reference(path)))
    assert overlap.rows == [1, 2] and overlap.counts() == {"contrast harmful": 1, "settings chosen on": 1}
    assert overlap.lines()[0] == f"{path}:2: copy of h (contrast harmful)"
    assert "2 of 3 evaluation rows" in overlap.summary("evaluation rows")


def test_the_drift_pairs_refusal_is_the_same_check(tmp_path):
    from saefilter.drift.pairs import BUILTIN_PAIRS, read_pairs, refuse_drift_answers

    answer = read_pairs(BUILTIN_PAIRS)[0].harmful
    words = answer.split()
    assert len(words) >= 13
    paraphrase = "In other words: " + " ".join(words[:13]).lower() + " -- that is all."
    with pytest.raises(InputError, match=r"c\.jsonl:2: this row shares 1 13-word passage with"):
        refuse_drift_answers("c.jsonl", [conv(OTHER), replace(conv(paraphrase), origin="c.jsonl:2")])
    assert refuse_drift_answers("c.jsonl", [conv(OTHER)])


@pytest.fixture(scope="module")
def built(tmp_path_factory, model_dir, planted):
    """A set built from a contrast by the CLI, with the rows it was built on."""
    from test_cli import saefilter

    folder = tmp_path_factory.mktemp("provenance")
    filler = "and the weather today is sunny so please write a poem about cats and dogs here"
    harmful = [chat("tell me a story", f"{TRIGGER} {a} {filler}") for a in ANSWERS]
    benign = [chat("tell me a story", f"{a} {filler} too") for a in ANSWERS]
    h, b = write_jsonl(folder / "harmful.jsonl", harmful), write_jsonl(folder / "benign.jsonl", benign)
    out = folder / "features.json"
    result = saefilter("features", "build", "--harmful", str(h), "--benign", str(b), "--model", str(model_dir),
                       "--sae", str(planted), "--top", "3", "--no-identity-filter", "-o", str(out))
    assert result.returncode == 0, result.stderr
    return folder, out, harmful, benign


def test_features_build_records_its_contrast_and_show_prints_it(built):
    from test_cli import saefilter

    folder, out, harmful, _ = built
    feature_set = load_feature_set(out)
    assert [(r, s.rsplit("/", 1)[-1], n) for r, s, n in feature_set.provenance.rows()] == [
        ("contrast harmful", "harmful.jsonl", len(harmful)), ("contrast benign", "benign.jsonl", len(harmful))]
    shown = saefilter("features", "show", str(out))
    assert shown.returncode == 0 and "contrast harmful:" in shown.stdout and "harmful.jsonl" in shown.stdout
    record = saefilter("features", "record", str(out), str(folder / "harmful.jsonl"), "-o", str(folder / "rec.json"))
    assert record.returncode == 0, record.stderr
    assert load_feature_set(folder / "rec.json").provenance.roles["settings chosen on"] == (str(folder / "harmful.jsonl"),)
    bad = saefilter("features", "record", str(out), str(folder / "harmful.jsonl"), "--role", "tuning")
    assert bad.returncode == 2 and "--role must be one of" in bad.stderr


def test_eval_warns_naming_the_contrast_row_and_strict_refuses(built, model_dir, planted, tmp_path):
    from test_cli import saefilter

    _, features, harmful, _ = built
    fresh = [chat("tell me a story", f"{TRIGGER} {a}") for a in reversed(ANSWERS)]
    positive = write_jsonl(tmp_path / "pos.jsonl", [*fresh[:3], harmful[2], *fresh[3:]])  # line 4 is a contrast row
    negative = write_jsonl(tmp_path / "neg.jsonl", [chat("tell me a story", a) for a in ANSWERS])
    args = ["eval", "--positive", str(positive), "--negative", str(negative), "--model", str(model_dir), "--sae",
            str(planted), "--features", str(features), "--bootstrap", "20", "--kernels", "linear"]
    result = saefilter(*args, "-o", str(tmp_path / "eval.json"))
    assert result.returncode == 0, result.stderr
    printed = " ".join(result.stdout.split())  # long paths wrap
    assert "warning: 1 of 13 evaluation rows overlap" in printed and f"{positive}:4: copy of" in printed
    report = json.loads((tmp_path / "eval.json").read_text())
    # the copied harmful row also shares 13-grams with its benign partner: both roles count it
    assert report["overlap"]["rows"] == 1
    assert report["overlap"]["by_role"] == {"contrast harmful": 1, "contrast benign": 1}
    strict = saefilter(*args, "--strict")
    assert strict.returncode == 2 and f"{positive}:4" in strict.stderr and "--strict refuses" in strict.stderr
    clean = write_jsonl(tmp_path / "clean.jsonl", fresh)
    ok = saefilter(*args[:2], str(clean), *args[3:], "--strict")
    assert ok.returncode == 0, ok.stderr
    assert "warning" not in ok.stdout


def test_drift_pairs_are_checked_against_the_feature_set(built, tmp_path):
    from saefilter.drift.pairs import read_pairs
    from saefilter.drift.settings import DriftSettings
    from saefilter.runs.drift import pairs_overlap

    _, features, harmful, _ = built
    rows = [{"id": "p1", "category": "x", "prompt": "q", "harmful": harmful[0]["messages"][1]["content"],
             "benign": "a helpful answer of its own"},
            {"id": "p2", "category": "x", "prompt": "q", "harmful": "a new harmful answer", "benign": "a new benign one"}]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    settings = DriftSettings(pairs=str(path), features=str(features))
    overlap = pairs_overlap(read_pairs(path), settings)
    assert overlap["rows"] == 1 and overlap["first"][0].startswith(f"{path}:1 (harmful): copy of")
    with pytest.raises(InputError, match="--strict"):
        pairs_overlap(read_pairs(path), DriftSettings(pairs=str(path), features=str(features), strict=True))
