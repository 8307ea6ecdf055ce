"""Sparse autoencoders: loading (local folders, the sae-lens registry) and training one for a model."""
