"""The one train loop and what it stands on: the device mesh and sharding
rules, the train state and step, optimizers, losses, Orbax checkpoints,
metrics and multi-host start-up.

Imports `model` and `data`; the loop (`loop.py`) is imported by nothing but
`main` and tests: reading a finished run needs only `partitioning` and
`checkpointing`.
"""
