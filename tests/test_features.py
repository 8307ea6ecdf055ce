"""Feature selection on a planted contrast, Neuronpedia import, and the feature CLI."""

import gzip
import json

import numpy as np
import pytest

from saefilter.errors import InputError
from saefilter.features.feature_set import load_feature_set, save_feature_set
from saefilter.features.neuronpedia import import_explanations
from saefilter.features.selection import ReferenceActivations, build_feature_set, select_features
from saefilter.inputs.render import EncodedSample


def test_a_latent_active_only_in_the_harmful_set_is_selected_first():
    rng = np.random.default_rng(0)
    harmful = np.maximum(rng.normal(size=(60, 30)), 0).astype(np.float32)
    benign = np.maximum(rng.normal(size=(80, 30)), 0).astype(np.float32)
    harmful[:, 17] = rng.uniform(0.5, 2.0, size=60)  # planted: fires on every harmful sample...
    benign[:, 17] = 0.0  # ...and never on a benign one
    harmful[:, 4] += 0.4  # a weaker shift
    chosen = select_features(harmful, benign, top=3)
    assert chosen[0].index == 17
    assert chosen[0].freq_harmful == 1.0 and chosen[0].freq_benign == 0.0
    assert 4 in [c.index for c in chosen]
    assert all(c.effect_size > 0 for c in chosen)


def test_rare_spikes_are_not_selected():
    harmful = np.zeros((100, 5), np.float32)
    benign = np.zeros((100, 5), np.float32)
    harmful[0, 2] = 50.0  # one sample: 1% < min_frequency
    harmful[:, 3] = 1.0
    assert [c.index for c in select_features(harmful, benign, top=5, min_frequency=0.02)] == [3]


def test_labels_come_from_peak_tokens(tmp_path):
    samples = [EncodedSample([1, 2, 3], [False, True, True], False) for _ in range(4)]
    acts = np.zeros((4, 3), np.float32)
    acts[:, 1] = [3.0, 2.0, 1.0, 0.0]
    peaks = np.full((4, 3), 2, np.int32)
    harmful = ReferenceActivations(acts, peaks, samples, 0)
    benign = ReferenceActivations(np.zeros((4, 3), np.float32), peaks, samples, 0)
    vocab = {1: "the", 2: " bad", 3: " thing"}
    feature_set = build_feature_set(harmful, benign, 2, lambda ids: "".join(vocab[i] for i in ids), "sae", 3, {},
                                    selection="activation")
    assert feature_set.indices == [1]
    assert feature_set.meta["selection"]["ranking"].startswith("Cohen's d of per-sample max activation")
    feature = feature_set.features[0]
    assert feature.label == "'thing'"
    assert feature.stats["snippets"][0] == "the bad[[ thing]]"
    save_feature_set(feature_set, tmp_path / "f.json")
    again = load_feature_set(tmp_path / "f.json")
    assert again.indices == [1] and again.d_sae == 3 and again.features[0].stats["freq_harmful"] == 0.75


def write_export(path, rows, compress=False):
    text = "".join(json.dumps(row) + "\n" for row in rows).encode()
    path.write_bytes(gzip.compress(text) if compress else text)
    return path


EXPORT = [
    {"modelId": "gemma-2-2b", "layer": "12-gemmascope-res-16k", "index": "10", "description": "hateful slurs against groups"},
    {"modelId": "gemma-2-2b", "layer": "12-gemmascope-res-16k", "index": "10", "description": "insults and hate speech"},
    {"modelId": "gemma-2-2b", "layer": "12-gemmascope-res-16k", "index": "11", "description": "recipes for baking bread"},
    {"modelId": "gemma-2-2b", "layer": "12-gemmascope-res-16k", "index": "12", "description": "instructions to build a bomb"},
    {"modelId": "gemma-2-2b", "layer": "6-gemmascope-res-16k", "index": "13", "description": "violent threats"},
    {"modelId": "gemma-2-2b", "layer": "12-gemmascope-res-16k", "index": "14", "description": "harmless greetings"},
]


