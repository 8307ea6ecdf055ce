"""The language model: loading (named models, GGUF, folders, hub ids), hook points, and the residual stream at an SAE's layer."""
