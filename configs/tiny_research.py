"""Stage two of the embedded default (§6.2): `tiny`, fine-tuned from its
stage-one (quality + safety) run on the research task, and answering through
the LaMDA-Base -> LaMDA-Research loop.

The research dialogs are made by the toolset (`embedded:research`); the
generator and discriminator tasks stay in the mixture at their stage-one
weights so stage two does not forget them. Start it from a stage-one run:

  python -m lamda_jax.main --config configs/tiny_research.py --mode finetune \
      --workdir runs/demo-research --config.finetune.init_from=runs/demo-finetune
"""

from lamda_jax.configs import tiny


def get_config():
  config = tiny.get_config()
  config.name = 'tiny_research'
  config.finetune.research = ('embedded:research',)
  config.finetune.research_weight = 2.0  # two thirds of each batch, next to 0.5 + 0.5
  config.train.steps = 800
  # A fresh optimizer at a constant rate: rsqrt decay had halved it by step
  # 200, and copying expressions and numbers is learnt far sooner at full rate.
  config.train.schedule = 'constant'
  config.research.enabled = True
  return config