@pytest.mark.parametrize("compress", [False, True])
def test_neuronpedia_import_selects_by_keyword_and_layer(tmp_path, compress):
    path = write_export(tmp_path / ("e.jsonl.gz" if compress else "e.jsonl"), EXPORT, compress)
    feature_set = import_explanations(path, ["hate", "bomb", "violen"], layer="12-gemmascope-res-16k", d_sae=16384)
    assert feature_set.indices == [10, 12]
    assert feature_set.features[0].label == "hateful slurs against groups | insults and hate speech"
    assert feature_set.d_sae == 16384
    assert import_explanations(path, ["violen"]).indices == [13]


def test_neuronpedia_import_errors(tmp_path):
    path = write_export(tmp_path / "e.jsonl", EXPORT)
    with pytest.raises(InputError, match="none of 6 explanations matched"):
        import_explanations(path, ["zebra"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"description": "x"}\n')
    with pytest.raises(InputError, match="bad.jsonl:1: not a Neuronpedia explanation"):
        import_explanations(bad, ["x"])


def test_features_build_cli_finds_the_planted_latent(tmp_path, model_dir, planted):
    from conftest import ANSWERS, TRIGGER, chat, write_jsonl
    from test_cli import saefilter

    harmful = write_jsonl(tmp_path / "harmful.jsonl", [chat("tell me a story", f"{TRIGGER} {a}") for a in ANSWERS])
    benign = write_jsonl(tmp_path / "benign.jsonl", [chat("tell me a story", a) for a in ANSWERS])
    out = tmp_path / "features.json"
    result = saefilter("features", "build", "--harmful", str(harmful), "--benign", str(benign), "--model", str(model_dir),
                       "--sae", str(planted), "--top", "3", "-o", str(out))
    assert result.returncode == 0, result.stderr
    feature_set = load_feature_set(out)
    assert feature_set.indices[0] == 0
    assert feature_set.features[0].label == f"'{TRIGGER}'"
    assert feature_set.d_sae == 48 and feature_set.meta["selection"]["harmful_samples"] == len(ANSWERS)
    shown = saefilter("features", "show", str(out))
    assert shown.returncode == 0 and TRIGGER in shown.stdout
    assert "[[" in shown.stdout  # the strongest context, with the peak token marked, printed as plain text
    ids = saefilter("features", "build", "--ids", "3,7", "--sae", str(planted), "-o", str(tmp_path / "ids.json"))
    assert ids.returncode == 0, ids.stderr
    assert load_feature_set(tmp_path / "ids.json").indices == [3, 7]
    too_big = saefilter("features", "build", "--ids", "3,70", "--sae", str(planted), "-o", str(tmp_path / "x.json"))
    assert too_big.returncode == 2 and "beyond the SAE width" in too_big.stderr


def test_structural_latents_active_on_most_benign_text_are_excluded():
    rng = np.random.default_rng(3)
    harmful = np.zeros((50, 6), np.float32)
    benign = np.zeros((50, 6), np.float32)
    harmful[:, 0], benign[:, 0] = 3.0 + rng.random(50), 1.0 + rng.random(50)  # always on, stronger in harmful
    harmful[:25, 1] = 1.0  # content latent: half the harmful samples, no benign one
    assert select_features(harmful, benign, top=2, max_benign_frequency=1.0)[0].index == 0
    assert [c.index for c in select_features(harmful, benign, top=2, max_benign_frequency=0.5)] == [1]


def test_merge_takes_the_top_of_each_set_once_and_records_where_each_came_from(tmp_path):
    from saefilter.features.feature_set import FeatureSet, HarmfulFeature, merge_feature_sets

    def ranked(indices, name):
        path = tmp_path / f"{name}.json"
        save_feature_set(FeatureSet(tuple(HarmfulFeature(i, f"{name} {i}") for i in indices), 64, "sae"), path)
        return name, load_feature_set(path)

    merged = merge_feature_sets([ranked([5, 9, 2, 7], "toxicity"), ranked([9, 11, 3], "intent")], top_each=3)
    assert merged.indices == [5, 9, 2, 11, 3]
    assert [f.stats["source"] for f in merged.features] == ["toxicity"] * 3 + ["intent"] * 2
    assert {f.index: f.label for f in merged.features}[9] == "toxicity: toxicity 9" and merged.d_sae == 64
    assert [s["taken"] for s in merged.meta["merged_from"]] == [3, 3]
    path = tmp_path / "merged.json"
    save_feature_set(merged, path)
    assert load_feature_set(path).indices == merged.indices

    other_width = FeatureSet((HarmfulFeature(1),), 128, "sae")
    with pytest.raises(InputError, match="different widths"):
        merge_feature_sets([ranked([1], "a"), ("b", other_width)])


def test_labels_name_whole_words_not_subword_fragments():
    from saefilter.features.selection import word_at

    pieces = {0: " the", 1: " b", 2: "itch", 3: "es", 4: ",", 5: " 42", 6: "nd", 7: "\n"}

    def decode(ids):
        return "".join(pieces[i] for i in ids)

    ids = [0, 1, 2, 3, 4, 5, 6, 7]
    assert word_at(ids, 2, decode) == "bitches"  # subword pieces joined both ways
    assert word_at(ids, 1, decode) == "bitches"
    assert word_at(ids, 0, decode) == "the"  # a space starts a new word
    assert word_at(ids, 4, decode) == ","  # punctuation stays alone
    assert word_at(ids, 5, decode) == "42nd"

    def spaced(ids):  # a word-level tokenizer puts spaces between tokens when decoding several
        return " ".join(pieces[i].strip() for i in ids)

    assert word_at(ids, 2, spaced) == "itch"


def planted_reference(n: int, how_share: float, content_share: float, seed: int):
    """Samples of 6 tokens: ids 1 'how', 2 'kill', 3.. filler. Latent 0 ('phrasing') fires 1.0 on every
    'how' whatever the context; latent 1 ('content') fires 1.0 on 'kill' in a harmful sample only;
    latent 2 fires at random on anything."""
    from saefilter.features.selection import ReferenceActivations, TokenActivations
    from saefilter.inputs.render import EncodedSample

    rng = np.random.default_rng(seed)
    samples, token_ids, sample_of, latents, values = [], [], [], [], []
    for i in range(n):
        ids = list(rng.integers(3, 20, size=6))
        if rng.random() < how_share:
            ids[1] = 1
        harmful_content = rng.random() < content_share
        if harmful_content or rng.random() < 0.3:  # 'kill' also appears in benign text ("kill the process")
            ids[3] = 2
        samples.append(EncodedSample(ids, [False] + [True] * 5, False))
        for position in range(1, 6):
            token_ids.append(ids[position])
            sample_of.append(i)
            acts = [1.0 if ids[position] == 1 else 0.0, 1.0 if (ids[position] == 2 and harmful_content) else 0.0, rng.random() * 0.5]
            latents.append([0, 1, 2])
            values.append(acts)
    tokens = TokenActivations(np.array(token_ids), np.array(sample_of), np.tile(np.arange(1, 6), n).astype(np.int32),
                              np.array(latents), np.array(values, np.float32))
    dense = np.zeros((n, 3), np.float32)
    np.maximum.at(dense, (tokens.sample[:, None], tokens.latents), tokens.values)
    return ReferenceActivations(dense, np.zeros((n, 3), np.int32), samples, 0, tokens)


def test_token_control_picks_the_content_latent_over_the_phrasing_one():
    """The trap of the old selection: 'how' opens most harmful requests and few benign ones, so a latent
    that fires on 'how' in any context separates the sets better than the one that fires on harm."""
    from saefilter.features.selection import controlled_for_tokens

    harmful = planted_reference(400, how_share=0.9, content_share=0.6, seed=1)
    benign = planted_reference(400, how_share=0.1, content_share=0.0, seed=2)
    raw = select_features(harmful.acts, benign.acts, top=2)
    assert raw[0].index == 0  # without the control, the phrasing latent wins
    h, b = controlled_for_tokens(harmful, benign)
    chosen = [s.index for s in select_features(h.acts, b.acts, top=3)]
    assert chosen[0] == 1 and 0 not in chosen
    # the excess of the content latent peaks where the harmful word is
    with_content = np.flatnonzero(h.acts[:, 1] > 0)
    assert len(with_content) > 0 and (h.peak_position[with_content, 1] == 3).all()


def test_token_baseline_is_the_benign_mean_per_token_and_latent():
    from saefilter.features.selection import TokenActivations, context_excess, token_baseline

    tokens = TokenActivations(np.array([5, 5, 7]), np.array([0, 1, 1]), np.array([1, 1, 2], np.int32),
                              np.array([[0, 1], [0, 1], [0, 1]]), np.array([[1.0, 0.0], [3.0, 0.5], [2.0, 0.0]], np.float32))
    baseline = token_baseline(tokens, d_sae=2)
    np.testing.assert_allclose(baseline.lookup(np.array([5, 7, 9]), np.array([[0, 1], [0, 1], [0, 1]])),
                               [[2.0, 0.25], [2.0, 0.0], [0.0, 0.0]])
    excess, peak = context_excess(tokens, baseline, n_samples=2)
    np.testing.assert_allclose(excess, [[0.0, 0.0], [1.0, 0.25]])
    assert peak[1, 0] == 1 and peak[1, 1] == 1


def test_features_build_without_reference_files_uses_the_builtin_contrasts(tmp_path, model_dir, sae_dir):
    """No --harmful/--benign: the paired answers contrast, as the embedded default is built; --contrast
    picks others, one set each, merged."""
    from typer.testing import CliRunner

    from saefilter.cli import app
    from saefilter.features.feature_set import load_feature_set
    from saefilter.features.settings import BUILTIN_CONTRASTS, DEFAULT_CONTRASTS
    from saefilter.inputs.reference import builtin_contrasts

    contrasts = builtin_contrasts()
    assert tuple(c.name for c in contrasts) == BUILTIN_CONTRASTS
    assert all(c.harmful.is_file() and c.benign.is_file() for c in contrasts)
    assert {c.name for c in contrasts if c.paired} == {"answers", "code"}
    out = tmp_path / "built.json"
    result = CliRunner().invoke(app, ["features", "build", "--model", str(model_dir), "--sae", str(sae_dir),
                                      "--top", "5", "--max-tokens", "64", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    built = load_feature_set(out)
    assert DEFAULT_CONTRASTS == ("answers",) and built.meta["selection"]["contrast"] == "answers"
    assert built.meta["selection"]["paired"] is True and built.meta["selection"]["contrasts"] == "built-in"
    assert "identity_latents_excluded" in built.meta["selection"] and 0 < len(built.features) <= 5
    merged = tmp_path / "merged.json"
    result = CliRunner().invoke(app, ["features", "build", "--model", str(model_dir), "--sae", str(sae_dir), "--contrast", "toxicity",
                                      "--contrast", "answers", "--top-each", "3", "--max-tokens", "64", "-o", str(merged), "-q"])
    assert result.exit_code == 0, result.output
    built = load_feature_set(merged)
    assert tuple(m["set"] for m in built.meta["merged_from"]) == ("toxicity", "answers")
    assert all(m["taken"] <= 3 for m in built.meta["merged_from"]) and {f.stats["source"] for f in built.features} <= {"toxicity", "answers"}
    result = CliRunner().invoke(app, ["features", "build", "--model", str(model_dir), "--sae", str(sae_dir), "--contrast", "nope"])
    assert result.exit_code == 2 and f"no built-in contrast nope; there are: {', '.join(BUILTIN_CONTRASTS)}" in " ".join(result.output.split())


def test_builtin_contrasts_are_small_and_every_row_has_a_licensed_source():
    import json

    from saefilter.inputs.reference import BUILTIN_CONTRASTS_DIR

    manifest = json.loads((BUILTIN_CONTRASTS_DIR / "manifest.json").read_text())
    assert sum(p.stat().st_size for p in BUILTIN_CONTRASTS_DIR.iterdir()) < 5_000_000
    notice = (BUILTIN_CONTRASTS_DIR / "NOTICE.md").read_text()
    entries = [contrast[side] for contrast in manifest["contrasts"].values() for side in ("harmful", "benign")]
    for entry in [*entries, manifest["identity_filter"]]:
        lines = (BUILTIN_CONTRASTS_DIR / entry["file"]).read_text().splitlines()
        assert len(lines) == entry["rows"] == sum(s["rows"] for s in entry["sources"])
        for source in entry["sources"]:
            assert source["licence"].startswith(("MIT", "CDLA-Permissive-2.0"))
            assert source["name"] == "saefilter" or source["name"].split(" ")[0] in notice


def test_paired_selection_prefers_what_the_answer_changes_over_what_differs_between_sets():
    """In matched pairs a latent that rises by a little in every harmful answer (on top of a level set by
    the prompt) is what the answer changes; one whose harmful mean is higher but that moves at random
    within pairs is not. Cohen's d ranks the second first; the paired t ranks the first."""
    rng = np.random.default_rng(0)
    n = 200
    topic = rng.uniform(0, 5, n)  # a level the prompt sets, the same for both answers of a pair
    harmful = np.zeros((n, 3), np.float32)
    benign = np.zeros((n, 3), np.float32)
    harmful[:, 0], benign[:, 0] = topic + 0.3 + rng.normal(0, 0.05, n), topic
    harmful[:, 1], benign[:, 1] = np.abs(rng.normal(1.0, 1.0, n)), np.abs(rng.normal(0.5, 1.0, n))
    harmful[:, 2], benign[:, 2] = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    assert select_features(harmful, benign, top=1, max_benign_frequency=1.0)[0].index == 1
    assert select_features(harmful, benign, top=1, max_benign_frequency=1.0, paired=True)[0].index == 0


def test_paired_statistics_need_aligned_sides():
    from saefilter.features.selection import paired_t

    with pytest.raises(ValueError, match="row i paired with row i"):
        paired_t(np.ones((3, 2)), np.ones((4, 2)))


def test_identity_latents_are_those_far_more_active_on_neutral_identity_text():
    from saefilter.features.selection import identity_latents

    rng = np.random.default_rng(1)
    neutral = np.zeros((100, 4), np.float32)
    benign = np.zeros((400, 4), np.float32)
    neutral[:60, 0] = 1.0  # fires on group terms and names: 60% of neutral identity text, 2% of other text
    benign[:8, 0] = 1.0
    neutral[:60, 1] = 1.0  # fires on much of any text: not about identity
    benign[:200, 1] = 1.0
    neutral[:2, 2] = 1.0  # too rare on identity text to say
    neutral[:, 3] = rng.uniform(0, 1, 100)  # fires everywhere
    benign[:, 3] = rng.uniform(0, 1, 400)
    assert identity_latents(neutral, benign).tolist() == [True, False, False, False]


def test_excluded_latents_are_never_selected():
    harmful = np.zeros((50, 3), np.float32)
    benign = np.zeros((50, 3), np.float32)
    harmful[:, 0], harmful[:25, 1] = 2.0, 1.0
    chosen = select_features(harmful, benign, top=3, exclude=np.array([True, False, False]))
    assert [s.index for s in chosen] == [1]


def test_paired_contrast_keeps_only_complete_pairs_and_refuses_unequal_sides(model_dir):
    from saefilter.features.selection import ContrastTexts, paired_texts
    from saefilter.inputs.formats import to_conversation
    from saefilter.model.loading import load_tokenizer

    tokenizer = load_tokenizer(str(model_dir))

    def chat(answer):
        return to_conversation({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}]})

    harmful = [chat("bad one"), chat("bad two"), to_conversation({"messages": [{"role": "user", "content": "q"}]})]
    benign = [chat("good one"), to_conversation({"messages": [{"role": "user", "content": "q"}]}), chat("good three")]
    kept, dropped = paired_texts(ContrastTexts("p", harmful, benign, True, ["a", "b", "c"]), tokenizer, "response", 64)
    assert (kept.harmful, kept.benign, kept.categories, dropped) == ([harmful[0]], [benign[0]], ["a"], 2)
    with pytest.raises(InputError, match="2 harmful rows but 3 benign rows"):
        paired_texts(ContrastTexts("p", harmful[:2], benign, True), tokenizer, "response", 64)


def test_features_build_cli_paired_files_and_its_errors(tmp_path, model_dir, planted):
    """--paired ranks by the paired t: the planted trigger latent still comes first, the meta says how,
    and files whose sides differ in length are refused with both counts."""
    from conftest import ANSWERS, TRIGGER, chat, write_jsonl
    from test_cli import saefilter

    harmful = write_jsonl(tmp_path / "harmful.jsonl", [chat("tell me a story", f"{TRIGGER} {a}") for a in ANSWERS])
    benign = write_jsonl(tmp_path / "benign.jsonl", [chat("tell me a story", a) for a in ANSWERS])
    out = tmp_path / "paired.json"
    result = saefilter("features", "build", "--harmful", str(harmful), "--benign", str(benign), "--paired", "--model",
                       str(model_dir), "--sae", str(planted), "--top", "3", "-o", str(out))
    assert result.returncode == 0, result.stderr
    built = load_feature_set(out)
    assert built.indices[0] == 0
    assert built.meta["selection"]["paired"] is True and built.meta["selection"]["unusable_pairs"] == 0
    assert built.meta["selection"]["ranking"].startswith("paired t")
    short = write_jsonl(tmp_path / "short.jsonl", [chat("tell me a story", a) for a in ANSWERS[:-1]])
    refused = saefilter("features", "build", "--harmful", str(harmful), "--benign", str(short), "--paired", "--model",
                        str(model_dir), "--sae", str(planted), "-o", str(tmp_path / "x.json"))
    assert refused.returncode == 2 and f"{len(ANSWERS)} harmful rows but {len(ANSWERS) - 1} benign rows" in refused.stderr
    builtin = saefilter("features", "build", "--paired", "--model", str(model_dir), "--sae", str(planted), "-o", str(tmp_path / "y.json"))
    assert builtin.returncode == 2 and "--paired describes --harmful/--benign files" in builtin.stderr


def test_harm_kinds_name_the_categories_a_latent_rises_in():
    """Latent 0 rises only in the fraud pairs, latent 1 in every kind, latent 2 in violence but
    with no consistency (t < 2): kinds 'fraud'; all three; none."""
    from saefilter.features.selection import harm_kinds, kinds_text

    rng = np.random.default_rng(0)
    kinds = ["fraud"] * 8 + ["violence"] * 8 + ["hate"] * 8 + ["rare"] * 2
    n = len(kinds)
    benign = rng.uniform(0, 0.1, size=(n, 3)).astype(np.float32)
    harmful = benign.copy()
    harmful[:8, 0] += 1.0
    harmful[:, 1] += rng.uniform(0.9, 1.1, size=n).astype(np.float32)
    harmful[8:16, 2] += np.array([3, -3, 3, -3, 3, -3, 3, -2.5], np.float32)
    found = harm_kinds(harmful, benign, kinds, [0, 1, 2])
    assert list(found[0]) == ["fraud"]
    assert set(found[1]) == {"fraud", "violence", "hate"}  # 'rare' has 2 pairs: not judged
    assert found[2] == {}
    assert kinds_text({"self_harm": 1.0, "fraud": 0.9, "hate": 0.8, "crime": 0.7}) == "self-harm, fraud, hate +1"


def test_paired_selection_with_categories_puts_the_kinds_first_in_the_label():
    from saefilter.features.selection import build_feature_set

    kinds = ["fraud"] * 6 + ["violence"] * 6
    samples = [EncodedSample([1, 2, 3], [False, True, True], False) for _ in kinds]
    benign_acts = np.zeros((12, 3), np.float32)
    harmful_acts = benign_acts.copy()
    harmful_acts[:6, 1] = np.linspace(1.0, 1.5, 6)  # rises in the fraud pairs only
    peaks = np.full((12, 3), 2, np.int32)
    harmful = ReferenceActivations(harmful_acts, peaks, samples, 0)
    benign = ReferenceActivations(benign_acts, peaks, samples, 0)
    vocab = {1: "the", 2: " bad", 3: " thing"}
    feature_set = build_feature_set(harmful, benign, 2, lambda ids: "".join(vocab[i] for i in ids), "sae", 3, {},
                                    selection="activation", paired=True, categories=kinds)
    feature = feature_set.features[0]
    assert feature.index == 1 and feature.label == "fraud: 'thing'"
    assert feature.stats["peak_words"] == "'thing'" and list(feature.stats["kinds"]) == ["fraud"]
    unlabelled = build_feature_set(harmful, benign, 2, lambda ids: "".join(vocab[i] for i in ids), "sae", 3, {},
                                   selection="activation", paired=True)
    assert unlabelled.features[0].label == "'thing'"


def test_reference_categories_read_every_record_or_none(tmp_path):
    from saefilter.inputs.reference import builtin_contrasts, reference_categories

    with_kinds = tmp_path / "a.jsonl"
    with_kinds.write_text('{"text": "x", "category": "fraud"}\n\n{"text": "y", "category": "hate"}\n')
    partly = tmp_path / "b.jsonl"
    partly.write_text('{"text": "x", "category": "fraud"}\n{"text": "y"}\n')
    assert reference_categories([with_kinds]) == ["fraud", "hate"]
    assert reference_categories([with_kinds, partly]) is None
    answers = builtin_contrasts(("answers",))[0]
    shipped = reference_categories([answers.harmful])
    assert shipped is not None and len(shipped) == 300 and len(set(shipped)) == 12


def test_function_words_are_closed_class_words_and_tokens_without_letters():
    from collections import Counter

    from saefilter.features.function_words import function_word_share, is_function_word

    assert all(is_function_word(w) for w in ("of", "The", "Just", "'t", ".)", "<|im_end|>", "never", "3"))
    assert not any(is_function_word(w) for w in ("poison", "stab", "People", "time", "Mexicans", "fake"))
    assert function_word_share(Counter({"of": 6, "knife": 4})) == 0.6
    assert function_word_share(Counter()) == 0.0


def test_a_latent_peaking_on_function_words_is_passed_over_for_the_next_in_the_ranking():
    """Latent 0 rises most in the harmful set but peaks on 'of'; latents 1 and 2 peak on 'knife' and
    'poison'. With the filter (the default) 0 is passed over and both content latents are chosen;
    without it, 0 comes first and takes a place."""
    samples = [EncodedSample([1, 2, 3, 4], [False, True, True, True], False) for _ in range(6)]
    harmful_acts = np.zeros((6, 4), np.float32)
    harmful_acts[:, 0] = 3.0 + np.arange(6) * 0.1
    harmful_acts[:, 1] = 2.0 + np.arange(6) * 0.1
    harmful_acts[:, 2] = 1.0 + np.arange(6) * 0.1
    peaks = np.zeros((6, 4), np.int32)
    peaks[:, 0], peaks[:, 1], peaks[:, 2] = 1, 2, 3
    harmful = ReferenceActivations(harmful_acts, peaks, samples, 0)
    benign = ReferenceActivations(np.zeros((6, 4), np.float32), peaks, samples, 0)
    vocab = {1: "Take", 2: " of", 3: " knife", 4: " poison"}
    decode = lambda ids: "".join(vocab[i] for i in ids)
    # peak positions index input_ids: 1 -> ' of', 2 -> ' knife', 3 -> ' poison'
    filtered = build_feature_set(harmful, benign, 2, decode, "sae", 4, {}, selection="activation")
    assert filtered.indices == [1, 2]
    assert [f.label for f in filtered.features] == ["'knife'", "'poison'"]
    assert filtered.meta["selection"]["function_word_latents_passed_over"] == [0]
    unfiltered = build_feature_set(harmful, benign, 2, decode, "sae", 4, {}, selection="activation",
                                   function_word_filter=False)
    assert unfiltered.indices == [0, 1]
    assert unfiltered.features[0].label == "'of'"


def test_features_show_prints_a_long_metadata_list_as_its_length_and_first_items():
    from saefilter.terminal import brief

    assert brief(list(range(52))) == "52 [0, 1, 2, 3, 4, ...]"
    assert brief([3, 4]) == "[3, 4]" and brief(0.5) == "0.5"
