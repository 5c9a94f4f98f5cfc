"""The LaMDA decoder (§3, Table 27): layers, the decoder, its KV cache, and
parameter / FLOP statistics from abstract shapes.

Imports only `lamda_jax.config`; every parameter is born with logical axis names.
"""
