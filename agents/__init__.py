"""Policies that act in worldsim's environments. For now: a person at the keyboard (`agents.human`)."""
