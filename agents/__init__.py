"""Policies that act in worldsim's environments. The scripted and human ones follow `worldsim.agents.base.Agent`:
random (sticky), explorer (Craft2D: far walks, digging, building, loops back over seen ground), mixture, and human
(the keyboard: `worldsim play`, `worldsim collect agent=human`); build one with
`worldsim.agents.base.make_agent(name, action_space, env_id)`. `worldsim.agents.ppo` trains a policy in any image env
with discrete actions (the real game, the dream, Atari) and `worldsim.agents.evaluate` measures policies and scripted
agents alike (`worldsim agent train|eval`)."""
