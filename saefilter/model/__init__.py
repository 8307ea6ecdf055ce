"""The language model: loading (named models, GGUF, folders, hub ids), its tokenizer, hook points, and the residual stream at an SAE's layer."""
