"""Judging a score: detection metrics (pure numerics) and `saefilter eval`, which compares methods on the same activations."""
