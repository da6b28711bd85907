"""Training: the shared loop (optimizer, EMA, checkpoints, resume) and the tasks (autoencoder, world model)."""
