"""Gymnasium environments of worldsim: the Craft2D ground-truth game (and, later, Dream-v0)."""
