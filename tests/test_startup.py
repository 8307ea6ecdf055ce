"""Start-up shortcuts load exactly what the auto machinery would (the time they save is measured by
scripts/benchmark_hook.py, not here)."""

import json
import subprocess
import sys

from saefilter.model.loading import causal_lm_class, tokenizer_class


def test_the_model_class_is_the_one_auto_picks(model_dir):
    from transformers import AutoConfig, AutoModelForCausalLM

    direct = causal_lm_class(str(model_dir), trust_remote_code=False)
    auto = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir)).__class__
    assert direct is auto and direct.__name__ == "LlamaForCausalLM"
    assert causal_lm_class(str(model_dir), trust_remote_code=True) is AutoModelForCausalLM


def test_a_model_type_not_checked_stays_with_auto(tmp_path):
    from transformers import AutoModelForCausalLM

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3", "architectures": ["Gemma3ForCausalLM"]}))
    assert causal_lm_class(str(tmp_path), trust_remote_code=False) is AutoModelForCausalLM


def test_the_tokenizer_class_is_the_one_auto_picks(model_dir, tmp_path):
    from transformers import AutoTokenizer

    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    folder = tmp_path / "tok"
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "TokenizersBackend"}))
    direct = tokenizer_class(str(folder), trust_remote_code=False).from_pretrained(folder)
    auto = AutoTokenizer.from_pretrained(folder)
    assert type(direct) is type(auto)
    text = "<|im_start|>user\nhello there<|im_end|>"
    assert direct(text)["input_ids"] == auto(text)["input_ids"]


def test_the_cli_starts_without_torch_faiss_or_transformers():
    code = "import sys, saefilter.cli; print([m for m in ('torch', 'faiss', 'transformers', 'sae_lens') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
