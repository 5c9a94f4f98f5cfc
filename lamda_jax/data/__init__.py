"""Text in, packed rows out: the embedded corpora, the one dialog format, TFDS
builders for a lab's files, the SentencePiece tokenizer, packing, the
step-indexed mixture sampler and the pre-training pipeline.

Imports `lamda_jax.config`, `lamda_jax.attributes` and `model`; never training.
"""
