"""lamda_jax: LaMDA (Thoppilan et al., 2022) in JAX/Flax.

Subpackages, each importing only the layers before it (tests/test_layering.py):

  config, attributes  typed experiment configs; the paper's rated attributes
  model               the decoder, its layers, KV cache and size statistics
  data                corpora, dialog format, TFDS builders, tokenizer, packing,
                      the mixture sampler and the pre-training pipeline
  training            sharding, train state and step, optimizers, checkpoints,
                      metrics and the one train loop
  finetune            the paper's fine-tuning formats, crowd labels, weak labels
                      and the task mixture
  serving             reading a finished run: decoding, scoring, sample-and-rank,
                      chat, generate, HTTP, filtering and evaluation
  grounding           the toolset and the research loop (§6.2)
  main                the command line: `python -m lamda_jax.main --mode ...`
"""
