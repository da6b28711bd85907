"""Policies that act in worldsim's environments, all following `worldsim.agents.base.Agent`:
random (sticky), explorer (Craft2D: far walks, digging, building, loops back over seen ground), mixture, and
human (the keyboard, for `worldsim play`). Build one with `worldsim.agents.base.make_agent(name, action_space, env_id)`."""
