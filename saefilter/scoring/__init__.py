"""From SAE activations to a score: proximity of decoder directions to the harmful set, per sample, and the loaded scorer."""
