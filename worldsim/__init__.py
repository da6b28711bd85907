"""worldsim: a learned world simulator you can step like a game.

Importing it registers the environments with Gymnasium, lazily (string entry points: nothing heavy is imported
until `gymnasium.make`). Gymnasium 1.x has no plugin discovery, so either import worldsim first or name the module:
    import gymnasium, worldsim
    gymnasium.register_envs(worldsim)
    env = gymnasium.make("worldsim/Craft2D-v0")
    env = gymnasium.make("worldsim:worldsim/Craft2D-v0")  # the same, without the import
"""

from worldsim.registration import register_envs

__version__ = "0.1.0"

register_envs()
