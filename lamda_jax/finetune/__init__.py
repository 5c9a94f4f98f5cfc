"""The paper's fine-tuning data (§5, §6.1): the generator and discriminator
formats, crowd labels and their aggregation, weak labels for the embedded
default, and the task mixture the one train loop trains on.

Imports `model`, `data` and `training`'s building blocks.
"""
