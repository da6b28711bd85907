"""The probe suite: questions with a ground-truth engine behind every answer.

    worldsim probe [checkpoint=CKPT] [suite=all] [seeds=4] [out=probes] [quick=true]

`scenarios` (what a probe is, the map builder), `families` (the seven families' scenarios), `predictors` (engine,
world model, trivial floors, corrupted engines), `score` (decoded-tile scoring and normalisation), `reward` (reward
events, endings and the idle-return check), `runner` (the command) and `report` (probes.md).
"""

from worldsim.probes.runner import ProbeConfig, run

__all__ = ["ProbeConfig", "run"]
