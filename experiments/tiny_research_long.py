"""Stage two of the embedded default, long enough to learn the copying:
`configs/tiny_research.py` with rows of 256 tokens (batch 8: the same tokens
per step, and no transcript cut from the left), research at weight 6 next to
the quality and safety tasks at 0.5 each, and 2,000 steps (about 11 minutes
on 2 cores, against the demo's 3.5).

Measured from the demo's stage-one run, on the demo's 60 held-out questions
(docs/grounding.md): through the loop, arithmetic 65% right (groundedness
89%), translations 20%, look-ups 0%; LaMDA-Base alone 0% on all three.

  python -m lamda_jax.main --config experiments/tiny_research_long.py --mode finetune \
      --workdir runs/demo-research-long --config.finetune.init_from=runs/demo-finetune
"""

from lamda_jax.configs import tiny_research


def get_config():
  config = tiny_research.get_config()
  config.name = 'tiny_research_long'
  config.train.update(seq_len=256, batch_size=8, steps=2000, checkpoint_every=1000)
  config.finetune.research_weight = 6.0
  return config
