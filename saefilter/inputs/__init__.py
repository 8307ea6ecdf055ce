"""Read records and reference text, and render them for the model: files -> conversations -> tokens to score."""
