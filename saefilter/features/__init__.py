"""The harmful set: which latents and directions count as harmful, how they are selected from contrasts, and calibrated."""
