"""Baselines the probe leaderboard measures the latent DiT against, trained by the project's own code on the same data:
pixel-space U-Nets (`pixel.py`), as a diffusion model in DIAMOND's style or as a deterministic regressor."""
