"""The learned parts of worldsim: the autoencoder, the diffusion transformer (dit.py) and the diffusion process around it."""
