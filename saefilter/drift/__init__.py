"""What a fine-tune learned, without a judge: the change of the margin between matched harmful and
benign answers (the same prompt answered both ways), from a base model to a tuned one.

pairs.py reads the matched pairs, logprobs.py runs a model over their answers, stats.py turns the
per-pair log-probabilities into drifts with intervals and tests, models.py loads tuned models and
LoRA adapters. The runs that wire them are in the run layer: runs/drift.py (`saefilter drift`) and
runs/callback.py (drift measured during training).
"""
